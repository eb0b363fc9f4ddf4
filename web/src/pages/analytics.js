// Analytics over a period (docs/analytics.md): time per stage, the cycle-time histogram, SLA
// compliance and throughput, each a chart with its table and its CSV file. The period, `by`,
// the bucket and the urgency are the page's query parameters, so a view is a link and the back
// button steps through the choices; the same parameters go to every query and CSV link.
import { html } from '../lib.js';
import { api } from '../api.js';
import { t } from '../i18n.js';
import { offset } from '../format.js';
import { useNames } from '../project.js';
import { setQuery } from '../router.js';
import { ErrorSummary, FieldError, LoadError, Loading, useData } from '../ui.js';
import { CyclesView, SlaView, StagesView, ThroughputView } from './analytics-views.js';

const BUCKETS = ['none', 'day', 'week', 'month'];
const BYS = ['created', 'entered'];
const URGENCIES = ['all', 'urgent', 'normal', 'pending', 'split'];
const DEFAULT_DAYS = 30;

/** Today's date in `zone`, as `YYYY-MM-DD`. */
export function today(zone) {
  return new Intl.DateTimeFormat('en-CA', { timeZone: zone || 'UTC', year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date());
}

/** The date `days` before a `YYYY-MM-DD` date. */
export function daysBefore(date, days) {
  const [y, m, d] = date.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d - days)).toISOString().slice(0, 10);
}

/**
 * The view the URL names, with the defaults filled in: the last 30 days (today included, in the
 * project's zone), orders created in them, no buckets, every urgency.
 * @returns {{from: string, to: string, by: string, bucket: string, urgency: string}}
 */
export function analyticsView(query, zone) {
  const to = query.to || today(zone);
  return {
    from: query.from || daysBefore(to, DEFAULT_DAYS - 1),
    to,
    by: BYS.includes(query.by) ? query.by : 'created',
    bucket: BUCKETS.includes(query.bucket) ? query.bucket : 'none',
    urgency: URGENCIES.includes(query.urgency) ? query.urgency : 'all',
  };
}

/** The parameters every analytics query of the view is asked with. */
function queryParams(slug, view) {
  return {
    project: slug, from: view.from, to: view.to, by: view.by,
    bucket: view.bucket === 'none' ? undefined : view.bucket, urgency: view.urgency,
  };
}

/** The parameters the pickers set: an error about one of them is said beside it. */
const CONTROLS = ['from', 'to', 'by', 'bucket', 'urgency'];

/**
 * The bucket and urgency an answer was asked with (it says them): while a new view loads, the
 * previous answer stays on screen drawn as what it is.
 */
function answeredView(data) {
  return { bucket: data.bucket || 'none', urgency: data.urgency || 'all' };
}

/**
 * Whether an answer is the one the view asks for: its period runs from the start of the view's
 * first day to the end of its last (the API names that instant as the next day's midnight).
 */
function answers(data, view) {
  const asked = answeredView(data);
  return String(data.from || '').slice(0, 10) === view.from && String(data.to || '').slice(0, 10) === daysBefore(view.to, -1)
    && asked.bucket === view.bucket && asked.urgency === view.urgency
    && (data.query === 'sla' || data.by === view.by);
}

/** The four cards; `counts` says how much a row holds, so rows of zeros count as no data. */
const SECTIONS = [
  { id: 'stages', view: StagesView, counts: (r) => r.intervals + r.open },
  { id: 'cycles', view: CyclesView, counts: (r) => r.completed + r.open },
  { id: 'sla', view: SlaView, counts: (r) => r.orders },
  { id: 'throughput', view: ThroughputView, counts: (r) => r.created + r.completed + r.cancelled },
];

