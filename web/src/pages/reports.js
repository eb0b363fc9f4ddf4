// Reports (docs/analytics.md, "Reports"): six tables, each rows plus a summary. The server
// sorts on any column and pages by its cursor; the table asks for the next page as it is
// scrolled, and the CSV link asks for every row of the same view. The report, its parameters,
// the sort and the order whose timeline is open are the page's query parameters, so a view is
// a link and the back button steps through the choices.
import { html, useCallback, useEffect, useRef, useState } from '../lib.js';
import { api } from '../api.js';
import { t } from '../i18n.js';
import { dateTime, number, offset } from '../format.js';
import { groupName, useNames } from '../project.js';
import { setQuery } from '../router.js';
import { administers } from '../access.js';
import { ErrorSummary, FieldError, LoadError, Loading } from '../ui.js';
import { TimelinePanel } from './timeline.js';
import { PeriodInputs, daysBefore, errorAt, today } from './analytics.js';
import { AsOf, setFilter, submitSearch } from './filters.js';
import { ReportTable } from './reports-table.js';
import { ReportSummary } from './reports-summary.js';

/** The reports, in the order of their tabs; the first is the default. */
export const REPORTS = ['productivity', 'sla', 'success', 'cancellations', 'stage-time', 'custom'];
const BYS = ['created', 'entered'];
const FACTS_URGENCIES = ['all', 'urgent', 'normal', 'pending'];
/** The orders list's filters, which `custom` takes (and `as_of`). */
const CUSTOM_KEYS = ['q', 'group', 'status', 'urgency', 'sla', 'overdue', 'open', 'created_from', 'created_to',
  'changed_from', 'changed_to', 'cycle', 'cycle_state', 'as_of'];
const DEFAULT_DAYS = 30;
const PAGE = 50;

/**
 * The view the URL names, with the defaults filled in: the first report, the last 30 days
 * (today included, in the project's zone), orders created in them, every urgency.
 */
export function reportView(query, zone) {
  const to = query.to || today(zone);
  return {
    name: REPORTS.includes(query.report) ? query.report : REPORTS[0],
    from: query.from || daysBefore(to, DEFAULT_DAYS - 1),
    to,
    by: BYS.includes(query.by) ? query.by : 'created',
    urgency: FACTS_URGENCIES.includes(query.urgency) ? query.urgency : 'all',
    group: query.group || '',
  };
}

/** The parameters the report is asked with (the page's and the CSV link's alike). */
function reportParams(slug, view, query) {
  const params = { project: slug, sort: query.sort || undefined };
  if (view.name === 'custom') {
    for (const key of CUSTOM_KEYS) if (query[key]) params[key] = query[key];
    // The facts reports' `urgency=all` is the orders list's "any urgency".
    if (params.urgency === 'all') delete params.urgency;
    return params;
  }
  return {
    ...params, from: view.from, to: view.to,
    // `productivity` places every row by settlement: `by` does not apply to it.
    by: view.name === 'productivity' ? undefined : view.by,
    urgency: view.urgency === 'all' ? undefined : view.urgency,
    group: view.group || undefined,
  };
}

/**
 * The rows of one listing: the first page, then the next ones by the cursor, appended. While a
 * new sort or period of the same report loads, the old rows stay on screen (marked busy).
 */
function useReportPages(name, params) {
  const [attempt, setAttempt] = useState(0);
  const key = name + ' ' + JSON.stringify(params) + ' ' + attempt;
  const [state, setState] = useState({ key, name, data: /** @type {any} */ (null), rows: /** @type {any[]} */ ([]), next: /** @type {string|null} */ (null), loading: true, error: null });
  const latest = useRef(state);
  latest.current = state;

  useEffect(() => {
    const controller = new AbortController();
    setState((s) => (s.name === name ? { ...s, key, loading: true, error: null } : { key, name, data: null, rows: [], next: null, loading: true, error: null }));
    api.report(name, { ...params, limit: PAGE }, controller.signal).then(
      (page) => setState({ key, name, data: page, rows: page.rows, next: page.next_cursor || null, loading: false, error: null }),
      (error) => !controller.signal.aborted && setState({ key, name, data: null, rows: [], next: null, loading: false, error }),
    );
    return () => controller.abort();
  }, [key]);

  const more = useCallback(async () => {
    const s = latest.current;
    if (s.loading || !s.next || s.key !== key) return;
    setState({ ...s, loading: true });
    try {
      const page = await api.report(name, { ...params, limit: PAGE, cursor: s.next });
      setState((now) => (now.key === key ? { ...now, rows: [...now.rows, ...page.rows], next: page.next_cursor || null, loading: false } : now));
    } catch (error) {
      setState((now) => ({ ...now, loading: false, error }));
    }
  }, [key]);

  const retry = useCallback(() => setAttempt((n) => n + 1), []);
  // Until the first page of another report arrives, the last one's rows are not shown under it.
  const same = state.name === name;
  return { ...state, data: same ? state.data : null, rows: same ? state.rows : [], current: state.key === key, more, retry };
}

