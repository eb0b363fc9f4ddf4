// Urgency rules: an order is urgent when one of its items matches an active rule (by SKU,
// offer id or product id); until its items are fetched it is pending, on the normal grid.
import { html } from '../../lib.js';
import { t } from '../../i18n.js';
import { Field, SettingsEditor } from './form.js';

const TYPES = ['sku', 'offer_id', 'product_id'];

/** Offer and product ids go out as numbers when they are digits (the API names anything else). */
const toDocument = (d) => ({
  urgency_rules: d.urgency_rules.map((r) => {
    const rule = { ...r };
    if (rule.match_type !== 'sku' && /^\d+$/.test(String(rule.match_value))) rule.match_value = Number(rule.match_value);
    if (!rule.name) delete rule.name;
    return rule;
  }),
});

export function UrgencyEditor({ slug }) {
  return html`<${SettingsEditor} slug=${slug} part="urgent-rules" toDocument=${toDocument}>${(draft, update, error) => html`
    <fieldset><legend>${t('urgency.rules')}</legend>
      <p class="hint">${t('urgency.rules_hint')}</p>
      <table class="grid-table"><thead><tr><th>${t('urgency.rule_name')}</th><th>${t('urgency.match_type')}</th><th>${t('urgency.match_value')}</th><th>${t('urgency.active')}</th><th></th></tr></thead>
        <tbody>${draft.urgency_rules.map((r, i) => html`<tr data-rule=${i}>
          <td><${Field} path=${`urgency_rules[${i}].name`} value=${r.name} error=${error} aria-label=${t('urgency.rule_name')}
            onInput=${(v) => update((d) => { d.urgency_rules[i].name = v; })} /></td>
          <td><select name=${`urgency_rules[${i}].match_type`} data-field=${`urgency_rules[${i}].match_type`} value=${r.match_type} aria-label=${t('urgency.match_type')}
            onChange=${(e) => update((d) => { d.urgency_rules[i].match_type = e.target.value; })}>
            ${TYPES.map((k) => html`<option value=${k}>${t('match.' + k)}</option>`)}</select></td>
          <td><${Field} path=${`urgency_rules[${i}].match_value`} value=${r.match_value} error=${error} aria-label=${t('urgency.match_value')}
            onInput=${(v) => update((d) => { d.urgency_rules[i].match_value = v; })} /></td>
          <td><input type="checkbox" name=${`urgency_rules[${i}].is_active`} checked=${r.is_active !== false} aria-label=${t('urgency.active')}
            onChange=${(e) => update((d) => { d.urgency_rules[i].is_active = e.target.checked; })} /></td>
          <td><button type="button" class="link" onClick=${() => update((d) => { d.urgency_rules.splice(i, 1); })}>${t('action.remove')}</button></td>
        </tr>`)}</tbody></table>
      <button type="button" onClick=${() => update((d) => { d.urgency_rules.push({ match_type: 'sku', match_value: '', is_active: true }); })}>${t('urgency.add')}</button>
    </fieldset>`}</${SettingsEditor}>`;
}
