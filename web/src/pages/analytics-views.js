// What each analytics answer looks like on screen: a chart over categories (groups, histogram
// bins or buckets) and the answer's rows as a table, one row per row of the CSV file.
// Counts add up across urgencies and groups, so charts sum them; medians do not, so a chart of
// them draws one series per group or urgency instead.
import { html } from '../lib.js';
import { lang, t } from '../i18n.js';
import { duration, number } from '../format.js';
import { groupName } from '../project.js';
import { Chart } from '../chart.js';

/** @typedef {import('../chart.js').Series} Series */

const PALETTE = ['--chart-1', '--chart-3', '--chart-4', '--chart-5', '--chart-6', '--chart-2'];
const URGENCY_ORDER = ['urgent', 'normal', 'pending'];

const hours = (seconds) => (seconds == null ? null : seconds / 3600);
const hoursText = (value) => duration(value * 3600);
const countText = (value) => (Number.isInteger(value) ? number(value) : '');
const shareText = (value) => (value == null ? '—' : `${number(value * 100, value < 0.1 && value > 0 ? 1 : 0)} %`);

/** The distinct values of `pick` over `rows`, in order. */
function distinct(rows, pick) {
  const seen = [];
  for (const row of rows) if (!seen.includes(pick(row))) seen.push(pick(row));
  return seen.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** A bucket's first day as people read it, with its year (a month as its name and year). */
export function bucketLabel(bucket, kind) {
  if (!bucket) return t('analytics.whole_period');
  const [y, m, d] = bucket.split('-').map(Number);
  const at = new Date(Date.UTC(y, m - 1, d));
  const locale = lang() === 'uk' ? 'uk-UA' : 'en-GB';
  /** @type {Intl.DateTimeFormatOptions} */
  const options = kind === 'month' ? { month: 'short', year: 'numeric' } : { day: '2-digit', month: '2-digit', year: 'numeric' };
  return new Intl.DateTimeFormat(locale, { timeZone: 'UTC', ...options }).format(at);
}

/** Sums `fields` of the rows that share a key. */
function summed(rows, key, fields) {
  const out = new Map();
  for (const row of rows) {
    const k = key(row);
    const into = out.get(k) || Object.fromEntries(fields.map((f) => [f, 0]));
    for (const f of fields) into[f] += row[f] || 0;
    out.set(k, into);
  }
  return out;
}

/** The columns that say which bucket and urgency a row is about, when the view splits by them. */
function keyHeads(view) {
  return html`${view.bucket !== 'none' && html`<th>${t('col.bucket')}</th>`}${view.urgency === 'split' && html`<th>${t('col.urgency')}</th>`}`;
}
function keyCells(row, view) {
  return html`${view.bucket !== 'none' && html`<td>${bucketLabel(row.bucket, view.bucket)}</td>`}${view.urgency === 'split' && html`<td>${row.urgency ? t('urgency.' + row.urgency) : '—'}</td>`}`;
}

/** A scrolling table with a sticky head; `foot` (a total) follows the rows. */
function Table({ id, head, foot = null, children }) {
  return html`<div class="table-wrap"><table class="totals analytics-table" data-table=${id}>
    <thead><tr>${head}</tr></thead><tbody>${children}</tbody>${foot && html`<tfoot>${foot}</tfoot>`}</table></div>`;
}

/** Time per stage: per group the median and p90 of a visit's working time. */
export function StagesView({ data, names, view }) {
  const rows = data.rows;
  const split = view.urgency === 'split';
  const byGroup = (a, b) => a.group_id - b.group_id || String(a.bucket || '').localeCompare(String(b.bucket || '')) || URGENCY_ORDER.indexOf(a.urgency) - URGENCY_ORDER.indexOf(b.urgency);
  const groups = distinct(rows, (r) => r.group_id);
  const find = (pred) => rows.find(pred);
  let labels;
  /** @type {Series[]} */
  let series;
  if (view.bucket === 'none') {
    labels = groups.map((g) => groupName(names, g));
    series = split
      ? URGENCY_ORDER.filter((u) => rows.some((r) => r.urgency === u)).map((u, i) => ({
        label: `${t('series.median')} · ${t('urgency.' + u)}`, style: 'points', colour: PALETTE[i],
        values: groups.map((g) => hours(find((r) => r.group_id === g && r.urgency === u)?.working_seconds.median)),
      }))
      : [
        { label: t('series.p90'), style: 'bar', width: 0.7, colour: '--chart-2', values: groups.map((g) => hours(find((r) => r.group_id === g)?.working_seconds.p90)) },
        { label: t('series.median'), style: 'bar', width: 0.4, colour: '--chart-1', values: groups.map((g) => hours(find((r) => r.group_id === g)?.working_seconds.median)) },
      ];
  } else {
    const buckets = distinct(rows, (r) => r.bucket);
    labels = buckets.map((b) => bucketLabel(b, view.bucket));
    const lines = split ? groups.flatMap((g) => URGENCY_ORDER.map((u) => [g, u])) : groups.map((g) => [g, null]);
    series = lines.filter(([g, u]) => rows.some((r) => r.group_id === g && (!u || r.urgency === u))).map(([g, u], i) => ({
      label: `${groupName(names, g)}${u ? ' · ' + t('urgency.' + u) : ''}`, style: 'line', colour: PALETTE[i % PALETTE.length],
      values: buckets.map((b) => hours(find((r) => r.group_id === g && r.bucket === b && (!u || r.urgency === u))?.working_seconds.median)),
    }));
  }
  const total = data.total;
  return html`<${Chart} name=${view.bucket === 'none' ? t('col.group') : t('col.bucket')} labels=${labels} series=${series} format=${hoursText} />
    <${Table} id="stages" head=${html`<th>${t('col.group')}</th>${keyHeads(view)}<th class="num">${t('col.intervals')}</th><th class="num">${t('col.orders')}</th>
      <th class="num">${t('col.open')}</th><th class="num">${t('col.median_working')}</th><th class="num">${t('col.median_wall')}</th>
      <th class="num">${t('col.ninetieth')}</th><th class="num">${t('col.mean')}</th><th class="num">${t('col.sum')}</th>`}
      foot=${total && html`<tr class="total" data-total>
        <th>${t('col.total')}</th>${view.bucket !== 'none' && html`<td></td>`}${view.urgency === 'split' && html`<td></td>`}
        <td class="num">${number(total.intervals)}</td><td class="num">${number(total.orders)}</td><td class="num">${number(total.open)}</td>
        <td class="num">${duration(total.working_seconds.median)}</td><td class="num muted">${duration(total.wall_seconds.median)}</td>
        <td class="num">${duration(total.working_seconds.p90)}</td><td class="num">${duration(total.working_seconds.mean)}</td><td class="num">${duration(total.working_seconds.sum)}</td>
      </tr>`}>
      ${[...rows].sort(byGroup).map((r) => html`<tr data-group-id=${r.group_id}>
        <td>${groupName(names, r.group_id)}</td>${keyCells(r, view)}<td class="num">${number(r.intervals)}</td><td class="num">${number(r.orders)}</td>
        <td class="num">${number(r.open)}</td><td class="num">${duration(r.working_seconds.median)}</td><td class="num muted">${duration(r.wall_seconds.median)}</td>
        <td class="num">${duration(r.working_seconds.p90)}</td><td class="num">${duration(r.working_seconds.mean)}</td><td class="num">${duration(r.working_seconds.sum)}</td>
      </tr>`)}
    </${Table}>`;
}

/** A histogram bin's name: `4–8 год`, the last `160+ год`. */
function binLabel(bin) {
  return bin.to_hours == null ? t('hist.last', { from: bin.from_hours }) : t('hist.bin', { from: bin.from_hours, to: bin.to_hours });
}

/** Cycle time: completed cycles per bin of working hours, one series per cycle rule. */
export function CyclesView({ data, view }) {
  const rows = data.rows;
  const cycles = distinct(rows, (r) => r.cycle_id);
  const bins = (rows[0].histogram || []);
  const title = (id) => rows.find((r) => r.cycle_id === id)?.title || t('cycle.n', { id });
  // One rule is drawn as bars; several as lines over the same bins, so none hides another.
  /** @type {Series[]} */
  const series = cycles.map((id, i) => ({
    label: title(id), style: cycles.length > 1 ? 'line' : 'bar', colour: PALETTE[i % PALETTE.length],
    values: bins.map((_, b) => rows.filter((r) => r.cycle_id === id).reduce((sum, r) => sum + (r.histogram[b]?.cycles || 0), 0)),
  }));
  return html`<${Chart} name=${t('col.hours')} axis=${t('col.hours')} labels=${bins.map(binLabel)} series=${series} format=${countText} />
    <${Table} id="cycles" head=${html`<th>${t('col.cycle')}</th>${keyHeads(view)}<th class="num">${t('col.completed')}</th><th class="num">${t('col.open')}</th>
      <th class="num">${t('col.median_working')}</th><th class="num">${t('col.ninetieth')}</th><th class="num">${t('col.median_wall')}</th>`}>
      ${rows.map((r) => html`<tr data-cycle-id=${r.cycle_id}>
        <td>${r.title || t('cycle.n', { id: r.cycle_id })}</td>${keyCells(r, view)}<td class="num">${number(r.completed)}</td><td class="num">${number(r.open)}</td>
        <td class="num">${duration(r.working_seconds.median)}</td><td class="num">${duration(r.working_seconds.p90)}</td><td class="num muted">${duration(r.wall_seconds.median)}</td>
      </tr>`)}
    </${Table}>`;
}

/** A count with its share of `of`: `12 · 40 %`. */
const countShare = (count, of) => html`${number(count)} <span class="muted">· ${shareText(of ? count / of : null)}</span>`;

/** SLA compliance: the shares of ok, near and over per bucket (per group without buckets), stacked. */
export function SlaView({ data, names, view }) {
  const rows = data.rows;
  const perBucket = view.bucket !== 'none';
  const keys = perBucket ? distinct(rows, (r) => r.bucket) : distinct(rows, (r) => r.group_id);
  const sums = summed(rows, (r) => (perBucket ? r.bucket : r.group_id), ['orders', 'ok', 'near', 'over']);
  const share = (k, parts) => {
    const s = sums.get(k);
    return s && s.orders ? parts.reduce((sum, p) => sum + s[p], 0) / s.orders : null;
  };
  // Stacked: each bar reaches the sum of the states below it; the legend says the state's own share.
  /** @type {Series[]} */
  const series = [
    { label: t('sla.over'), style: 'bar', colour: '--over', values: keys.map((k) => share(k, ['ok', 'near', 'over'])), shown: keys.map((k) => share(k, ['over'])) },
    { label: t('sla.near'), style: 'bar', colour: '--near', values: keys.map((k) => share(k, ['ok', 'near'])), shown: keys.map((k) => share(k, ['near'])) },
    { label: t('sla.ok'), style: 'bar', colour: '--ok', values: keys.map((k) => share(k, ['ok'])) },
  ];
  // Orders whose group has no limit fill the bar to 100 %, in grey.
  if (rows.some((r) => r.orders > r.ok + r.near + r.over)) {
    series.unshift({ label: t('sla.none'), style: 'bar', colour: '--none', values: keys.map((k) => (sums.get(k)?.orders ? 1 : null)),
      shown: keys.map((k) => { const v = share(k, ['ok', 'near', 'over']); return v == null ? null : 1 - v; }) });
  }
  const labels = keys.map((k) => (perBucket ? bucketLabel(String(k), view.bucket) : groupName(names, k)));
  const sorted = [...rows].sort((a, b) => String(a.bucket || '').localeCompare(String(b.bucket || '')) || a.group_id - b.group_id);
  return html`<${Chart} name=${perBucket ? t('col.bucket') : t('col.group')} labels=${labels} series=${series} format=${shareText} max=${1} />
    <${Table} id="sla" head=${html`<th>${t('col.group')}</th>${keyHeads(view)}<th class="num">${t('col.orders')}</th>
      <th class="num">✓ ${t('sla.ok')}</th><th class="num">◔ ${t('sla.near')}</th><th class="num">! ${t('sla.over')}</th><th class="num">${t('sla.none')}</th>`}>
      ${sorted.map((r) => html`<tr data-group-id=${r.group_id}>
        <td>${groupName(names, r.group_id)}</td>${keyCells(r, view)}<td class="num">${number(r.orders)}</td>
        <td class="num sla-ok">${countShare(r.ok, r.orders)}</td><td class="num sla-near">${countShare(r.near, r.orders)}</td>
        <td class="num sla-over">${countShare(r.over, r.orders)}</td><td class="num muted">${number(r.orders - r.ok - r.near - r.over)}</td>
      </tr>`)}
    </${Table}>`;
}

/** Throughput: orders created, completed and cancelled per bucket (urgencies added up). */
export function ThroughputView({ data, view }) {
  const rows = data.rows;
  const fields = ['created', 'completed', 'cancelled'];
  const colours = { created: '--chart-1', completed: '--ok', cancelled: '--over' };
  /** @type {string[]} */
  let labels;
  /** @type {Series[]} */
  let series;
  if (view.bucket === 'none') {
    const total = summed(rows, () => 'all', fields).get('all');
    labels = fields.map((f) => t('col.' + f));
    series = [{ label: t('col.orders'), style: 'bar', colour: '--chart-1', values: fields.map((f) => total[f]) }];
  } else {
    const buckets = distinct(rows, (r) => r.bucket);
    const sums = summed(rows, (r) => r.bucket, fields);
    labels = buckets.map((b) => bucketLabel(b, view.bucket));
    series = fields.map((f) => ({ label: t('col.' + f), style: 'line', colour: colours[f], values: buckets.map((b) => sums.get(b)[f]) }));
  }
  const sorted = [...rows].sort((a, b) => String(a.bucket || '').localeCompare(String(b.bucket || '')) || URGENCY_ORDER.indexOf(a.urgency) - URGENCY_ORDER.indexOf(b.urgency));
  return html`<${Chart} name=${t('col.bucket')} labels=${labels} series=${series} format=${countText} />
    <${Table} id="throughput" head=${html`${view.bucket === 'none' ? html`<th>${t('col.bucket')}</th>` : ''}${keyHeads(view)}
      ${fields.map((f) => html`<th class="num">${t('col.' + f)}</th>`)}`}>
      ${sorted.map((r) => html`<tr>
        ${view.bucket === 'none' ? html`<td>${t('analytics.whole_period')}</td>` : ''}${keyCells(r, view)}
        ${fields.map((f) => html`<td class="num">${number(r[f])}</td>`)}
      </tr>`)}
    </${Table}>`;
}