export function ReportsPage({ me, project, query }) {
  const slug = project.slug;
  const zone = project.timezone;
  const names = useNames(slug);
  const view = reportView(query, zone);
  const params = reportParams(slug, view, query);
  const list = useReportPages(view.name, params);
  const selected = query.order ? Number(query.order) : null;
  const data = list.data;
  const error = list.error;
  const controlError = error && error.status === 400 ? error : null;
  const csv = api.reportCsv(view.name, params);

  return html`<div class=${'reports' + (selected ? ' with-panel' : '')}>
    <section class="page wide" data-reports-page=${view.name}>
      <div class="page-head">
        <h1>${t('nav.reports')}</h1>
        <span class="muted small">${project.name} · ${t('analytics.zone', { zone: `${zone} ${offset(zone)}` })}</span>
      </div>
      <${ReportTabs} active=${view.name} query=${query} />
      <p class="muted small report-hint">${t('report.' + view.name + '_hint')}</p>
      ${view.name === 'custom'
        ? html`<${CustomControls} query=${query} names=${names} zone=${zone} error=${controlError} />`
        : html`<${FactsControls} view=${view} names=${names} error=${controlError} />`}
      ${error && error.code === 'analytics_off' && html`<p data-report-error="analytics_off"><strong>${t('analytics.off')}</strong></p>`}
      ${error && error.status === 400 && html`<div data-report-error=${error.field || 'bad'}>
        ${!['from', 'to', 'by', 'urgency', 'group', 'created_from', 'created_to', 'as_of'].includes(error.field) && html`<${ErrorSummary} error=${error} />`}
        ${error.field === 'sort' && html`<button type="button" class="chip" onClick=${() => setQuery({ sort: undefined })}>${t('reports.default_sort')}</button>`}
      </div>`}
      ${error && error.status !== 400 && error.code !== 'analytics_off' && html`<${LoadError} error=${error} retry=${list.retry} />`}
      ${!data && !error && html`<${Loading} />`}
      ${data && html`<div class="report" data-report=${view.name} aria-busy=${list.loading || !list.current ? 'true' : 'false'} data-sort=${data.sort}>
        <${ReportSummary} name=${view.name} data=${data} names=${names} />
        <div class="report-bar">
          <span class="muted small" data-shown>${t('reports.shown', { n: number(list.rows.length), total: number(data.total_rows) })}
            ${data.as_of ? ' · ' + t('orders.as_of', { at: dateTime(data.as_of, zone, true) }) : ''}</span>
          <a class="chip" href=${csv} download data-csv=${view.name} title=${t('reports.csv_title')}>⤓ CSV</a>
        </div>
        ${list.rows.length === 0
          ? html`<p class="muted empty" data-empty>${t(view.name === 'custom' ? 'orders.none' : 'analytics.empty')}</p>`
          : html`<${ReportTable} data=${data} rows=${list.rows} names=${names} zone=${zone} sort=${data.sort}
              onSort=${(sort) => setQuery({ sort })} onOpen=${(id) => setQuery({ order: id })} selected=${selected}
              next=${list.next} loading=${list.loading && list.current} more=${list.more} />`}
      </div>`}
    </section>
    ${selected && html`<${TimelinePanel} key=${selected} project=${project} admin=${administers(me, slug)} orderId=${selected}
      asOf=${view.name === 'custom' ? query.as_of : undefined} onClose=${() => setQuery({ order: undefined })} />`}
  </div>`;
}

/** The six reports as tabs; a tab keeps the period and filters, and drops the sort (columns differ). */
function ReportTabs({ active, query }) {
  const href = (id) => {
    const next = new URLSearchParams({ ...query, report: id });
    next.delete('sort');
    next.delete('order');
    return '?' + next;
  };
  return html`<nav class="tabs report-tabs" aria-label=${t('reports.pick')}>${REPORTS.map((id) => html`
    <a href=${href(id)} aria-current=${id === active ? 'page' : undefined} data-report-tab=${id}
       onClick=${(e) => { e.preventDefault(); setQuery({ report: id, sort: undefined, order: undefined }); }}>${t('report.' + id)}</a>`)}</nav>`;
}


