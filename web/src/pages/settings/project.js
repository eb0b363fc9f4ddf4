// The project itself: its name and time zone, how the enricher reaches its KeyCRM API (the
// token is write-only: shown as set or not), the status dictionary and group names, and the
// webhook URL with secret rotation (the new URL is shown once, with a copy button).
import { html, useState } from '../../lib.js';
import { api } from '../../api.js';
import { t } from '../../i18n.js';
import { dateTime } from '../../format.js';
import { names as loadNames } from '../../project.js';
import { ErrorSummary, LoadError, Loading, ShownOnce, useData } from '../../ui.js';
import { Field, RecomputeProgress, groupIds } from './form.js';

export function ProjectEditor({ slug, names, onNamesChanged }) {
  const loaded = useData((signal) => Promise.all([api.project(slug), api.settings(slug, null)]), [slug]);
  if (loaded.error) return html`<${LoadError} error=${loaded.error} retry=${loaded.reload} />`;
  if (!loaded.data) return html`<${Loading} />`;
  const [project, settings] = loaded.data;
  return html`
    <${ProjectForm} slug=${slug} project=${project} settings=${settings} onSaved=${loaded.reload} />
    <${GroupNames} slug=${slug} names=${names} onSaved=${onNamesChanged} />
    <${Webhook} slug=${slug} project=${project} />`;
}

function ProjectForm({ slug, project, settings, onSaved }) {
  const [draft, setDraft] = useState({ name: project.name, timezone: settings.document.timezone, base_url: project.keycrm.base_url || '', token: '', rate: project.keycrm.rate_per_minute ?? '' });
  const [error, setError] = useState(/** @type {any} */ (null));
  const [note, setNote] = useState('');
  const [revision, setRevision] = useState(/** @type {number|null} */ (null));
  const set = (key) => (value) => setDraft((d) => ({ ...d, [key]: value }));
  const save = async (event) => {
    event.preventDefault();
    setError(null);
    setNote('');
    try {
      const keycrm = {};
      if (draft.base_url !== (project.keycrm.base_url || '')) keycrm.base_url = draft.base_url;
      if (draft.token) keycrm.token = draft.token;
      if (String(draft.rate) !== String(project.keycrm.rate_per_minute ?? '')) keycrm.rate_per_minute = draft.rate === '' ? null : Number(draft.rate);
      const patch = {};
      if (draft.name !== project.name) patch.name = draft.name;
      if (Object.keys(keycrm).length) patch.keycrm = keycrm;
      if (Object.keys(patch).length) await api.updateProject(slug, patch);
      if (draft.timezone !== settings.document.timezone) {
        const answer = await api.saveSettings(slug, null, { ...settings.document, timezone: draft.timezone }, settings.etag);
        setRevision(answer.revision);
      }
      setDraft((d) => ({ ...d, token: '' }));
      setNote(t('settings.saved_plain'));
      onSaved();
    } catch (err) {
      setError(err);
    }
  };
  const api_ = project.keycrm;
  return html`<form class="settings-form" onSubmit=${save} data-part="project" novalidate>
    <fieldset><legend>${t('project.title')}</legend>
      <${Field} label=${t('project.name')} path="name" value=${draft.name} error=${error} onInput=${set('name')} />
      <${Field} label=${t('project.timezone')} path="timezone" value=${draft.timezone} error=${error} onInput=${set('timezone')} placeholder="Europe/Kyiv" />
      <div class="muted small">${t('project.created', { at: dateTime(project.created_at, settings.document.timezone) })}</div>
    </fieldset>
    <fieldset><legend>${t('project.keycrm')}</legend>
      <${Field} label=${t('project.base_url')} path="keycrm.base_url" value=${draft.base_url} error=${error} onInput=${set('base_url')} />
      <${Field} label=${t('project.token')} path="keycrm.token" type="password" value=${draft.token} error=${error} onInput=${set('token')}
        autocomplete="off" placeholder=${api_.token_set ? t('project.token_set', { last4: api_.token_last4 || '' }) : t('project.token_unset')} />
      <div class="muted small" data-token-state=${api_.token_set ? 'set' : 'unset'}>${api_.token_set ? t('project.token_set', { last4: api_.token_last4 || '' }) : t('project.token_unset')} · ${t('project.token_hint')}</div>
      <${Field} label=${t('project.rate')} path="keycrm.rate_per_minute" type="number" value=${draft.rate} error=${error} onInput=${set('rate')} placeholder="60" width="10em" />
    </fieldset>
    <${ErrorSummary} error=${error} />
    <div class="form-actions"><button type="submit" class="primary">${t('action.save')}</button>
      ${note && html`<span class="ok-text" role="status">${note}</span>`}</div>
    ${revision !== null && html`<${RecomputeProgress} slug=${slug} revision=${revision} />`}
  </form>`;
}

