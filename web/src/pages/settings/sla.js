// SLA grids: per group (and per status) a limit in working time typed as `год:хв`, on the
// normal and the urgent grid; the near threshold as a share of the limit or a time before it.
import { html, useState } from '../../lib.js';
import { t } from '../../i18n.js';
import { groupName, statusName } from '../../project.js';
import { FieldError } from '../../ui.js';
import { Field, SettingsEditor, groupIds } from './form.js';

const GRIDS = ['normal', 'urgent'];

/** Sets or (when empty) removes one limit. */
const setLimit = (grid, key, value) => {
  if (value.trim()) grid[key] = value.trim();
  else delete grid[key];
};

export function SlaEditor({ slug, names }) {
  return html`<${SettingsEditor} slug=${slug} part="sla" toDocument=${cleanSla}>${(draft, update, error) => {
    const sla = draft.sla;
    const near = sla.near || { percent: 80 };
    const mode = 'before' in near ? 'before' : 'percent';
    const groups = groupIds(names).filter((id) => !(names && names.groups.get(id)?.terminal));
    return html`
      <fieldset><legend>${t('sla.grid_groups')}</legend>
        <p class="hint">${t('sla.hint')}</p>
        <table class="grid-table"><thead><tr><th>${t('col.group')}</th>${GRIDS.map((g) => html`<th>${t('grid.' + g)}</th>`)}</tr></thead>
          <tbody>${groups.map((id) => html`<tr><th scope="row">${groupName(names, id)}</th>
            ${GRIDS.map((grid) => html`<td><${Field} path=${`sla.${grid}.${id}`} value=${sla[grid][id]} error=${error}
              placeholder=${t('hint.hhmm')} inputmode="numeric" aria-label=${`${groupName(names, id)}, ${t('grid.' + grid)}`}
              onInput=${(v) => update((d) => setLimit(d.sla[grid], String(id), v))} /></td>`)}</tr>`)}</tbody></table>
      </fieldset>
      <fieldset><legend>${t('sla.near_threshold')}</legend>
        <div class="row">
          <label class="check"><input type="radio" name="near-mode" checked=${mode === 'percent'}
            onChange=${() => update((d) => { d.sla.near = { percent: 80 }; })} /> ${t('sla.near_percent')}</label>
          <label class="check"><input type="radio" name="near-mode" checked=${mode === 'before'}
            onChange=${() => update((d) => { d.sla.near = { before: '01:00' }; })} /> ${t('sla.near_before')}</label>
          ${mode === 'percent'
            ? html`<${Field} path="sla.near.percent" type="number" value=${near.percent} error=${error} width="8em" aria-label=${t('sla.near_percent')}
                onInput=${(v) => update((d) => { d.sla.near = { percent: v === '' ? v : Number(v) }; })} />`
            : html`<${Field} path="sla.near.before" value=${near.before} error=${error} placeholder=${t('hint.hhmm')} width="8em" aria-label=${t('sla.near_before')}
                onInput=${(v) => update((d) => { d.sla.near = { before: v }; })} />`}
        </div>
        <${FieldError} error=${error} at="sla.near" />
      </fieldset>
      <${StatusLimits} sla=${sla} names=${names} error=${error} update=${update} />`;
  }}</${SettingsEditor}>`;
}

function StatusLimits({ sla, names, error, update }) {
  const [adding, setAdding] = useState('');
  const statuses = sla.statuses || { normal: {}, urgent: {} };
  const ids = [...new Set([...Object.keys(statuses.normal || {}), ...Object.keys(statuses.urgent || {})])].sort((a, b) => Number(a) - Number(b));
  const known = names ? [...names.statuses.values()] : [];
  const add = () => {
    if (!adding) return;
    update((d) => {
      d.sla.statuses = d.sla.statuses || { normal: {}, urgent: {} };
      d.sla.statuses.normal[adding] = d.sla.statuses.normal[adding] || '';
    });
    setAdding('');
  };
  return html`<fieldset><legend>${t('sla.grid_statuses')}</legend>
    ${ids.length > 0 && html`<table class="grid-table"><thead><tr><th>${t('col.status')}</th>${GRIDS.map((g) => html`<th>${t('grid.' + g)}</th>`)}<th></th></tr></thead>
      <tbody>${ids.map((id) => html`<tr><th scope="row">${statusName(names, id)}</th>
        ${GRIDS.map((grid) => html`<td><${Field} path=${`sla.statuses.${grid}.${id}`} value=${(statuses[grid] || {})[id]} error=${error}
          placeholder=${t('hint.hhmm')} aria-label=${`${statusName(names, id)}, ${t('grid.' + grid)}`}
          onInput=${(v) => update((d) => setLimit(d.sla.statuses[grid], id, v))} /></td>`)}
        <td><button type="button" class="link" onClick=${() => update((d) => { delete d.sla.statuses.normal[id]; delete d.sla.statuses.urgent[id]; })}>${t('action.remove')}</button></td></tr>`)}</tbody></table>`}
    <div class="row">
      ${known.length
        ? html`<select value=${adding} onChange=${(e) => setAdding(e.target.value)} aria-label=${t('col.status')}>
            <option value="">${t('sla.pick_status')}</option>${known.filter((s) => !ids.includes(String(s.id))).map((s) => html`<option value=${s.id}>${s.name}</option>`)}</select>`
        : html`<input type="number" min="1" value=${adding} placeholder=${t('sla.status_id')} aria-label=${t('sla.status_id')} onInput=${(e) => setAdding(e.target.value)} />`}
      <button type="button" onClick=${add}>${t('action.add')}</button>
    </div>
  </fieldset>`;
}

/** Empty limits are left out of the document (no limit). */
export function cleanSla(draft) {
  const sla = structuredClone(draft.sla);
  for (const grid of GRIDS) {
    for (const [k, v] of Object.entries(sla.statuses?.[grid] || {})) if (!v) delete sla.statuses[grid][k];
  }
  return { sla };
}
