// Small pieces every page uses: SLA and urgency badges (a word and an icon, never colour
// alone), field errors placed beside the field the API names, loading of data, copy buttons.
import { html, useCallback, useEffect, useRef, useState } from './lib.js';
import { t } from './i18n.js';
import { sayError } from './errors.js';

const SLA_ICONS = { ok: '✓', near: '◔', over: '!', none: '·' };

/** An SLA state as an icon and a word. */
export function SlaBadge({ state }) {
  const s = state || 'none';
  return html`<span class="badge sla-${s}" data-sla=${s}><span aria-hidden="true">${SLA_ICONS[s] || '·'}</span> ${t('sla.' + s)}</span>`;
}

/** Urgency (urgent, normal, pending) with where it came from as its tooltip. */
export function UrgencyBadge({ urgency, source }) {
  const u = urgency || 'pending';
  return html`<span class="badge urgency-${u}" title=${urgencyWhy(source)}>
    <span aria-hidden="true">${u === 'urgent' ? '⚡' : u === 'pending' ? '…' : '○'}</span> ${t('urgency.' + u)}</span>`;
}

/** Why an order has its urgency, in words. */
export function urgencyWhy(source) {
  if (!source) return '';
  switch (source.kind) {
    case 'override': return t('urgency.by_override');
    case 'rule': {
      // A rule by its name, else by what it matches (`sku = …`); `line` counts items from 0.
      const rule = source.name || `${source.match_type} = ${source.match_value}`;
      return t('urgency.by_rule', { rule, line: (source.line ?? 0) + 1 });
    }
    case 'items': return t('urgency.by_items');
    default: return t('urgency.by_pending');
  }
}

/**
 * The errors of `error` (an ApiError) that belong to the field at `path`: the field itself or
 * anything under it (`sla.normal` takes `sla.normal.1`).
 */
export function errorsAt(error, path) {
  if (!error || !error.errors) return [];
  return error.errors.filter((e) => e.field === path || e.field.startsWith(path + '.') || e.field.startsWith(path + '['));
}

/** The messages of the API about one field, shown beside it. */
export function FieldError({ error, at }) {
  const found = errorsAt(error, at);
  if (!found.length) return null;
  return html`<div class="field-error" role="alert" data-error-for=${at}>${found.map((e) => html`<div title=${e.message}>${sayError(e.message, error.code)}</div>`)}</div>`;
}

/** A form's error: the API's message, and each named field as a link that focuses it. */
export function ErrorSummary({ error }) {
  if (!error) return null;
  const focus = (field) => (event) => {
    event.preventDefault();
    const input = document.querySelector(`[data-field="${CSS.escape(field)}"]`);
    if (input instanceof HTMLElement) input.focus();
  };
  const many = error.errors && error.errors.length > 1;
  return html`<div class="error-summary" role="alert">
    <strong title=${error.message}>${error.status === 429 && error.retryAfter ? t('error.wait', { wait: waitText(error.retryAfter) }) : sayError(error.message, error.code)}</strong>
    ${many && html`<ul>${error.errors.map((e) => html`<li><a href="#" onClick=${focus(e.field)}><code>${e.field}</code></a>: <span title=${e.message}>${sayError(e.message, error.code)}</span></li>`)}</ul>`}
  </div>`;
}

/** Seconds to wait, in words (`15 хв`). */
export function waitText(seconds) {
  if (seconds < 90) return t('wait.seconds', { n: Math.ceil(seconds) });
  return t('wait.minutes', { n: Math.ceil(seconds / 60) });
}

/**
 * Loads data with `load(signal)` whenever `deps` change; `reload()` loads again in place (the
 * old data stays on screen until the new arrives).
 * @template T
 * @param {(signal: AbortSignal) => Promise<T>} load
 * @param {any[]} deps
 * @returns {{data: T|undefined, error: any, loading: boolean, reload: () => Promise<void>, setData: (d: T) => void}}
 */
export function useData(load, deps) {
  const [state, setState] = useState({ data: undefined, error: null, loading: true });
  const controller = useRef(/** @type {AbortController|null} */ (null));
  const run = useCallback(async () => {
    controller.current?.abort();
    const mine = new AbortController();
    controller.current = mine;
    setState((s) => ({ ...s, loading: true }));
    try {
      const data = await load(mine.signal);
      if (!mine.signal.aborted) setState({ data, error: null, loading: false });
    } catch (error) {
      if (!mine.signal.aborted) setState((s) => ({ ...s, error, loading: false }));
    }
  }, deps);
  useEffect(() => {
    run();
    return () => controller.current?.abort();
  }, [run]);
  return { ...state, reload: run, setData: (data) => setState((s) => ({ ...s, data })) };
}

/** A failed load, said plainly, with a retry. */
export function LoadError({ error, retry }) {
  if (!error) return null;
  return html`<div class="error-summary" role="alert"><span title=${error.message}>${sayError(error.message, error.code)}</span>
    ${retry && html` <button type="button" class="link" onClick=${retry}>${t('action.retry')}</button>`}</div>`;
}

export function Loading() {
  return html`<div class="loading" aria-live="polite">${t('state.loading')}</div>`;
}

/** A secret shown once, with a button that copies it. */
export function ShownOnce({ label, value }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value);
      setCopied(true);
    } catch {
      const field = document.querySelector('.shown-once input');
      if (field instanceof HTMLInputElement) field.select();
    }
  };
  return html`<div class="shown-once" role="status">
    <div class="label">${label}</div>
    <div class="row"><input readonly value=${value} aria-label=${label} onFocus=${(e) => e.target.select()} />
      <button type="button" onClick=${copy}>${copied ? t('action.copied') : t('action.copy')}</button></div>
    <div class="hint">${t('hint.shown_once')}</div>
  </div>`;
}

/** Tabs as links in the URL's `tab` parameter. */
export function Tabs({ tabs, active, onSelect }) {
  return html`<nav class="tabs" aria-label=${t('nav.sections')}>${tabs.map((tab) => html`
    <a href=${'?tab=' + tab.id} aria-current=${tab.id === active ? 'page' : undefined}
       onClick=${(e) => { e.preventDefault(); onSelect(tab.id); }}>${tab.label}</a>`)}</nav>`;
}