function GroupNames({ slug, names, onSaved }) {
  const [draft, setDraft] = useState(/** @type {Record<number, string>} */ ({}));
  const [error, setError] = useState(/** @type {any} */ (null));
  const [note, setNote] = useState('');
  const [sync, setSync] = useState(/** @type {any} */ (null));
  const save = async (event) => {
    event.preventDefault();
    setError(null);
    setNote('');
    try {
      for (const [id, name] of Object.entries(draft)) {
        if (names && names.groups.get(Number(id))?.name !== name) {
          try {
            await api.renameGroup(slug, id, name);
          } catch (err) {
            err.errors = [{ field: `groups.${id}`, message: err.message }];
            throw err;
          }
        }
      }
      await loadNames(slug, true);
      setDraft({});
      setNote(t('settings.saved_plain'));
      onSaved();
    } catch (err) {
      setError(err);
    }
  };
  const requestSync = async () => {
    try {
      await api.syncStatuses(slug);
      setSync({ ok: true });
    } catch (err) {
      setSync(err);
    }
  };
  return html`<form class="settings-form" onSubmit=${save} data-part="groups" novalidate>
    <fieldset><legend>${t('project.groups')}</legend>
      <div class="group-names">${groupIds(names).map((id) => html`<${Field} label=${`${id}`} path=${`groups.${id}`}
        value=${draft[id] ?? names?.groups.get(id)?.name ?? ''} error=${error} onInput=${(v) => setDraft((d) => ({ ...d, [id]: v }))} />`)}</div>
      <div class="muted small">${t('project.statuses', { n: names ? names.statuses.size : 0 })}</div>
      <div class="row"><button type="button" onClick=${requestSync}>${t('project.sync')}</button>
        ${sync && sync.ok && html`<span class="ok-text" role="status">${t('project.sync_requested')}</span>`}</div>
      ${sync && !sync.ok && html`<${ErrorSummary} error=${sync} />`}
    </fieldset>
    <${ErrorSummary} error=${error} />
    <div class="form-actions"><button type="submit" class="primary">${t('action.save')}</button>
      ${note && html`<span class="ok-text" role="status">${note}</span>`}</div>
  </form>`;
}

function Webhook({ slug, project }) {
  const [shown, setShown] = useState(/** @type {any} */ (null));
  const [error, setError] = useState(/** @type {any} */ (null));
  const rotate = async () => {
    if (!window.confirm(t('webhook.confirm'))) return;
    try {
      setShown(await api.rotateSecret(slug));
    } catch (err) {
      setError(err);
    }
  };
  return html`<section class="settings-form" data-part="webhook">
    <fieldset><legend>${t('webhook.title')}</legend>
      <div class="mono">${project.webhook_url}</div>
      <p class="hint">${t('webhook.hint')}</p>
      <button type="button" onClick=${rotate}>${t('webhook.rotate')}</button>
      ${shown && html`<${ShownOnce} label=${t('webhook.new_url')} value=${shown.webhook_url} />
        <p class="muted small">${t('webhook.grace', { until: dateTime(shown.previous_valid_until, project.timezone) })}</p>`}
      <${ErrorSummary} error=${error} />
    </fieldset>
  </section>`;
}
