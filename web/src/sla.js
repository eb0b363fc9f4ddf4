// SLA states move with the clock, not only with events. An open order's row carries
// `crossings`: the instants at which its current group and its current status turn near and
// over if nothing else arrives. `advance` applies the ones that have passed, so a card's colours
// follow time with no request; `applySlaChange` applies the live feed's `sla_changed`, which
// says the same thing from the server.

const RANK = { none: 0, ok: 1, near: 2, over: 3 };
const CROSSINGS = /** @type {const} */ ([
  ['group_near_at', 'group', 'near'],
  ['group_over_at', 'group', 'over'],
  ['status_near_at', 'status', 'near'],
  ['status_over_at', 'status', 'over'],
]);

/** The worse of two SLA states. */
export const worse = (a, b) => ((RANK[b] ?? 0) > (RANK[a] ?? 0) ? b : a);

const instant = (at) => (at ? Date.parse(at) : NaN);

/**
 * The next change of `crossings` (the earliest; `over` when near and over fall together), as
 * `sla_next` has it, or null.
 * @param {Record<string, string>|null|undefined} crossings
 */
export function nextChange(crossings) {
  let next = null;
  for (const [key, scope, state] of CROSSINGS) {
    const at = instant(crossings?.[key]);
    if (Number.isNaN(at)) continue;
    if (!next || at < next.ms || (at === next.ms && state === 'over')) next = { ms: at, at: crossings[key], state, scope };
  }
  return next && { at: next.at, state: next.state, scope: next.scope };
}

/**
 * `row` with every crossing at or before `now` (ms) applied: the crossed group's or status's
 * state, the order's worst state and `sla_next`. The same object when nothing has passed.
 * @param {any} row
 * @param {number} now
 */
export function advance(row, now) {
  const crossings = row && row.open !== false ? row.crossings : null;
  if (!crossings) return row;
  let out = row;
  for (const [key, scope, state] of CROSSINGS) {
    const at = instant(crossings[key]);
    if (Number.isNaN(at) || at > now) continue;
    if (out === row) out = { ...row, groups: { ...row.groups }, statuses: { ...row.statuses }, crossings: { ...crossings } };
    delete out.crossings[key];
    const [table, id] = scope === 'group' ? ['groups', row.current_group_id] : ['statuses', row.current_status_id];
    const stage = out[table][id];
    if (stage) {
      const next = { ...stage, sla: worse(stage.sla, state) };
      // Over means its working time has reached the limit by now: the bar is full.
      if (state === 'over' && stage.limit_seconds) next.working_seconds = Math.max(stage.working_seconds || 0, stage.limit_seconds);
      out[table][id] = next;
    }
    out.sla = worse(out.sla, state);
  }
  if (out !== row) out.sla_next = nextChange(out.crossings);
  return out;
}

/** The earliest crossing still ahead of `now` (ms) over `rows`, or null. */
export function nextInstant(rows, now) {
  let next = null;
  for (const row of rows) {
    if (!row || row.open === false || !row.crossings) continue;
    for (const [key] of CROSSINGS) {
      const at = instant(row.crossings[key]);
      if (at > now && (next === null || at < next)) next = at;
    }
  }
  return next;
}

/**
 * `row` after the live feed's `sla_changed` (`{order_id, at, scope, state, sla, group_id,
 * group_sla, status_id}`), if it is about the row's current group and status.
 * @param {any} row
 * @param {any} change
 */
export function applySlaChange(row, change) {
  if (row.current_group_id !== change.group_id || row.current_status_id !== change.status_id) return row;
  const out = advance(row, instant(change.at));
  const group = out.groups?.[change.group_id];
  const fixed = { ...out, sla: worse(out.sla, change.sla) };
  if (group) fixed.groups = { ...out.groups, [change.group_id]: { ...group, sla: worse(group.sla, change.group_sla) } };
  return fixed;
}
