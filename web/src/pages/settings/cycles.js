// Cycle rules (from created or an entry into a group or status, to an entry into a group or
// status, first or last occurrence) and the default cycle.
import { html } from '../../lib.js';
import { t } from '../../i18n.js';
import { Field, SettingsEditor } from './form.js';

function Endpoint({ path, value, kinds, error, onChange }) {
  const set = (change) => onChange({ ...value, ...change });
  return html`<span class="endpoint">
    <select name=${path + '.kind'} data-field=${path + '.kind'} value=${value.kind} aria-label=${t('cycle.kind')}
      onChange=${(e) => set(e.target.value === 'created' ? { kind: 'created', id: undefined, occurrence: undefined } : { kind: e.target.value, id: value.id || 1, occurrence: value.occurrence || 'first' })}>
      ${kinds.map((k) => html`<option value=${k}>${t('cycle.kind_' + k)}</option>`)}</select>
    ${value.kind !== 'created' && html`
      <${Field} path=${path + '.id'} type="number" value=${value.id} error=${error} width="6em" aria-label=${t('cycle.id_of', { kind: t('cycle.kind_' + value.kind) })}
        onInput=${(v) => set({ id: v === '' ? '' : Number(v) })} />
      <select name=${path + '.occurrence'} value=${value.occurrence || 'first'} aria-label=${t('cycle.occurrence')}
        onChange=${(e) => set({ occurrence: e.target.value })}>
        <option value="first">${t('cycle.first')}</option><option value="last">${t('cycle.last')}</option></select>`}
  </span>`;
}

export function CyclesEditor({ slug }) {
  return html`<${SettingsEditor} slug=${slug} part="cycle">${(draft, update, error) => html`
    <fieldset><legend>${t('cycle.rules')}</legend>
      <table class="grid-table cycles"><thead><tr><th>${t('cycle.default')}</th><th>ID</th><th>${t('cycle.title')}</th><th>${t('cycle.start')}</th><th>${t('cycle.end')}</th><th></th></tr></thead>
        <tbody>${draft.cycles.map((c, i) => html`<tr data-cycle=${c.id}>
          <td><input type="radio" name="default_cycle" checked=${draft.default_cycle === c.id} aria-label=${t('cycle.default')}
            onChange=${() => update((d) => { d.default_cycle = c.id; })} /></td>
          <td><${Field} path=${`cycles[${i}].id`} type="number" value=${c.id} error=${error} width="5em" aria-label="ID"
            onInput=${(v) => update((d) => { if (d.default_cycle === c.id) d.default_cycle = Number(v); d.cycles[i].id = v === '' ? '' : Number(v); })} /></td>
          <td><${Field} path=${`cycles[${i}].title`} value=${c.title} error=${error} aria-label=${t('cycle.title')}
            onInput=${(v) => update((d) => { d.cycles[i].title = v; })} /></td>
          <td><${Endpoint} path=${`cycles[${i}].start`} value=${c.start} kinds=${['created', 'group', 'status']} error=${error}
            onChange=${(v) => update((d) => { d.cycles[i].start = v; })} /></td>
          <td><${Endpoint} path=${`cycles[${i}].end`} value=${c.end} kinds=${['group', 'status']} error=${error}
            onChange=${(v) => update((d) => { d.cycles[i].end = v; })} /></td>
          <td><button type="button" class="link" onClick=${() => update((d) => { d.cycles.splice(i, 1); if (d.default_cycle === c.id) delete d.default_cycle; })}>${t('action.remove')}</button></td>
        </tr>`)}</tbody></table>
      <button type="button" onClick=${() => update((d) => {
        const id = Math.max(0, ...d.cycles.map((c) => Number(c.id) || 0)) + 1;
        d.cycles.push({ id, title: t('cycle.new'), start: { kind: 'created' }, end: { kind: 'group', id: 4, occurrence: 'first' } });
      })}>${t('cycle.add')}</button>
      <p class="hint">${t('cycle.hint')}</p>
    </fieldset>`}</${SettingsEditor}>`;
}
