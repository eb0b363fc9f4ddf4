// The dashboard's filter bar and KPI tiles, against the parameters of issue 14: every filter
// is a query parameter of the page and of `/api/orders` and `/api/orders/kpis` alike, so the
// tiles count the whole filtered set and the URL is the view.
import { html, useEffect } from '../lib.js';
import { api } from '../api.js';
import { t } from '../i18n.js';
import { duration, fromLocalInput, localInput, number, offset } from '../format.js';
import { groupName, kpiCount } from '../project.js';
import { setQuery } from '../router.js';
import { FieldError, useData } from '../ui.js';

/** The filters of `/api/orders` (issue 14 §1), as the page's URL names them too. */
export const FILTER_KEYS = ['q', 'group', 'status', 'urgency', 'sla', 'overdue', 'open', 'created_from', 'created_to',
  'changed_from', 'changed_to', 'cycle', 'cycle_state'];

const SORTS = ['-changed', 'changed', '-created', 'created', '-working', 'working', '-wall', 'wall', 'id', '-id'];

/**
 * The change handler of the filter named `key`: an input, a select or a checkbox sets it in the
 * URL (closing the selected order).
 * @param {string} key
 */
export const setFilter = (key) => (/** @type {any} */ event) => {
  const target = event.target;
  const value = target.type === 'checkbox' ? (target.checked ? 'true' : undefined) : target.value || undefined;
  setQuery({ [key]: value, order: undefined });
};

/** The search form's submit: its `q` into the URL. @param {any} event */
export const submitSearch = (event) => {
  event.preventDefault();
  const value = new FormData(event.currentTarget).get('q');
  setQuery({ q: String(value || '') || undefined, order: undefined });
};

export function FilterBar({ query, names }) {
  const set = setFilter;
  const search = submitSearch;
  const select = (key, options, label) => html`<label><span>${label}</span>
    <select name=${key} value=${query[key] || ''} onChange=${set(key)}>
      <option value="">${t('filter.any')}</option>
      ${options.map(([value, text]) => html`<option value=${value}>${text}</option>`)}
    </select></label>`;
  const groups = names ? [...names.groups.values()].map((g) => [String(g.id), g.name]) : [];
  const statuses = names ? [...names.statuses.values()].map((s) => [String(s.id), s.name]) : [];
  const active = FILTER_KEYS.some((k) => query[k]) || query.sort;
  return html`<div class="filter-bar" role="search">
    <form onSubmit=${search} class="search"><label><span>${t('filter.q')}</span>
      <input name="q" type="search" inputmode="numeric" value=${query.q || ''} placeholder=${t('filter.q_hint')} /></label></form>
    ${select('group', groups.map(([id]) => [id, groupName(names, id)]), t('filter.group'))}
    ${statuses.length > 0 && select('status', statuses, t('filter.status'))}
    ${select('urgency', ['urgent', 'normal', 'pending'].map((u) => [u, t('urgency.' + u)]), t('filter.urgency'))}
    ${select('sla', ['ok', 'near', 'over', 'none'].map((s) => [s, t('sla.' + s)]), t('filter.sla'))}
    ${select('open', [['true', t('filter.open')], ['false', t('filter.closed')]], t('filter.state'))}
    <label class="check"><input type="checkbox" name="overdue" checked=${query.overdue === 'true'} onChange=${set('overdue')} /> ${t('filter.overdue')}</label>
    <label><span>${t('filter.created_from')}</span><input type="date" name="created_from" value=${query.created_from || ''} onChange=${set('created_from')} /></label>
    <label><span>${t('filter.created_to')}</span><input type="date" name="created_to" value=${query.created_to || ''} onChange=${set('created_to')} /></label>
    <label><span>${t('filter.sort')}</span>
      <select name="sort" value=${query.sort || '-changed'} onChange=${(e) => setQuery({ sort: e.target.value === '-changed' ? undefined : e.target.value })}>
        ${SORTS.map((s) => html`<option value=${s}>${t('sort.' + s)}</option>`)}
      </select></label>
    ${active && html`<button type="button" class="chip" onClick=${() => setQuery(Object.fromEntries([...FILTER_KEYS, 'sort'].map((k) => [k, undefined])))}>${t('filter.clear')}</button>`}
  </div>`;
}

/** KPIs over the whole filtered set, refreshed at most every 5 s while live. */
export function KpiTiles({ params, live }) {
  const key = JSON.stringify(params);
  const { data, reload } = useData((signal) => api.kpis(params, signal), [key]);
  useEffect(() => {
    if (!live) return undefined;
    const timer = setInterval(() => document.visibilityState === 'visible' && reload(), 5000);
    return () => clearInterval(timer);
  }, [reload, live]);
  if (!data) return html`<div class="kpis placeholder"></div>`;
  const kpis = data.kpis || data;
  const tile = (label, value, cls = '') => html`<div class=${'kpi ' + cls}><div class="kpi-value">${value}</div><div class="kpi-label">${label}</div></div>`;
  const cycles = kpis.cycles ? Object.entries(kpis.cycles) : [];
  return html`<div class="kpis" data-kpis>
    ${tile(t('kpi.orders'), number(kpiCount(kpis, 'count')))}
    ${tile(t('urgency.urgent'), number(kpiCount(kpis, 'urgent')))}
    ${tile(t('kpi.overdue'), number(kpiCount(kpis, 'sla.overdue')), 'sla-over')}
    ${['over', 'near', 'ok'].map((s) => tile(t('sla.' + s), number(kpiCount(kpis, 'sla.' + s)), 'sla-' + s))}
    ${cycles.slice(0, 2).map(([id, c]) => tile(t('kpi.cycle_median', { title: c.title || id }),
      c.working_seconds && c.working_seconds.median != null ? duration(c.working_seconds.median) : '—'))}
  </div>`;
}

/** The "as of" picker: empty is now (live); an instant freezes the view at it. */
export function AsOf({ zone, value, error = null }) {
  const change = (event) => setQuery({ as_of: fromLocalInput(event.target.value, zone) || undefined });
  return html`<div class="as-of">
    <label><span>${t('asof.label')}</span>
      <input type="datetime-local" name="as_of" data-field="as_of" value=${value ? localInput(value, zone) : ''} onChange=${change}
        aria-invalid=${error && error.field === 'as_of' ? 'true' : undefined} /><${FieldError} error=${error} at="as_of" /></label>
    <span class="muted small">${zone} ${offset(zone)}</span>
    ${value && html`<button type="button" class="chip" onClick=${() => setQuery({ as_of: undefined })}>${t('asof.now')}</button>`}
  </div>`;
}
