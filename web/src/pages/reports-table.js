// A report's rows as a table whose columns are the ones the answer names: each header sorts
// on the server (`sort=col`, again for `-col`), cells are shown by the column's type (instants
// in the project's zone with their year, durations as the UI writes them, SLA states as a
// badge with a word), and columns of one group or urgency share a header over them.
import { html, useEffect, useRef } from '../lib.js';
import { t } from '../i18n.js';
import { dateTime, duration, number } from '../format.js';
import { groupName, statusName } from '../project.js';
import { Loading, SlaBadge, UrgencyBadge } from '../ui.js';

/** @typedef {{name: string, type: 'integer'|'number'|'boolean'|'string'|'instant'|'sla'}} Column */

/** Figures of `stage-time` that come once for every urgency and again per urgency. */
const FIGURES = ['visits', 'working_mean', 'working_median', 'wall_mean', 'wall_median'];
/** Seconds, shown as durations. */
const DURATION = /(^|_)(seconds|mean|median)$/;

/** A column's own name in the table (`working_seconds` → "Робочий час"). */
const fieldLabel = (field) => t('rcol.' + field);

/**
 * How a column is headed: `band` is the header over it it shares with its neighbours (a group,
 * an urgency) or null, `label` its own header.
 * @param {string} name
 * @param {string[]} all  every column's name
 */
export function columnHead(name, all, names) {
  let m = name.match(/^group_(\d+)_(.+)$/);
  if (m) return { band: groupName(names, m[1]), label: fieldLabel(m[2]) };
  m = name.match(/^group_(\d+)$/);
  if (m) return { band: null, label: groupName(names, m[1]) };
  m = name.match(/^(normal|urgent|pending)_(.+)$/);
  if (m && FIGURES.includes(m[2])) return { band: t('urgency.' + m[1]), label: fieldLabel(m[2]) };
  if (FIGURES.includes(name) && ['normal', 'urgent', 'pending'].some((u) => all.includes(`${u}_${name}`))) return { band: t('reports.all_urgencies'), label: fieldLabel(name) };
  return { band: null, label: fieldLabel(name) };
}

/**
 * The columns shown: all the answer names, but an id whose name is a column of its own
 * (`status_id` beside `status` in `custom`) is left to that one, and an urgency of
 * `stage-time` no row has a visit of (the CSV keeps them all).
 * @param {Column[]} columns
 * @param {any[]} rows
 */
export function shownColumns(columns, rows) {
  const names = columns.map((c) => c.name);
  const empty = (urgency) => names.includes(urgency + '_visits') && rows.every((r) => !r[urgency + '_visits']);
  return columns.filter((c) => {
    if (c.name.endsWith('_id') && c.name !== 'order_id' && names.includes(c.name.slice(0, -3))) return false;
    const m = c.name.match(/^(normal|urgent|pending)_(.+)$/);
    return !(m && FIGURES.includes(m[2]) && empty(m[1]));
  });
}

/** Quantities, right-aligned; ids (orders, groups, statuses) are names and stay left. */
const numeric = (column) => (column.type === 'integer' || column.type === 'number') && !/(^|_)(order|group|status)_id$/.test(column.name);

/** A cell's value as the UI shows it. */
function cellText(column, row, names, zone) {
  const { name, type } = column;
  const value = row[name];
  // A name the server's dictionary lacks (statuses not synced yet): said by its id, as elsewhere.
  if ((name === 'status' || name === 'group') && value == null && row[name + '_id'] != null) {
    return name === 'status' ? statusName(names, row.status_id) : groupName(names, row.group_id);
  }
  if (value === null || value === undefined || value === '') return html`<span class="muted">—</span>`;
  if (type === 'sla') return html`<${SlaBadge} state=${value} />`;
  if (type === 'instant') return dateTime(value, zone);
  if (type === 'boolean') return value ? html`<span class="yes">✓ ${t('reports.yes')}</span>` : html`<span class="muted">${t('reports.no')}</span>`;
  if (name === 'urgency') return html`<${UrgencyBadge} urgency=${value} />`;
  if (/(^|_)group_id$/.test(name)) return groupName(names, value);
  if (/(^|_)status_id$/.test(name)) return statusName(names, value);
  if (name === 'order_id') return `#${value}`;
  if (DURATION.test(name) && typeof value === 'number') return duration(value);
  if (typeof value === 'number') return number(value, 2);
  return String(value);
}

