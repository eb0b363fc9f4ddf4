// What pages need to know about a project beyond its orders: the names of its groups and
// statuses (the order rows carry ids), kept per project for the session.
import { api } from './api.js';
import { t } from './i18n.js';
import { useData } from './ui.js';

/** @typedef {{groups: Map<number, {name: string, terminal: boolean}>, statuses: Map<number, {name: string, group_id: number}>}} Names */

const cache = new Map();

/** @returns {Promise<Names>} */
export function names(slug, fresh = false) {
  if (fresh || !cache.has(slug)) {
    cache.set(slug, api.statuses(slug).then((d) => ({
      groups: new Map(d.groups.map((g) => [g.id, g])),
      statuses: new Map(d.statuses.map((s) => [s.id, s])),
    }), (err) => { cache.delete(slug); throw err; }));
  }
  return cache.get(slug);
}

/** The project's names, loaded once per session. */
export function useNames(slug) {
  return useData(() => names(slug), [slug]).data;
}

/** A group's name, or its number when the dictionary has none. */
export function groupName(names, id) {
  const g = names && names.groups.get(Number(id));
  return g ? g.name : t('group.n', { id });
}

/** A status's name, or its number when the dictionary has none (not synced yet). */
export function statusName(names, id) {
  const s = names && names.statuses.get(Number(id));
  return s ? s.name : t('status.n', { id });
}

/**
 * A count out of a KPI answer (issue 14's `/api/orders/kpis`), read leniently: `sla.over` may
 * be a number or `{count}`.
 */
export function kpiCount(kpis, path) {
  let value = kpis;
  for (const key of path.split('.')) value = value == null ? undefined : value[key];
  if (value && typeof value === 'object' && 'count' in value) value = value.count;
  return typeof value === 'number' ? value : null;
}
