// The login form: Enter submits, a wrong password is said beside the password, throttling says
// how long to wait (from Retry-After) and counts down. The server throttles one login from one
// address, so only that login waits: another person at the same desk may still log in.
import { html, useEffect, useRef, useState } from '../lib.js';
import { api } from '../api.js';
import { t } from '../i18n.js';
import { waitText } from '../ui.js';
import { sayError } from '../errors.js';

export function LoginPage({ onLoggedIn }) {
  const [error, setError] = useState(/** @type {any} */ (null));
  const [busy, setBusy] = useState(false);
  const [wait, setWait] = useState(0);
  const [login, setLogin] = useState('');
  const [throttled, setThrottled] = useState('');
  const first = useRef(/** @type {HTMLInputElement|null} */ (null));

  useEffect(() => first.current?.focus(), []);
  useEffect(() => {
    if (wait <= 0) return undefined;
    const timer = setTimeout(() => setWait((w) => w - 1), 1000);
    return () => clearTimeout(timer);
  }, [wait]);

  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setBusy(true);
    setError(null);
    try {
      onLoggedIn(await api.login(String(form.get('login') || ''), String(form.get('password') || '')));
    } catch (err) {
      setError(err);
      if (err.status === 429 && err.retryAfter) {
        setWait(err.retryAfter);
        setThrottled(String(form.get('login') || ''));
      }
    } finally {
      setBusy(false);
    }
  };
  const at = (field) => error && error.status !== 429 && (error.field === field || (!error.field && field === 'password'));
  const message = (field) => at(field) && html`<div class="field-error" role="alert" data-error-for=${field}>
    ${error.status === 401 ? t('login.wrong') : sayError(error.message, error.code)}</div>`;

  return html`<main class="login" id="main">
    <form class="card login-card" onSubmit=${submit} novalidate>
      <h1>${t('app.name')}</h1>
      <label>${t('login.login')}
        <input name="login" autocomplete="username" required ref=${first} onInput=${(e) => setLogin(e.target.value)} aria-invalid=${at('login') ? 'true' : undefined} /></label>
      ${message('login')}
      <label>${t('login.password')}
        <input name="password" type="password" autocomplete="current-password" required aria-invalid=${at('password') ? 'true' : undefined} /></label>
      ${message('password')}
      ${error && error.status === 429 && login === throttled && html`<div class="error-summary" role="alert" data-error-for="throttle">
        ${wait > 0 ? t('login.throttled', { wait: waitText(wait) }) : t('login.throttled_over')}</div>`}
      ${error && ![401, 429, 400].includes(error.status) && html`<div class="error-summary" role="alert" title=${error.message}>${sayError(error.message, error.code)}</div>`}
      <button type="submit" class="primary" disabled=${busy || (wait > 0 && login === throttled)}>${t('login.submit')}</button>
    </form>
  </main>`;
}