/** The period, `by`, urgency and group of the five reports over the facts. */
function FactsControls({ view, names, error }) {
  // `all` is the default urgency: said by its absence.
  const set = (key) => (event) => setQuery({ [key]: (event.target.value === 'all' ? '' : event.target.value) || undefined, order: undefined });
  const groups = names ? [...names.groups.values()].filter((g) => !g.terminal) : [];
  return html`<div class="filter-bar analytics-controls" role="search">
    <${PeriodInputs} view=${view} set=${set} error=${error} />
    ${view.name !== 'productivity' && html`<label><span>${t('analytics.by')}</span>
      <select name="by" value=${view.by} onChange=${set('by')} data-field="by">
        ${BYS.map((o) => html`<option value=${o}>${t('by.' + o)}</option>`)}
      </select><${FieldError} error=${error} at="by" /></label>`}
    <label><span>${t('analytics.urgency')}</span>
      <select name="urgency" value=${view.urgency} onChange=${set('urgency')} data-field="urgency">
        ${FACTS_URGENCIES.map((o) => html`<option value=${o}>${t('urgency.' + o)}</option>`)}
      </select><${FieldError} error=${error} at="urgency" /></label>
    <label><span>${t('filter.group')}</span>
      <select name="group" value=${view.group} onChange=${set('group')} data-field="group">
        <option value="">${t('filter.any')}</option>
        ${groups.map((g) => html`<option value=${String(g.id)}>${groupName(names, g.id)}</option>`)}
      </select><${FieldError} error=${error} at="group" /></label>
    <button type="button" class="chip" onClick=${() => setQuery({ from: undefined, to: undefined, order: undefined })}>
      ${t('analytics.last_days', { n: DEFAULT_DAYS })}</button>
  </div>`;
}

/** The orders list's filters, for `custom`. */
function CustomControls({ query, names, zone, error }) {
  const set = setFilter;
  const search = submitSearch;
  const select = (key, options, label) => html`<label><span>${label}</span>
    <select name=${key} value=${query[key] || ''} onChange=${set(key)} data-field=${key}>
      <option value="">${t('filter.any')}</option>
      ${options.map(([value, text]) => html`<option value=${value}>${text}</option>`)}
    </select><${FieldError} error=${error} at=${key} /></label>`;
  const groups = names ? [...names.groups.values()].map((g) => [String(g.id), groupName(names, g.id)]) : [];
  const active = CUSTOM_KEYS.some((k) => query[k]);
  return html`<div class="filter-bar analytics-controls" role="search">
    <form onSubmit=${search} class="search"><label><span>${t('filter.q')}</span>
      <input name="q" type="search" inputmode="numeric" value=${query.q || ''} placeholder=${t('filter.q_hint')} /></label></form>
    ${select('group', groups, t('filter.group'))}
    ${select('urgency', ['urgent', 'normal', 'pending'].map((u) => [u, t('urgency.' + u)]), t('filter.urgency'))}
    ${select('sla', ['ok', 'near', 'over', 'none'].map((s) => [s, t('sla.' + s)]), t('filter.sla'))}
    ${select('open', [['true', t('filter.open')], ['false', t('filter.closed')]], t('filter.state'))}
    <label class="check"><input type="checkbox" name="overdue" checked=${query.overdue === 'true'} onChange=${set('overdue')} /> ${t('filter.overdue')}</label>
    <label><span>${t('filter.created_from')}</span><input type="date" name="created_from" value=${query.created_from || ''} onChange=${set('created_from')}
      data-field="created_from" aria-invalid=${errorAt(error, 'created_from')} /><${FieldError} error=${error} at="created_from" /></label>
    <label><span>${t('filter.created_to')}</span><input type="date" name="created_to" value=${query.created_to || ''} onChange=${set('created_to')}
      data-field="created_to" aria-invalid=${errorAt(error, 'created_to')} /><${FieldError} error=${error} at="created_to" /></label>
    <${AsOf} zone=${zone} value=${query.as_of} error=${error} />
    ${active && html`<button type="button" class="chip" onClick=${() => setQuery(Object.fromEntries([...CUSTOM_KEYS, 'order'].map((k) => [k, undefined])))}>${t('filter.clear')}</button>`}
  </div>`;
}
