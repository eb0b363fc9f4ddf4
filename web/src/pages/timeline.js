// An order's timeline in a side panel: a Gantt of its intervals (one row per group; working
// and non-working segments shaded once the API sends them), totals per group and status with
// visits and SLA, cycles, urgency with its source, and (admins) the order's override.
import { html, useEffect, useRef, useState } from '../lib.js';
import { api } from '../api.js';
import { t } from '../i18n.js';
import { dateTime, duration } from '../format.js';
import { groupName, statusName, useNames } from '../project.js';
import { ErrorSummary, LoadError, Loading, SlaBadge, UrgencyBadge, urgencyWhy, useData } from '../ui.js';

export function TimelinePanel({ project, orderId, asOf, admin, onClose }) {
  const names = useNames(project.slug);
  const zone = project.timezone;
  const { data, error, reload } = useData((signal) => api.timeline(project.slug, orderId, asOf, signal), [orderId, asOf]);
  const heading = useRef(/** @type {HTMLHeadingElement|null} */ (null));

  useEffect(() => heading.current?.focus(), []);
  useEffect(() => {
    const key = (event) => event.key === 'Escape' && onClose();
    window.addEventListener('keydown', key);
    return () => window.removeEventListener('keydown', key);
  }, [onClose]);
  useEffect(() => {
    if (asOf) return undefined;
    const timer = setInterval(() => document.visibilityState === 'visible' && reload(), 15000);
    return () => clearInterval(timer);
  }, [reload, asOf]);

  return html`<aside class="panel" role="dialog" aria-modal="false" aria-labelledby="panel-title" data-timeline=${orderId}>
    <div class="panel-head">
      <h2 id="panel-title" tabindex="-1" ref=${heading}>${t('timeline.title', { id: orderId })}</h2>
      <button type="button" class="chip" onClick=${onClose} aria-label=${t('action.close')} title="Esc">✕</button>
    </div>
    <${LoadError} error=${error} retry=${reload} />
    ${!data && !error && html`<${Loading} />`}
    ${data && html`<${TimelineBody} order=${data} names=${names} zone=${zone} />`}
    ${data && admin && html`<${OverrideEditor} project=${project.slug} order=${data} zone=${zone} onSaved=${reload} />`}
  </aside>`;
}

