// What every settings editor shares: the part is read with its revision, edited as a draft,
// written over the revision it was read at (If-Match), its errors shown beside the fields the
// API names, then the recompute that the change starts is followed to its end.
import { html, useEffect, useState } from '../../lib.js';
import { api } from '../../api.js';
import { t } from '../../i18n.js';
import { number } from '../../format.js';
import { ErrorSummary, FieldError, LoadError, Loading, useData } from '../../ui.js';
import { sayError } from '../../errors.js';

/**
 * @param {{slug: string, part: string|null, toDocument?: (draft: any) => any,
 *          children: (draft: any, update: (change: (d: any) => void) => void, error: any) => any}} props
 */
export function SettingsEditor({ slug, part, toDocument, children }) {
  const loaded = useData((signal) => api.settings(slug, part), [slug, part]);
  const [draft, setDraft] = useState(/** @type {any} */ (null));
  const [error, setError] = useState(/** @type {any} */ (null));
  const [saved, setSaved] = useState(/** @type {number|null} */ (null));
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (loaded.data) setDraft(structuredClone(loaded.data.document));
  }, [loaded.data]);

  if (loaded.error) return html`<${LoadError} error=${loaded.error} retry=${loaded.reload} />`;
  if (!draft || !loaded.data) return html`<${Loading} />`;

  const update = (change) => setDraft((d) => {
    const next = structuredClone(d);
    change(next);
    return next;
  });
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setSaved(null);
    try {
      const answer = await api.saveSettings(slug, part, toDocument ? toDocument(draft) : draft, loaded.data.etag);
      setSaved(answer.revision);
      await loaded.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="settings-form" onSubmit=${submit} data-part=${part || 'all'} novalidate>
    ${children(draft, update, error)}
    <${ErrorSummary} error=${error} />
    <div class="form-actions">
      <button type="submit" class="primary" disabled=${busy}>${t('action.save')}</button>
      <button type="button" onClick=${() => { setDraft(structuredClone(loaded.data.document)); setError(null); }}>${t('action.revert')}</button>
      <span class="muted small">${t('settings.revision', { n: loaded.data.revision, applied: loaded.data.applied_revision })}</span>
    </div>
    ${saved !== null && html`<${RecomputeProgress} slug=${slug} revision=${saved} />`}
  </form>`;
}

/** Follows the recompute of `revision` (GET /api/settings/recompute) until it is done. */
export function RecomputeProgress({ slug, revision }) {
  const [state, setState] = useState(/** @type {any} */ (null));
  useEffect(() => {
    let stop = false;
    let timer = 0;
    const poll = async () => {
      try {
        const now = await api.recompute(slug);
        if (stop) return;
        setState(now);
        if (!(now.applied_revision >= revision && now.state === 'done') && now.state !== 'failed') timer = setTimeout(poll, 700);
      } catch (err) {
        if (!stop) setState({ state: 'failed', error: sayError(err.message, err.code) });
      }
    };
    poll();
    return () => { stop = true; clearTimeout(timer); };
  }, [slug, revision]);
  const done = state && state.state === 'done' && state.applied_revision >= revision;
  const total = state ? state.orders_total : 0;
  const share = done ? 1 : total ? state.orders_done / total : 0;
  return html`<div class="recompute" role="status" data-recompute=${done ? 'done' : state ? state.state : 'pending'}>
    <div class="muted small">${t('settings.saved', { n: revision })} ·
      ${done ? t('recompute.done') : state && state.state === 'failed' ? t('recompute.failed', { error: state.error || '' })
        : t('recompute.running', { done: number(state ? state.orders_done : 0), total: number(total) })}</div>
    <progress max="1" value=${share} aria-label=${t('recompute.label')}></progress>
  </div>`;
}

/** A text input bound to `path` of the settings, its API errors beside it. */
export function Field({ label, path, value, onInput, error, placeholder, type = 'text', width, ...rest }) {
  return html`<label class="field" style=${width ? `width:${width}` : undefined}>
    ${label && html`<span>${label}</span>`}
    <input type=${type} name=${path} data-field=${path} value=${value ?? ''} placeholder=${placeholder}
      aria-invalid=${error && error.errors && error.errors.some((e) => e.field === path || e.field.startsWith(path + '[') || e.field.startsWith(path + '.')) ? 'true' : undefined}
      onInput=${(e) => onInput(e.target.value)} ...${rest} />
    <${FieldError} error=${error} at=${path} />
  </label>`;
}

/** The groups a project has, from its dictionary (ids 1–6 when it has not been synced). */
export function groupIds(names) {
  return names && names.groups.size ? [...names.groups.keys()].sort((a, b) => a - b) : [1, 2, 3, 4, 5, 6];
}
