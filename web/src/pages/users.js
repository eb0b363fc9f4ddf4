// Users (owners and project admins, within their rights): the list, adding one (a generated
// password is shown once), roles per project, disabling, and resetting a password.
import { html, useState } from '../lib.js';
import { api } from '../api.js';
import { t } from '../i18n.js';
import { dateOnly } from '../format.js';
import { ErrorSummary, FieldError, LoadError, Loading, ShownOnce, useData } from '../ui.js';

/** A password for a reset, made in the browser and shown once. */
function generatedPassword() {
  const bytes = crypto.getRandomValues(new Uint8Array(15));
  return btoa(String.fromCharCode(...bytes)).replace(/[+/=]/g, 'x');
}

export function UsersPage({ me }) {
  const list = useData((signal) => api.users(), []);
  const [secret, setSecret] = useState(/** @type {{label: string, value: string}|null} */ (null));
  const [error, setError] = useState(/** @type {any} */ (null));
  const myAdminProjects = me.projects.filter((p) => p.role === 'admin');
  const change = async (user, patch, shown) => {
    setError(null);
    try {
      await api.updateUser(user.id, patch);
      if (shown) setSecret(shown);
      list.reload();
    } catch (err) {
      setError(err);
    }
  };
  return html`<section class="page">
    <h1>${t('nav.users')}</h1>
    <${LoadError} error=${list.error} retry=${list.reload} />
    ${secret && html`<${ShownOnce} label=${secret.label} value=${secret.value} />`}
    <${ErrorSummary} error=${error} />
    ${!list.data ? html`<${Loading} />` : html`<table class="list" data-users>
      <thead><tr><th>${t('user.login')}</th><th>${t('user.email')}</th><th>${t('user.projects')}</th><th>${t('user.state')}</th><th>${t('user.since')}</th><th></th></tr></thead>
      <tbody>${list.data.users.map((u) => html`<tr data-user=${u.login}>
        <td><strong>${u.login}</strong>${u.owner ? html` <span class="badge">${t('role.owner')}</span>` : ''}</td>
        <td>${u.email || '—'}</td>
        <td>${u.projects.map((p) => html`<span class="badge">${p.project}: ${t('role.' + p.role)}</span> `)}</td>
        <td>${u.active ? t('user.active') : html`<span class="badge sla-over">${t('user.disabled')}</span>`}</td>
        <td>${dateOnly(u.created_at, 'UTC')}</td>
        <td class="actions">${u.login !== me.login && html`
          <button type="button" class="link" onClick=${() => change(u, { active: !u.active })}>${u.active ? t('user.disable') : t('user.enable')}</button>
          <button type="button" class="link" onClick=${() => { const p = generatedPassword(); change(u, { password: p }, { label: t('user.new_password', { login: u.login }), value: p }); }}>${t('user.reset')}</button>`}
        </td></tr>`)}</tbody></table>`}
    <${AddUser} me=${me} projects=${me.role === 'owner' ? me.projects : myAdminProjects} onAdded=${(shown) => { setSecret(shown); list.reload(); }} />
  </section>`;
}

function AddUser({ me, projects, onAdded }) {
  const [error, setError] = useState(/** @type {any} */ (null));
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const grants = projects.map((p) => ({ project: p.slug, role: String(form.get('role.' + p.slug) || '') })).filter((g) => g.role);
    setError(null);
    try {
      const created = await api.createUser({
        login: String(form.get('new_login') || ''),
        email: String(form.get('email') || '') || undefined,
        owner: form.get('owner') === 'on',
        projects: grants,
      });
      event.target.reset();
      onAdded(created.password ? { label: t('user.new_password', { login: created.login }), value: created.password } : null);
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="card add-user" onSubmit=${submit} novalidate>
    <h2>${t('user.add')}</h2>
    <div class="row">
      <label class="field"><span>${t('user.login')}</span><input name="new_login" data-field="login" autocomplete="off" /><${FieldError} error=${error} at="login" /></label>
      <label class="field"><span>${t('user.email')}</span><input name="email" type="email" data-field="email" /><${FieldError} error=${error} at="email" /></label>
      ${me.role === 'owner' && html`<label class="check"><input type="checkbox" name="owner" /> ${t('role.owner')}</label>`}
    </div>
    <div class="row">${projects.map((p) => html`<label class="field"><span>${p.name}</span>
      <select name=${'role.' + p.slug}><option value="">—</option><option value="viewer">${t('role.viewer')}</option><option value="admin">${t('role.admin')}</option></select></label>`)}</div>
    <p class="hint">${t('user.password_hint')}</p>
    <${ErrorSummary} error=${error} />
    <button type="submit" class="primary">${t('user.add')}</button>
  </form>`;
}