function TimelineBody({ order, names, zone }) {
  const groups = Object.entries(order.groups || {}).sort((a, b) => Number(a[0]) - Number(b[0]));
  const statuses = Object.entries(order.statuses || {});
  const cycles = Object.entries(order.cycles || {});
  return html`
    <div class="facts">
      <div><span class="muted">${t('order.status')}</span> ${groupName(names, order.current_group_id)} › ${statusName(names, order.current_status_id)}</div>
      <div><${SlaBadge} state=${order.sla} /> <${UrgencyBadge} urgency=${order.urgency} source=${order.urgency_source} />
        <span class="muted small"> ${urgencyWhy(order.urgency_source)}</span>
        ${order.sla_profile && (order.sla_profile === 'urgent') !== (order.urgency === 'urgent') && html` <span class="muted small">${t('timeline.grid', { grid: t('grid.' + order.sla_profile) })}</span>`}</div>
      <div><span class="muted">${t('order.created')}</span> ${dateTime(order.started_at, zone)}
        ${' · '}<span class="muted">${t('order.changed')}</span> ${dateTime(order.last_changed_at, zone)}
        ${' · '}<span class="muted">${t('timeline.as_of')}</span> ${dateTime(order.as_of, zone)}</div>
      ${order.untracked_seconds > 0 && html`<div class="muted small">${t('timeline.untracked', { d: duration(order.untracked_seconds) })}</div>`}
      ${order.history_truncated && html`<div class="muted small">${t('timeline.truncated')}</div>`}
    </div>
    <${Gantt} order=${order} names=${names} zone=${zone} />
    <h3>${t('timeline.groups')}</h3>
    <${Totals} kind="groups" head=${t('col.group')} rows=${groups} name=${(id) => groupName(names, id)} />
    <h3>${t('timeline.statuses')}</h3>
    <${Totals} kind="statuses" head=${t('col.status')} rows=${statuses} name=${(id) => statusName(names, id)} />
    ${cycles.length > 0 && html`<h3>${t('timeline.cycles')}</h3>
    <table class="totals" data-totals="cycles">
      <thead><tr><th>${t('col.cycle')}</th><th>${t('time.working')}</th><th>${t('time.wall')}</th><th>${t('col.started')}</th><th>${t('col.state')}</th></tr></thead>
      <tbody>${cycles.map(([id, c]) => html`<tr data-cycle-id=${id}>
        <td>${c.title || id}</td><td class="num">${duration(c.working_seconds)}</td><td class="num">${duration(c.wall_seconds)}</td>
        <td>${dateTime(c.started_at, zone)}</td><td>${c.open ? t('cycle.open') : t('cycle.done')}</td></tr>`)}</tbody>
    </table>`}
    <details class="intervals"><summary>${t('timeline.intervals', { n: (order.intervals || []).length })}</summary>
      <table class="totals" data-totals="intervals">
        <thead><tr><th>${t('col.status')}</th><th>${t('col.entered')}</th><th>${t('col.left')}</th><th>${t('time.working')}</th><th>${t('time.wall')}</th></tr></thead>
        <tbody>${(order.intervals || []).map((i) => html`<tr>
          <td>${statusName(names, i.status_id)}</td><td>${dateTime(i.entered_at, zone)}</td><td>${i.left_at ? dateTime(i.left_at, zone) : t('interval.open')}</td>
          <td class="num">${duration(i.working_seconds)}</td><td class="num">${duration(i.wall_seconds)}</td></tr>`)}</tbody>
      </table></details>`;
}

/** Totals per group or per status: working and wall time, limit, visits and SLA. */
function Totals({ kind, head, rows, name }) {
  const key = kind === 'groups' ? 'data-group-id' : 'data-status-id';
  return html`<table class="totals" data-totals=${kind}>
    <thead><tr><th>${head}</th><th>${t('time.working')}</th><th>${t('time.wall')}</th><th>${t('time.limit')}</th><th>${t('time.visits')}</th><th>SLA</th></tr></thead>
    <tbody>${rows.map(([id, g]) => html`<tr ...${{ [key]: id }}>
      <td>${name(id)}</td><td class="num">${duration(g.working_seconds)}</td><td class="num">${duration(g.wall_seconds)}</td>
      <td class="num">${g.limit_seconds ? duration(g.limit_seconds) : '—'}</td><td class="num">${g.visits}</td><td><${SlaBadge} state=${g.sla} /></td></tr>`)}</tbody>
  </table>`;
}

/** Ticks for a span: about five, at round hours or days. */
function ticks(from, to) {
  const span = to - from;
  const steps = [3600e3, 3 * 3600e3, 6 * 3600e3, 12 * 3600e3, 86400e3, 2 * 86400e3, 7 * 86400e3, 14 * 86400e3, 30 * 86400e3];
  const step = steps.find((s) => span / s <= 6) || span / 5;
  const out = [];
  for (let at = Math.ceil(from / step) * step; at < to; at += step) out.push(at);
  return out;
}