/** The sort a header click asks for: the column ascending, then descending, then ascending. */
export function nextSort(current, column) {
  return current === column ? '-' + column : column;
}

/**
 * @param {{data: any, rows: any[], names: any, zone: string, sort: string, onSort: (sort: string) => void,
 *   onOpen: (id: number) => void, selected: number|null, next: string|null, loading: boolean, more: () => void}} props
 */
export function ReportTable({ data, rows, names, zone, sort, onSort, onOpen, selected, next, loading, more }) {
  const columns = shownColumns(data.columns || [], rows);
  const all = columns.map((c) => c.name);
  const heads = columns.map((c) => ({ column: c, ...columnHead(c.name, all, names) }));
  const banded = heads.some((h) => h.band);
  const wrap = useRef(/** @type {HTMLDivElement|null} */ (null));
  const sentinel = useRef(/** @type {HTMLDivElement|null} */ (null));
  const hasOrders = all.includes('order_id');

  useEffect(() => {
    const node = sentinel.current;
    if (!node || !next) return undefined;
    const observer = new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && more(),
      { root: wrap.current, rootMargin: '300px' });
    observer.observe(node);
    return () => observer.disconnect();
  }, [more, next]);

  const sortHead = (h, extra = {}) => {
    const name = h.column.name;
    const state = sort === name ? 'ascending' : sort === '-' + name ? 'descending' : undefined;
    return html`<th class=${(numeric(h.column) ? 'num' : '') + (name === all[0] ? ' key' : '')} aria-sort=${state} data-col=${name} ...${extra}>
      <button type="button" class="sort" onClick=${() => onSort(nextSort(sort, name))} title=${t('reports.sort_by', { col: h.label })}>
        ${h.label}<span class="arrow" aria-hidden="true">${state === 'ascending' ? ' ▲' : state === 'descending' ? ' ▼' : ''}</span></button></th>`;
  };
  // The first header row: banded columns under one header per run, the others over both rows.
  const top = [];
  for (let i = 0; i < heads.length; i++) {
    const h = heads[i];
    if (!banded || !h.band) {
      top.push(sortHead(h, banded ? { rowSpan: 2 } : {}));
      continue;
    }
    let n = 1;
    while (i + n < heads.length && heads[i + n].band === h.band) n++;
    top.push(html`<th class="band" colSpan=${n} scope="colgroup">${h.band}</th>`);
    i += n - 1;
  }
  const open = (row) => hasOrders && row.order_id != null && onOpen(row.order_id);
  const key = (row) => all.filter((c) => c === 'order_id' || c === 'group_id').map((c) => row[c]).join(':');

  return html`<div class="report-wrap" ref=${wrap}>
    <table class="report-table" data-table=${data.report}>
      <thead>
        <tr>${top}</tr>
        ${banded && html`<tr>${heads.filter((h) => h.band).map((h) => sortHead(h))}</tr>`}
      </thead>
      <tbody>
        ${rows.map((row) => html`<tr key=${key(row)} data-order-id=${hasOrders ? row.order_id : undefined} data-group-id=${row.group_id}
            class=${(hasOrders ? 'clickable' : '') + (hasOrders && row.order_id === selected ? ' selected' : '')} onClick=${() => open(row)}>
          ${columns.map((c, i) => html`<td class=${(numeric(c) ? 'num' : '') + (i === 0 ? ' key' : '') + (c.type === 'instant' ? ' nowrap' : '')}
              data-col=${c.name} data-value=${row[c.name] == null ? '' : String(row[c.name])}>
            ${c.name === 'order_id' && row.order_id != null
              ? html`<button type="button" class="link order-link" onClick=${(e) => { e.stopPropagation(); open(row); }}
                  aria-label=${t('timeline.title', { id: row.order_id })}>#${row.order_id}</button>`
              : cellText(c, row, names, zone)}</td>`)}
        </tr>`)}
      </tbody>
    </table>
    ${(next || loading) && html`<div class="sentinel" ref=${sentinel}>
      ${loading ? html`<${Loading} />` : html`<button type="button" onClick=${more} data-more>${t('orders.more')}</button>`}
    </div>`}
  </div>`;
}
