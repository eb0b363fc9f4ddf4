// The dashboard: the project's orders as cards, newest change first, loaded page by page as
// the list scrolls, kept current by `useLive`; the filter bar, sort and KPI tiles appear once
// the API has them (issue 14: `/api/orders/kpis` and the filters of `/api/orders`). Every
// view is in the URL: filters, sort, the "as of" instant and the selected order.
import { html, useCallback, useEffect, useRef, useState } from '../lib.js';
import { api, queryString } from '../api.js';
import { t } from '../i18n.js';
import { dateTime, number } from '../format.js';
import { useNames } from '../project.js';
import { setQuery } from '../router.js';
import { LoadError, Loading } from '../ui.js';
import { useFeatures } from '../features.js';
import { useLive } from '../live.js';
import { advance, applySlaChange, nextInstant } from '../sla.js';
import { administers } from '../access.js';
import { OrderCard } from './order-card.js';
import { TimelinePanel } from './timeline.js';
import { AsOf, FilterBar, KpiTiles, FILTER_KEYS } from './filters.js';

const PAGE = 50;

/** The parameters of `/api/orders` this view asks with (filters only where the API has them). */
function ordersQuery(slug, query, filtering) {
  const params = { project: slug, as_of: query.as_of };
  if (filtering) for (const key of [...FILTER_KEYS, 'sort']) if (query[key]) params[key] = query[key];
  return params;
}

/**
 * The loaded range of a listing: pages appended as the list scrolls, re-queried in place.
 * @param {Record<string, any>} params
 */
function useOrderPages(params) {
  const key = JSON.stringify(params);
  const [state, setState] = useState({ key, rows: /** @type {any[]} */ ([]), next: null, asOf: null, loading: true, error: null });
  const latest = useRef(state);
  latest.current = state;

  const first = useCallback(async (signal) => {
    const page = await api.orders({ ...params, limit: PAGE }, signal);
    return page;
  }, [key]);

  useEffect(() => {
    const controller = new AbortController();
    setState({ key, rows: [], next: null, asOf: null, loading: true, error: null });
    first(controller.signal).then(
      (page) => setState({ key, rows: page.orders, next: page.next_cursor, asOf: page.as_of, loading: false, error: null }),
      (error) => !controller.signal.aborted && setState((s) => ({ ...s, loading: false, error })),
    );
    return () => controller.abort();
  }, [key]);

  const more = useCallback(async () => {
    const s = latest.current;
    if (s.loading || !s.next || s.key !== key) return;
    setState({ ...s, loading: true });
    try {
      const page = await api.orders({ ...params, limit: PAGE, cursor: s.next });
      setState((now) => {
        if (now.key !== key) return now;
        const seen = new Set(now.rows.map((r) => r.order_id));
        return { ...now, rows: [...now.rows, ...page.orders.filter((r) => !seen.has(r.order_id))], next: page.next_cursor, loading: false };
      });
    } catch (error) {
      setState((now) => ({ ...now, loading: false, error }));
    }
  }, [key]);

  /** Re-queries the loaded range (as many rows as are loaded, from the top). */
  const refresh = useCallback(async () => {
    const s = latest.current;
    if (s.key !== key || s.loading) return;
    const wanted = Math.max(PAGE, s.rows.length);
    let rows = [];
    let cursor = null;
    let asOf = null;
    do {
      const page = await api.orders({ ...params, limit: Math.min(500, wanted - rows.length), cursor: cursor || undefined });
      rows = rows.concat(page.orders);
      cursor = page.next_cursor;
      asOf = asOf || page.as_of;
    } while (cursor && rows.length < wanted);
    setState((now) => (now.key === key ? { ...now, rows, next: cursor, asOf, error: null } : now));
  }, [key]);

  /** Replaces one loaded row with a newer one (from the live feed). */
  const patch = useCallback((row) => {
    if (!row || row.order_id === undefined) return;
    setState((now) => ({ ...now, rows: now.rows.map((r) => (r.order_id === row.order_id ? { ...r, ...row } : r)) }));
  }, []);

  /** Applies the live feed's `sla_changed` to its order's row. */
  const slaChange = useCallback((change) => {
    if (!change || change.order_id === undefined) return;
    setState((now) => ({ ...now, rows: now.rows.map((r) => (r.order_id === change.order_id ? applySlaChange(r, change) : r)) }));
  }, []);

  /** Applies every SLA crossing that has passed by `now` (ms) to the loaded rows. */
  const tick = useCallback((now) => {
    setState((s) => {
      const rows = s.rows.map((r) => advance(r, now));
      return rows.some((r, i) => r !== s.rows[i]) ? { ...s, rows } : s;
    });
  }, []);

  return { ...state, more, refresh, patch, slaChange, tick };
}