/** The intervals on a time axis, one row per group; hatched spans are outside working hours. */
function Gantt({ order, names, zone }) {
  const intervals = order.intervals || [];
  if (!intervals.length) return null;
  const asOf = Date.parse(order.as_of);
  const from = Math.min(Date.parse(order.started_at), Date.parse(intervals[0].entered_at));
  const to = Math.max(asOf, ...intervals.map((i) => Date.parse(i.left_at || order.as_of)));
  const span = Math.max(1, to - from);
  const x = (at) => `${(((at - from) / span) * 100).toFixed(3)}%`;
  const w = (a, b) => `${Math.max(0.2, ((b - a) / span) * 100).toFixed(3)}%`;
  const rows = [...new Set(intervals.map((i) => i.group_id))].sort((a, b) => a - b);
  return html`<div class="gantt" role="img" aria-label=${t('timeline.gantt')}>
    <div class="gantt-axis">${ticks(from, to).filter((at) => (at - from) / span < 0.86).map((at) => html`<span style=${'left:' + x(at)}>${dateTime(at, zone)}</span>`)}</div>
    ${rows.map((group) => html`<div class="gantt-row" data-group-id=${group}>
      <div class="gantt-label">${groupName(names, group)}</div>
      <div class="gantt-track">
        ${Date.parse(intervals[0].entered_at) > from && group === rows[0] && html`<span class="gantt-untracked"
          style=${`left:0;width:${w(from, Date.parse(intervals[0].entered_at))}`} title=${t('timeline.untracked', { d: duration(order.untracked_seconds) })}></span>`}
        ${intervals.filter((i) => i.group_id === group).map((i) => {
          const a = Date.parse(i.entered_at);
          const b = i.left_at ? Date.parse(i.left_at) : asOf;
          const tip = `${statusName(names, i.status_id)}: ${dateTime(a, zone)} – ${i.left_at ? dateTime(b, zone) : t('interval.open')} · ${t('time.working')} ${duration(i.working_seconds)} · ${t('time.wall')} ${duration(i.wall_seconds)}`;
          const terminal = names && names.groups.get(group)?.terminal;
          return html`<span class=${'gantt-bar' + (terminal ? ' terminal' : '') + (i.left_at ? '' : ' open')} data-interval
              style=${`left:${x(a)};width:${w(a, b)}`} title=${tip}>
            ${(i.segments || []).filter((s) => !s.working).map((s) => html`<i class="off" style=${`left:${(((Date.parse(s.from) - a) / Math.max(1, b - a)) * 100).toFixed(3)}%;width:${(((Date.parse(s.to) - Date.parse(s.from)) / Math.max(1, b - a)) * 100).toFixed(3)}%`}></i>`)}
          </span>`;
        })}
      </div>
    </div>`)}
    <div class="gantt-now" style=${'left:' + x(asOf)} title=${dateTime(asOf, zone)}></div>
  </div>`;
}

/** An admin's override of the order's urgency and SLA grid. */
function OverrideEditor({ project, order, onSaved }) {
  const current = order.override || {};
  const [error, setError] = useState(/** @type {any} */ (null));
  const [done, setDone] = useState('');
  const save = async (event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const urgent = String(form.get('is_urgent') || '');
    const profile = String(form.get('sla_profile') || '');
    setError(null);
    setDone('');
    try {
      if (!urgent && !profile) {
        if (order.override) await api.deleteOverride(project, order.order_id);
      } else {
        await api.putOverride(project, order.order_id, {
          is_urgent: urgent ? urgent === 'true' : undefined,
          sla_profile: profile || undefined,
        });
      }
      setDone(t('override.queued'));
      setTimeout(onSaved, 1500);
    } catch (err) {
      setError(err);
    }
  };
  const value = (v) => (v === null || v === undefined ? '' : String(v));
  return html`<form class="override" onSubmit=${save} data-override>
    <h3>${t('override.title')}</h3>
    <label>${t('override.urgency')}
      <select name="is_urgent" value=${value(current.is_urgent)} data-field="is_urgent">
        <option value="">${t('override.auto')}</option><option value="true">${t('urgency.urgent')}</option><option value="false">${t('urgency.normal')}</option>
      </select></label>
    <label>${t('override.grid')}
      <select name="sla_profile" value=${value(current.sla_profile)} data-field="sla_profile">
        <option value="">${t('override.auto')}</option><option value="normal">${t('grid.normal')}</option><option value="urgent">${t('grid.urgent')}</option>
      </select></label>
    <button type="submit">${t('action.save')}</button>
    ${current.updated_by && html`<span class="muted small"> ${t('override.by', { who: current.updated_by })}</span>`}
    ${done && html`<span class="ok-text" role="status"> ${done}</span>`}
    <${ErrorSummary} error=${error} />
  </form>`;
}