export function AnalyticsPage({ project, query }) {
  const slug = project.slug;
  const zone = project.timezone;
  const names = useNames(slug);
  const view = analyticsView(query, zone);
  const params = queryParams(slug, view);
  const key = JSON.stringify(params);
  const answers = {
    stages: useData((signal) => api.analytics('stages', params, signal), [key]),
    cycles: useData((signal) => api.analytics('cycles', params, signal), [key]),
    sla: useData((signal) => api.analytics('sla', params, signal), [key]),
    throughput: useData((signal) => api.analytics('throughput', params, signal), [key]),
  };
  // A bad parameter or analytics being off is the same for every query: said once, at the top.
  const shared = Object.values(answers).map((a) => a.error).find((e) => e && (e.status === 400 || e.code === 'analytics_off'));

  return html`<section class="page wide analytics" data-analytics-page>
    <div class="page-head">
      <h1>${t('nav.analytics')}</h1>
      <span class="muted small">${project.name} · ${t('analytics.zone', { zone: `${zone} ${offset(zone)}` })}</span>
    </div>
    <${Controls} view=${view} error=${shared} />
    ${shared && html`<div data-analytics-error=${shared.code}>
      ${shared.code === 'analytics_off' && html`<p><strong>${t('analytics.off')}</strong></p>`}
      ${!CONTROLS.includes(shared.field) && html`<${ErrorSummary} error=${shared} />`}</div>`}
    ${!shared && html`<div class="analytics-grid">
      ${SECTIONS.map((s) => html`<${Section} key=${s.id} id=${s.id} answer=${answers[s.id]} view=${view} counts=${s.counts} csv=${api.analyticsCsv(s.id, params)}>
        ${(data) => html`<${s.view} data=${data} names=${names} view=${answeredView(data)} />`}
      </${Section}>`)}
    </div>`}
  </section>`;
}

/** The period, `by`, bucket and urgency pickers; each change is a step of the history. */
function Controls({ view, error }) {
  const set = (key) => (event) => setQuery({ [key]: event.target.value || undefined });
  const select = (key, options) => html`<label><span>${t('analytics.' + key)}</span>
    <select name=${key} value=${view[key]} onChange=${set(key)} data-field=${key}>
      ${options.map((o) => html`<option value=${o}>${t(key + '.' + o)}</option>`)}
    </select><${FieldError} error=${error} at=${key} /></label>`;
  return html`<div class="filter-bar analytics-controls" role="search">
    <${PeriodInputs} view=${view} set=${set} error=${error} />
    ${select('by', BYS)}
    ${select('bucket', BUCKETS)}
    ${select('urgency', URGENCIES)}
    <button type="button" class="chip" onClick=${() => setQuery({ from: undefined, to: undefined })}>
      ${t('analytics.last_days', { n: DEFAULT_DAYS })}</button>
  </div>`;
}

/** 'true' when `error` names `field` (for aria-invalid). @param {any} error @param {string} field */
export const errorAt = (error, field) => (error && error.errors.some((/** @type {any} */ e) => e.field === field) ? 'true' : undefined);

/** A chart with its table: a title, the CSV link, and what the answer says (or that it is empty). */
function Section({ id, answer, view, counts, csv, children }) {
  const { data, error, loading, reload } = answer;
  const busy = loading || (data && !answers(data, view));
  const filled = data && (data.rows || []).some((r) => counts(r) > 0);
  return html`<section class="card analytics-card" data-analytics=${id} aria-busy=${busy ? 'true' : 'false'}>
    <div class="analytics-head">
      <div><h2>${t('analytics.' + id)}</h2><p class="muted small">${t('analytics.' + id + '_hint')}</p></div>
      <a class="chip" href=${csv} download data-csv=${id} title=${t('analytics.csv_title')}>⤓ CSV</a>
    </div>
    <${LoadError} error=${error} retry=${reload} />
    ${!data && !error && html`<${Loading} />`}
    ${data && !filled && html`<p class="muted empty" data-empty>${t('analytics.empty')}</p>`}
    ${filled && html`<div class="analytics-body">${children(data)}</div>`}
  </section>`;
}

/**
 * The period's two dates, each with its error beside it.
 * @param {{ view: { from: string, to: string }, set: (key: string) => (event: any) => void, error: any }} props
 */
export function PeriodInputs({ view, set, error }) {
  return html`<label><span>${t('analytics.from')}</span>
      <input type="date" name="from" value=${view.from} onChange=${set('from')} data-field="from" aria-invalid=${errorAt(error, 'from')} />
      <${FieldError} error=${error} at="from" /></label>
    <label><span>${t('analytics.to')}</span>
      <input type="date" name="to" value=${view.to} onChange=${set('to')} data-field="to" aria-invalid=${errorAt(error, 'to')} />
      <${FieldError} error=${error} at="to" /></label>`;
}