/** The longest wait `setTimeout` takes. */
const MAX_WAIT = 2 ** 31 - 1;

/**
 * Live views only: moves the cards' SLA colours at the instants their rows' `crossings` name,
 * with no request (the feed's `sla_changed` and the next re-query say the same later).
 */
function useSlaClock(list, live) {
  useEffect(() => {
    if (!live) return undefined;
    const now = Date.now();
    list.tick(now);
    const next = nextInstant(list.rows, now);
    if (next === null) return undefined;
    const timer = setTimeout(() => list.tick(Date.now()), Math.min(next - now + 20, MAX_WAIT));
    return () => clearTimeout(timer);
  }, [list.rows, live]);
}

export function DashboardPage({ me, project, query }) {
  const slug = project.slug;
  const zone = project.timezone;
  const names = useNames(slug);
  const features = useFeatures();
  const filtering = features.has('/api/orders/kpis');
  const stream = features.has('/api/stream/orders');
  const params = ordersQuery(slug, query, filtering);
  const list = useOrderPages(params);
  const live = useLive({ project: slug, enabled: !query.as_of && !list.error, stream, refresh: list.refresh, patch: list.patch, slaChange: list.slaChange });
  useSlaClock(list, !query.as_of);
  const selected = query.order ? Number(query.order) : null;
  const sentinel = useRef(/** @type {HTMLDivElement|null} */ (null));

  useEffect(() => {
    const node = sentinel.current;
    if (!node) return undefined;
    const observer = new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && list.more(), { rootMargin: '600px' });
    observer.observe(node);
    return () => observer.disconnect();
  }, [list.more, list.next]);

  return html`<div class=${'dashboard' + (selected ? ' with-panel' : '')}>
    <section class="page wide">
      <div class="page-head">
        <h1>${project.name}</h1>
        <${AsOf} zone=${zone} value=${query.as_of} />
        <${LiveIndicator} live=${live} zone=${zone} asOf=${query.as_of} />
      </div>
      ${filtering && html`<${KpiTiles} params=${params} live=${!query.as_of} />`}
      ${filtering && html`<${FilterBar} query=${query} names=${names} />`}
      ${features.has('/api/orders.csv') && html`<p class="csv-link"><a class="chip" href=${'/api/orders.csv' + queryString(params)} download
        title=${t('orders.csv_title')} data-csv>⤓ ${t('orders.csv')}</a></p>`}
      <${LoadError} error=${list.error} retry=${list.refresh} />
      <div class="orders" aria-live="off">
        ${list.rows.map((order) => html`<${OrderCard} key=${order.order_id} order=${order} names=${names} zone=${zone}
          selected=${order.order_id === selected} onOpen=${(id) => setQuery({ order: id })} />`)}
      </div>
      ${!list.loading && list.rows.length === 0 && !list.error && html`<p class="muted empty">${t('orders.none')}</p>`}
      <div ref=${sentinel} class="sentinel">
        ${list.loading ? html`<${Loading} />` : list.next && html`<button type="button" onClick=${list.more}>${t('orders.more')}</button>`}
      </div>
      <p class="muted small">${t('orders.loaded', { n: number(list.rows.length) })}${list.asOf ? ' · ' + t('orders.as_of', { at: dateTime(list.asOf, zone, true) }) : ''}</p>
    </section>
    ${selected && html`<${TimelinePanel} key=${selected} project=${project} admin=${administers(me, slug)} orderId=${selected} asOf=${query.as_of}
      onClose=${() => setQuery({ order: undefined })} />`}
  </div>`;
}


function LiveIndicator({ live, zone, asOf }) {
  const state = asOf ? 'paused' : live.state;
  return html`<span class=${'live live-' + state} role="status" data-live=${state}>
    <span aria-hidden="true">●</span> ${t('live.' + state)}${live.at && !asOf ? html` <span class="muted small">${dateTime(live.at, zone, true).split(' ')[1]}</span>` : ''}
  </span>`;
}
