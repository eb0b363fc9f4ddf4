// The audit log (owners: everything; admins: their projects), newest first, page by page.
import { html, useState } from '../lib.js';
import { api } from '../api.js';
import { t } from '../i18n.js';
import { dateTime } from '../format.js';
import { setQuery } from '../router.js';
import { LoadError, Loading, useData } from '../ui.js';

export function AuditPage({ me, query }) {
  const project = query.project || '';
  const zone = me.projects.find((p) => p.slug === project)?.timezone || Intl.DateTimeFormat().resolvedOptions().timeZone;
  const [more, setMore] = useState(/** @type {any[]} */ ([]));
  const [cursor, setCursor] = useState(/** @type {string|null|undefined} */ (undefined));
  const first = useData(async (signal) => {
    setMore([]);
    setCursor(undefined);
    return api.audit({ project: project || undefined, limit: 50 });
  }, [project]);
  const next = cursor === undefined ? first.data?.next_cursor : cursor;
  const loadMore = async () => {
    const page = await api.audit({ project: project || undefined, limit: 50, cursor: next });
    setMore((m) => [...m, ...page.entries]);
    setCursor(page.next_cursor);
  };
  const entries = [...(first.data?.entries || []), ...more];
  const admin = me.role === 'owner' ? me.projects : me.projects.filter((p) => p.role === 'admin');
  return html`<section class="page">
    <div class="page-head"><h1>${t('nav.audit')}</h1>
      <label><span class="sr-only">${t('nav.project')}</span><select name="audit-project" value=${project} onChange=${(e) => setQuery({ project: e.target.value || undefined })}>
        <option value="">${t('nav.all_projects')}</option>${admin.map((p) => html`<option value=${p.slug}>${p.name}</option>`)}</select></label>
      <span class="muted small">${zone}</span></div>
    <${LoadError} error=${first.error} retry=${first.reload} />
    ${!first.data ? html`<${Loading} />` : html`<table class="list audit" data-audit>
      <thead><tr><th>${t('audit.at')}</th><th>${t('audit.actor')}</th><th>${t('nav.project')}</th><th>${t('audit.action')}</th><th>${t('audit.change')}</th></tr></thead>
      <tbody>${entries.map((e) => html`<tr data-audit-id=${e.id}>
        <td class="nowrap">${dateTime(e.at, zone, true)}</td>
        <td>${e.actor}${e.client_address ? html`<div class="muted small">${e.client_address}</div>` : ''}</td>
        <td>${e.project || '—'}</td>
        <td><code>${e.action}</code><div class="muted small">${e.entity}${e.entity_id ? ' ' + e.entity_id : ''}</div></td>
        <td>${(e.before || e.after) && html`<details><summary>${t('audit.show')}</summary>
          ${e.before && html`<div class="muted small">${t('audit.before')}</div><pre>${JSON.stringify(e.before, null, 1)}</pre>`}
          ${e.after && html`<div class="muted small">${t('audit.after')}</div><pre>${JSON.stringify(e.after, null, 1)}</pre>`}</details>`}</td>
      </tr>`)}</tbody></table>`}
    ${next && html`<button type="button" onClick=${loadMore}>${t('orders.more')}</button>`}
  </section>`;
}
