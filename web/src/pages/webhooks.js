// Webhook statistics (owners and admins, `GET /api/webhooks/stats`): per project and day, the
// webhooks by outcome (refusals by reason), the share of duplicates, p50/p99 of the time ingest
// took to answer, and the last accepted and refused webhook. The project and the period are the
// page's query parameters; days are in each project's time zone, newest first.
import { html } from '../lib.js';
import { api } from '../api.js';
import { t } from '../i18n.js';
import { dateTime, number } from '../format.js';
import { setQuery } from '../router.js';
import { ErrorSummary, LoadError, Loading, useData } from '../ui.js';
import { PeriodInputs, daysBefore, today } from './analytics.js';

const DEFAULT_DAYS = 30;
const OUTCOMES = ['received', 'accepted', 'duplicate', 'ignored', 'rejected'];
/** The refusal reasons ingest names (docs/event-path.md); another is shown as it is. */
const REASONS = ['unauthorized', 'forbidden', 'too_large', 'unsupported_media_type', 'malformed', 'invalid_field', 'overloaded', 'unavailable'];

/** @param {string} code */
const reason = (code) => (REASONS.includes(code) ? t('webhooks.reason_' + code) : code);

/** @param {number|null|undefined} ms */
const millis = (ms) => (ms === null || ms === undefined ? '—' : `≤ ${number(ms, ms < 10 ? 2 : 0)} ${t('webhooks.ms')}`);

/** @param {number|null|undefined} share */
const percent = (share) => (share === null || share === undefined ? '—' : `${number(share * 100, 1)} %`);

function Refusal({ refusal, zone }) {
  if (!refusal) return '—';
  return html`<span class="nowrap">${dateTime(refusal.at, zone, true)}</span><div class="muted small" data-refusal-reason=${refusal.reason}>${reason(refusal.reason)}</div>`;
}

export function WebhooksPage({ me, query }) {
  const project = query.project || '';
  const admin = me.role === 'owner' ? me.projects : me.projects.filter((p) => p.role === 'admin');
  const zone = admin.find((p) => p.slug === project)?.timezone || Intl.DateTimeFormat().resolvedOptions().timeZone;
  const to = query.to || today(zone);
  const view = { from: query.from || daysBefore(to, DEFAULT_DAYS - 1), to };
  // Without a chosen end the server counts up to now, so each project's own today is in (the
  // browser's date may still be yesterday where a project already lives in tomorrow).
  const params = { project: project || undefined, from: view.from, to: query.to || undefined };
  const answer = useData((signal) => api.webhookStats(params, signal), [JSON.stringify(params)]);
  const error = answer.error && answer.error.status === 400 ? answer.error : null;
  const set = (key) => (event) => setQuery({ [key]: event.target.value || undefined });
  const projects = answer.data?.projects || [];
  const empty = answer.data && projects.every((p) => p.days.length === 0);

  return html`<section class="page wide webhooks" data-webhooks-page>
    <div class="page-head"><h1>${t('webhooks.title')}</h1>
      <span class="muted small">${t('webhooks.hint')}</span></div>
    <div class="filter-bar" role="search">
      <label><span>${t('nav.project')}</span><select name="webhooks-project" value=${project} onChange=${set('project')}>
        <option value="">${t('nav.all_projects')}</option>${admin.map((p) => html`<option value=${p.slug}>${p.name}</option>`)}</select></label>
      <${PeriodInputs} view=${view} set=${set} error=${error} />
      <button type="button" class="chip" onClick=${() => setQuery({ from: undefined, to: undefined })}>${t('analytics.last_days', { n: DEFAULT_DAYS })}</button>
    </div>
    ${error && !['from', 'to'].includes(error.field) && html`<${ErrorSummary} error=${error} />`}
    ${!error && html`<${LoadError} error=${answer.error} retry=${answer.reload} />`}
    ${!answer.data && !answer.error && html`<${Loading} />`}
    ${empty && html`<p class="muted empty" data-empty>${t('webhooks.empty')}</p>`}
    ${answer.data && !empty && html`<div class="table-scroll"><table class="list webhook-stats" data-webhook-stats aria-busy=${answer.loading ? 'true' : 'false'}>
      <thead><tr>
        <th>${t('webhooks.day')}</th>
        ${OUTCOMES.map((o) => html`<th class="num">${t('webhooks.' + o)}</th>`)}
        <th class="num">${t('webhooks.duplicate_share')}</th>
        <th class="num" title=${t('webhooks.latency_hint')}>p50</th>
        <th class="num" title=${t('webhooks.latency_hint')}>p99</th>
        <th>${t('webhooks.last_accepted')}</th>
        <th>${t('webhooks.last_refusal')}</th>
      </tr></thead>
      ${projects.filter((p) => p.days.length).map((p) => html`<tbody data-webhook-project=${p.project}>
        <tr class="group-head"><th colspan="11">${p.name} <span class="muted small">${p.timezone} · ${t('webhooks.ever')}: ${t('webhooks.last_accepted').toLowerCase()} ${dateTime(p.last_accepted_at, p.timezone, true)}${p.last_refusal
            ? html`, ${t('webhooks.last_refusal').toLowerCase()} ${dateTime(p.last_refusal.at, p.timezone, true)} (${reason(p.last_refusal.reason)})` : ''}</span></th></tr>
        ${[...p.days].reverse().map((d) => html`<tr data-webhook-day=${d.day}>
          <td class="nowrap">${d.day}</td>
          ${OUTCOMES.map((o) => html`<td class="num" data-outcome=${o}>${number(d[o])}${o === 'rejected' && d.rejected > 0
            ? html`<div class="muted small">${Object.entries(d.rejected_by_reason).map(([code, n]) => html`<div data-reason=${code}>${reason(code)}: ${number(n)}</div>`)}</div>` : ''}</td>`)}
          <td class="num" data-duplicate-share>${percent(d.duplicate_share)}</td>
          <td class="num" data-p50>${millis(d.p50_ms)}</td>
          <td class="num" data-p99>${millis(d.p99_ms)}</td>
          <td class="nowrap">${dateTime(d.last_accepted_at, p.timezone, true)}</td>
          <td><${Refusal} refusal=${d.last_refusal} zone=${p.timezone} /></td>
        </tr>`)}
      </tbody>`)}
    </table></div>`}
  </section>`;
}
