// My account: change my password, my API tokens (a new one is shown once), log out.
import { html, useState } from '../lib.js';
import { api, forgetCapabilities } from '../api.js';
import { currentTheme, lang, setLang, setTheme, t } from '../i18n.js';
import { dateTime } from '../format.js';
import { navigate } from '../router.js';
import { ErrorSummary, FieldError, LoadError, ShownOnce, useData } from '../ui.js';

export function AccountPage({ me }) {
  return html`<section class="page narrow">
    <h1>${t('nav.account')} · ${me.login}</h1>
    <${Preferences} />
    <${PasswordForm} />
    <${Tokens} />
    <button type="button" onClick=${async () => { try { await api.logout(); } finally { forgetCapabilities(); navigate('/login', {}, { replace: true }); location.reload(); } }}>${t('action.logout')}</button>
  </section>`;
}

function Preferences() {
  return html`<fieldset class="card"><legend>${t('pref.title')}</legend>
    <div class="row">
      <label class="field"><span>${t('pref.language')}</span><select name="lang" value=${lang()} onChange=${(e) => setLang(e.target.value)}>
        <option value="uk">Українська</option><option value="en">English</option></select></label>
      <label class="field"><span>${t('pref.theme')}</span><select name="theme" value=${currentTheme()} onChange=${(e) => setTheme(e.target.value)}>
        <option value="dark">${t('pref.dark')}</option><option value="light">${t('pref.light')}</option></select></label>
    </div></fieldset>`;
}

function PasswordForm() {
  const [error, setError] = useState(/** @type {any} */ (null));
  const [done, setDone] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setError(null);
    setDone(false);
    try {
      await api.changePassword(String(form.get('old_password') || ''), String(form.get('new_password') || ''));
      event.target.reset();
      setDone(true);
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="card" onSubmit=${submit} novalidate data-form="password">
    <h2>${t('account.password')}</h2>
    <label class="field"><span>${t('account.old_password')}</span><input type="password" name="old_password" data-field="old_password" autocomplete="current-password" />
      <${FieldError} error=${error} at="old_password" /></label>
    <label class="field"><span>${t('account.new_password')}</span><input type="password" name="new_password" data-field="new_password" autocomplete="new-password" />
      <${FieldError} error=${error} at="new_password" /></label>
    ${error && !error.field && html`<${ErrorSummary} error=${error} />`}
    <button type="submit" class="primary">${t('account.change')}</button>
    ${done && html`<span class="ok-text" role="status"> ${t('account.changed')}</span>`}
  </form>`;
}

function Tokens() {
  const list = useData(() => api.tokens(), []);
  const [created, setCreated] = useState(/** @type {string|null} */ (null));
  const [error, setError] = useState(/** @type {any} */ (null));
  const create = async (event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setError(null);
    try {
      const token = await api.createToken(String(form.get('token_name') || ''));
      setCreated(token.token);
      event.target.reset();
      list.reload();
    } catch (err) {
      setError(err);
    }
  };
  const revoke = async (id) => {
    try {
      await api.revokeToken(id);
      list.reload();
    } catch (err) {
      setError(err);
    }
  };
  return html`<div class="card" data-tokens>
    <h2>${t('account.tokens')}</h2>
    <${LoadError} error=${list.error} retry=${list.reload} />
    ${created && html`<${ShownOnce} label=${t('account.new_token')} value=${created} />`}
    ${list.data && list.data.tokens.length === 0 && html`<p class="muted">${t('account.no_tokens')}</p>`}
    ${list.data && list.data.tokens.length > 0 && html`<table class="list"><thead><tr><th>${t('account.token_name')}</th><th>${t('account.token_created')}</th><th>${t('account.token_used')}</th><th></th></tr></thead>
      <tbody>${list.data.tokens.map((tk) => html`<tr data-token=${tk.name}><td>${tk.name}</td><td>${dateTime(tk.created_at, 'UTC')} UTC</td>
        <td>${tk.last_used_at ? dateTime(tk.last_used_at, 'UTC') + ' UTC' : '—'}</td>
        <td><button type="button" class="link" onClick=${() => revoke(tk.id)}>${t('account.revoke')}</button></td></tr>`)}</tbody></table>`}
    <form onSubmit=${create} class="row" novalidate>
      <label class="field"><span>${t('account.token_name')}</span><input name="token_name" data-field="name" /><${FieldError} error=${error} at="name" /></label>
      <button type="submit">${t('account.create_token')}</button>
    </form>
  </div>`;
}
