// Working hours: the project's calendar and each group's own, with presets ("24/7",
// "Пн–Пт 09:00–18:00"), several windows a day, windows past midnight (`22:00-06:00`), and
// date exceptions (holidays: no windows; short days: their own windows).
import { html, useState } from '../../lib.js';
import { t } from '../../i18n.js';
import { groupName } from '../../project.js';
import { FieldError } from '../../ui.js';
import { Field, SettingsEditor, groupIds } from './form.js';

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

const PRESETS = {
  '24/7': () => Object.fromEntries(DAYS.map((d) => [d, ['00:00-24:00']])),
  'Mon-Fri 09:00-18:00': () => Object.fromEntries(DAYS.map((d, i) => [d, i < 5 ? ['09:00-18:00'] : []])),
};

/** Windows after an end that is not after its start run past midnight. */
const overnight = (w) => {
  const [a, b] = w.split('-');
  return a && b && b !== '24:00' && b <= a;
};

export function HoursEditor({ slug, names }) {
  return html`<${SettingsEditor} slug=${slug} part="working-hours">${(draft, update, error) => {
    const cals = draft.calendars;
    const own = (id) => cals.groups && cals.groups[String(id)];
    return html`
      <fieldset><legend>${t('hours.default')}</legend>
        <${Calendar} path="calendars.default" cal=${cals.default} error=${error} update=${(f) => update((d) => f(d.calendars.default))} />
      </fieldset>
      ${groupIds(names).filter((id) => !(names && names.groups.get(id)?.terminal)).map((id) => html`<fieldset data-group-calendar=${id}>
        <legend><label class="check"><input type="checkbox" checked=${!!own(id)} name=${'own-' + id}
          onChange=${(e) => update((d) => {
            d.calendars.groups = d.calendars.groups || {};
            if (e.target.checked) d.calendars.groups[String(id)] = structuredClone(d.calendars.default);
            else delete d.calendars.groups[String(id)];
          })} /> ${t('hours.group_own', { group: groupName(names, id) })}</label></legend>
        ${own(id) ? html`<${Calendar} path=${`calendars.groups.${id}`} cal=${own(id)} error=${error}
          update=${(f) => update((d) => f(d.calendars.groups[String(id)]))} />` : html`<p class="hint">${t('hours.uses_default')}</p>`}
      </fieldset>`)}`;
  }}</${SettingsEditor}>`;
}

function Calendar({ path, cal, error, update }) {
  const weekly = cal.weekly || {};
  const exceptions = Object.entries(cal.exceptions || {}).sort();
  const [date, setDate] = useState('');
  const preset = (name) => update((c) => { c.weekly = PRESETS[name](); delete c.preset; });
  return html`<div class="calendar" data-calendar=${path}>
    <div class="row">${Object.keys(PRESETS).map((name) => html`<button type="button" class="chip" onClick=${() => preset(name)}>${t('preset.' + name)}</button>`)}</div>
    <table class="week"><tbody>${DAYS.map((day) => {
      const windows = weekly[day] || [];
      return html`<tr><th scope="row">${t('day.' + day)}</th><td>
        <div class="windows">${windows.length === 0 && html`<span class="muted">${t('hours.day_off')}</span>`}
        ${windows.map((w, i) => html`<span class="window">
          <${Field} path=${`${path}.weekly.${day}[${i}]`} value=${w} error=${error} width="9.5em" placeholder="09:00-18:00"
            aria-label=${`${t('day.' + day)} ${i + 1}`} onInput=${(v) => update((c) => { c.weekly[day][i] = v; })} />
          ${overnight(w) && html`<span class="muted small" title=${t('hours.overnight')}>☾</span>`}
          <button type="button" class="link" aria-label=${t('action.remove')} onClick=${() => update((c) => { c.weekly[day].splice(i, 1); })}>✕</button></span>`)}
        <button type="button" class="link" onClick=${() => update((c) => { c.weekly = c.weekly || {}; c.weekly[day] = [...(c.weekly[day] || []), '09:00-18:00']; })}>+ ${t('hours.window')}</button></div>
      </td></tr>`;
    })}</tbody></table>
    <${FieldError} error=${error} at=${path + '.weekly'} />
    <h4>${t('hours.exceptions')}</h4>
    <p class="hint">${t('hours.exceptions_hint')}</p>
    ${exceptions.map(([day, windows]) => html`<div class="row exception" data-exception=${day}>
      <strong>${day}</strong>
      <${Field} path=${`${path}.exceptions.${day}`} value=${windows.join(', ')} error=${error} placeholder=${t('hours.closed')}
        aria-label=${day} onInput=${(v) => update((c) => { c.exceptions[day] = v.split(',').map((s) => s.trim()).filter(Boolean); })} />
      <button type="button" class="link" onClick=${() => update((c) => { delete c.exceptions[day]; })}>${t('action.remove')}</button>
    </div>`)}
    <div class="row">
      <input type="date" value=${date} onInput=${(e) => setDate(e.target.value)} aria-label=${t('hours.exception_date')} name=${path + '.new-exception'} />
      <button type="button" onClick=${() => { if (date) { update((c) => { c.exceptions = c.exceptions || {}; c.exceptions[date] = c.exceptions[date] || []; }); setDate(''); } }}>${t('hours.add_exception')}</button>
    </div>
  </div>`;
}
