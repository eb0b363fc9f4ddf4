// One order on the dashboard: its number, current status, urgency (and why), SLA, created and
// changed times, and one bar per group: length = working time against the group's limit,
// colour and word = the group's SLA state, working and wall time side by side.
import { html } from '../lib.js';
import { t } from '../i18n.js';
import { dateTime, duration } from '../format.js';
import { groupName, statusName } from '../project.js';
import { SlaBadge, UrgencyBadge } from '../ui.js';

/** The groups to draw, in KeyCRM's order; terminal groups stop the clock and get no bar. */
export function groupEntries(order, names) {
  return Object.entries(order.groups || {})
    .map(([id, g]) => [Number(id), g])
    .filter(([id]) => !(names && names.groups.get(id)?.terminal))
    .sort((a, b) => a[0] - b[0]);
}

/** One group's bar: the share of its limit used (past 100 % the bar is full and marked). */
export function GroupBar({ name, group, scale }) {
  const limit = group.limit_seconds;
  const used = limit ? group.working_seconds / limit : scale ? group.working_seconds / scale : 0;
  const width = Math.max(0, Math.min(1, used)) * 100;
  const state = group.sla || 'none';
  const tip = [
    name,
    `${t('time.working')} ${duration(group.working_seconds)}`,
    `${t('time.wall')} ${duration(group.wall_seconds)}`,
    limit ? `${t('time.limit')} ${duration(limit)}` : t('time.no_limit'),
    `${t('time.visits')} ${group.visits}`,
    t('sla.' + state),
  ].join(' · ');
  return html`<div class="group-cell" title=${tip} data-group=${name}>
    <div class="group-name">${name}${group.visits > 1 ? html` <span class="muted">×${group.visits}</span>` : ''}</div>
    <div class=${'bar sla-' + state} role="img" aria-label=${tip}>
      <span style=${`width:${width.toFixed(1)}%`}></span>${used > 1 && limit ? html`<i class="over-mark">+${Math.round((used - 1) * 100)}%</i>` : ''}
    </div>
    <div class="group-times"><span class="working">${duration(group.working_seconds)}${limit ? html`<span class="muted"> / ${duration(limit)}</span>` : ''}</span>
      <span class="wall" title=${t('time.wall')}>${t('time.wall_short')} ${duration(group.wall_seconds)}</span></div>
  </div>`;
}

/** @param {{order: any, names: any, zone: string, selected: boolean, onOpen: (id: number) => void}} props */
export function OrderCard({ order, names, zone, selected, onOpen }) {
  const groups = groupEntries(order, names);
  const scale = Math.max(1, ...groups.map(([, g]) => g.working_seconds));
  const open = (event) => {
    if (event.target.closest('a') && event.type === 'click' && (event.metaKey || event.ctrlKey)) return;
    event.preventDefault();
    onOpen(order.order_id);
  };
  const key = (event) => {
    if (event.key === 'Enter' && event.target === event.currentTarget) open(event);
  };
  return html`<article class=${'card order-card' + (selected ? ' selected' : '')} data-order-id=${order.order_id}
      data-sla=${order.sla} tabindex="0" onClick=${open} onKeyDown=${key} aria-current=${selected ? 'true' : undefined}>
    <div class="order-head">
      <a class="order-id" href=${'?order=' + order.order_id} onClick=${open}>#${order.order_id}</a>
      <span class="status"><span class="muted">${groupName(names, order.current_group_id)} ›</span> ${statusName(names, order.current_status_id)}</span>
      <${UrgencyBadge} urgency=${order.urgency} source=${order.urgency_source} />
      <${SlaBadge} state=${order.sla} />
      ${order.override && html`<span class="badge override" title=${t('override.set')}>✎ ${t('override.short')}</span>`}
      <span class="times muted">
        <span title=${t('order.created')}>${t('order.created_short')} ${dateTime(order.started_at, zone)}</span>
        <span title=${t('order.changed')}>${t('order.changed_short')} ${dateTime(order.last_changed_at, zone)}</span>
      </span>
    </div>
    <div class="group-row">
      ${groups.map(([id, g]) => html`<${GroupBar} key=${id} name=${groupName(names, id)} group=${g} scale=${scale} />`)}
    </div>
  </article>`;
}
