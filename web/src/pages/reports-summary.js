// Each report's summary (docs/analytics.md, "Reports"): the few numbers that answer the
// report's question as tiles, and where the summary is per group (or per place of
// cancellation), a small table beside them. The summary covers every row, not the page.
import { html } from '../lib.js';
import { t } from '../i18n.js';
import { duration, number } from '../format.js';
import { groupName, kpiCount, statusName } from '../project.js';

const share = (value) => (value == null ? '—' : `${number(value * 100, value < 0.1 && value > 0 ? 1 : 0)} %`);
const median = (stat) => (stat && stat.median != null ? duration(stat.median) : '—');
const p90 = (stat) => (stat && stat.p90 != null ? duration(stat.p90) : '—');

/** A figure with its name under it; `cls` colours SLA figures (the name says the state too). */
function tile(label, value, cls = '', id = '') {
  return html`<div class=${'kpi ' + cls} data-figure=${id || undefined}><div class="kpi-value">${value}</div><div class="kpi-label">${label}</div></div>`;
}

/** A small table of the summary, one row per group (or place). */
function SideTable({ id, head, children }) {
  return html`<div class="summary-side"><table class="totals summary-table" data-summary-table=${id}>
    <thead><tr>${head}</tr></thead><tbody>${children}</tbody></table></div>`;
}

function CustomSummary({ s }) {
  const count = (path) => number(kpiCount(s, path));
  return html`<div class="kpis">
    ${tile(t('kpi.orders'), count('count'), '', 'count')}
    ${tile(t('urgency.urgent'), count('urgent'))}
    ${tile(t('kpi.open'), count('open'))}
    ${tile(t('kpi.overdue'), count('sla.overdue'), 'sla-over')}
    ${['over', 'near', 'ok'].map((state) => tile(t('sla.' + state), count('sla.' + state), 'sla-' + state))}
  </div>`;
}

function ProductivitySummary({ s, names }) {
  const groups = s.groups || [];
  const over = groups.reduce((sum, g) => sum + (g.over || 0), 0);
  return html`<div class="kpis">
      ${tile(t('rsum.orders_over'), number(s.orders_over), 'sla-over', 'orders_over')}
      ${tile(t('rsum.group_times_over'), number(over))}
    </div>
    ${groups.length > 0 && html`<${SideTable} id="groups" head=${html`<th>${t('col.group')}</th><th class="num">${t('rsum.settled')}</th>
      <th class="num">! ${t('sla.over')}</th><th class="num">${t('rsum.share')}</th><th class="num">${t('rsum.over_median')}</th><th class="num">${t('rsum.over_p90')}</th>`}>
      ${groups.map((g) => html`<tr data-group-id=${g.group_id}><td>${groupName(names, g.group_id)}</td><td class="num">${number(g.settled)}</td>
        <td class="num sla-over">${number(g.over)}</td><td class="num">${share(g.over_share)}</td>
        <td class="num">${median(g.over_seconds)}</td><td class="num">${p90(g.over_seconds)}</td></tr>`)}
    </${SideTable}>`}`;
}

function CancellationsSummary({ s, names }) {
  const from = (s.from || []).slice(0, 8);
  return html`<div class="kpis">
      ${tile(t('col.created'), number(s.created))}
      ${tile(t('col.cancelled'), number(s.cancelled), 'sla-over', 'cancelled')}
      ${tile(t('rsum.rate'), share(s.rate))}
      ${tile(t('rsum.before_working'), median(s.working_seconds))}
      ${tile(t('rsum.before_wall'), median(s.wall_seconds))}
    </div>
    ${from.length > 0 && html`<${SideTable} id="from" head=${html`<th>${t('rsum.from')}</th><th class="num">${t('col.orders')}</th>`}>
      ${from.map((f) => html`<tr><td>${f.group_id == null ? html`<span class="muted">${t('rsum.at_once')}</span>`
        : html`${groupName(names, f.group_id)}${f.status_id != null ? html` <span class="muted">› ${statusName(names, f.status_id)}</span>` : ''}`}</td>
        <td class="num">${number(f.orders)}</td></tr>`)}
    </${SideTable}>`}`;
}

function SuccessSummary({ s }) {
  return html`<div class="kpis">
    ${tile(t('col.completed'), number(s.completed), '', 'completed')}
    ${tile('✓ ' + t('rsum.on_time'), number(s.on_time), 'sla-ok')}
    ${tile('! ' + t('rsum.late'), number(s.late), 'sla-over')}
    ${tile(t('rsum.on_time_share'), share(s.on_time_share))}
    ${tile(t('rsum.cycle_median'), median(s.working_seconds))}
    ${tile(t('rsum.cycle_p90'), p90(s.working_seconds))}
    ${tile(t('rsum.cycle_wall_median'), median(s.wall_seconds))}
  </div>`;
}

function SlaSummary({ s, names }) {
  const groups = s.groups || [];
  return html`<div class="kpis">
      ${tile(t('kpi.orders'), number(s.orders), '', 'orders')}
      ${tile(t('rsum.any_over'), number(s.any_over), 'sla-over')}
      ${tile(t('rsum.share'), share(s.any_over_share))}
    </div>
    ${groups.length > 0 && html`<${SideTable} id="groups" head=${html`<th>${t('col.group')}</th><th class="num">${t('col.orders')}</th>
      <th class="num">✓ ${t('sla.ok')}</th><th class="num">◔ ${t('sla.near')}</th><th class="num">! ${t('sla.over')}</th><th class="num">${t('sla.none')}</th>`}>
      ${groups.map((g) => html`<tr data-group-id=${g.group_id}><td>${groupName(names, g.group_id)}</td><td class="num">${number(g.orders)}</td>
        <td class="num sla-ok">${number(g.ok)}</td><td class="num sla-near">${number(g.near)}</td>
        <td class="num sla-over">${number(g.over)}</td><td class="num muted">${number(g.none)}</td></tr>`)}
    </${SideTable}>`}`;
}

function StageTimeSummary({ s }) {
  const total = s.total || {};
  return html`<div class="kpis">
    ${tile(t('rcol.visits'), number(total.intervals), '', 'visits')}
    ${tile(t('col.orders'), number(total.orders))}
    ${tile(t('rcol.open_visits'), number(total.open))}
    ${tile(t('rcol.working_median'), median(total.working_seconds))}
    ${tile(t('rsum.working_p90'), p90(total.working_seconds))}
    ${tile(t('rcol.wall_median'), median(total.wall_seconds))}
  </div>`;
}

const VIEWS = {
  custom: CustomSummary,
  productivity: ProductivitySummary,
  cancellations: CancellationsSummary,
  success: SuccessSummary,
  sla: SlaSummary,
  'stage-time': StageTimeSummary,
};

/** The summary of a report's answer. */
export function ReportSummary({ name, data, names }) {
  const View = VIEWS[name];
  if (!View || !data.summary) return null;
  return html`<div class="report-summary" data-summary=${name}><${View} s=${data.summary} names=${names} /></div>`;
}
