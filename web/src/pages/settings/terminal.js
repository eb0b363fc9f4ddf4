// Which groups complete an order and which cancel it; both stop the clock (terminal = their
// union), and analytics count completions and cancellations from these, never from names.
import { html } from '../../lib.js';
import { t } from '../../i18n.js';
import { groupName } from '../../project.js';
import { FieldError } from '../../ui.js';
import { SettingsEditor, groupIds } from './form.js';

const toggle = (list, id, on) => (on ? [...new Set([...list, id])].sort((a, b) => a - b) : list.filter((g) => g !== id));

export function TerminalEditor({ slug, names }) {
  const toDocument = (d) => ({
    completion_groups: d.completion_groups,
    cancellation_groups: d.cancellation_groups,
    terminal_groups: [...new Set([...d.completion_groups, ...d.cancellation_groups])].sort((a, b) => a - b),
  });
  return html`<${SettingsEditor} slug=${slug} part="terminal" toDocument=${toDocument}>${(draft, update, error) => html`
    <fieldset><legend>${t('terminal.title')}</legend>
      <p class="hint">${t('terminal.hint')}</p>
      <table class="grid-table"><thead><tr><th>${t('col.group')}</th><th>${t('terminal.completion')}</th><th>${t('terminal.cancellation')}</th></tr></thead>
        <tbody>${groupIds(names).map((id) => html`<tr data-group-id=${id}><th scope="row">${groupName(names, id)}</th>
          ${['completion_groups', 'cancellation_groups'].map((key) => html`<td><input type="checkbox" name=${key + '.' + id} data-field=${key}
            aria-label=${`${groupName(names, id)}: ${t(key === 'completion_groups' ? 'terminal.completion' : 'terminal.cancellation')}`}
            checked=${draft[key].includes(id)} onChange=${(e) => update((d) => { d[key] = toggle(d[key], id, e.target.checked); })} /></td>`)}
        </tr>`)}</tbody></table>
      <${FieldError} error=${error} at="completion_groups" />
      <${FieldError} error=${error} at="cancellation_groups" />
      <${FieldError} error=${error} at="terminal_groups" />
    </fieldset>`}</${SettingsEditor}>`;
}
