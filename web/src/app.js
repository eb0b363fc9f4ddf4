// The shell: who is signed in, the page the URL names, and the navigation. A page that needs
// an optional part of the API names its path (`needs`) and stays out of the navigation until
// the API's OpenAPI document describes it.
import { html, useEffect, useState } from './lib.js';
import { api, capabilities, forgetCapabilities, onUnauthorized } from './api.js';
import { currentTheme, lang, onPreferences, setLang, setTheme, t } from './i18n.js';
import { Link, current, navigate, useLocation } from './router.js';
import { Loading } from './ui.js';
import { administers, managesUsers } from './access.js';
import { LoginPage } from './pages/login.js';
import { ProjectsPage } from './pages/projects.js';
import { DashboardPage } from './pages/dashboard.js';
import { SettingsPage } from './pages/settings/index.js';
import { UsersPage } from './pages/users.js';
import { AccountPage } from './pages/account.js';
import { AuditPage } from './pages/audit.js';
import { AnalyticsPage } from './pages/analytics.js';
import { ReportsPage } from './pages/reports.js';
import { WebhooksPage } from './pages/webhooks.js';

/**
 * @typedef {{slug: string, name: string, timezone: string, role: 'admin'|'viewer'}} MyProject
 * @typedef {{id: number, login: string, role: 'owner'|'member', projects: MyProject[]}} Me
 * @typedef {{id: string, path: RegExp, page: any, admin?: boolean, manager?: boolean, needs?: string}} Route
 */

/** @type {Route[]} */
const ROUTES = [
  { id: 'projects', path: /^\/$/, page: ProjectsPage },
  { id: 'dashboard', path: /^\/p\/([a-z0-9-]+)$/, page: DashboardPage },
  { id: 'settings', path: /^\/p\/([a-z0-9-]+)\/settings$/, page: SettingsPage, admin: true },
  { id: 'analytics', path: /^\/p\/([a-z0-9-]+)\/analytics$/, page: AnalyticsPage, needs: '/api/analytics/stages' },
  { id: 'reports', path: /^\/p\/([a-z0-9-]+)\/reports$/, page: ReportsPage, needs: '/api/reports/custom' },
  { id: 'users', path: /^\/users$/, page: UsersPage, manager: true },
  { id: 'audit', path: /^\/audit$/, page: AuditPage, manager: true },
  { id: 'webhooks', path: /^\/webhooks$/, page: WebhooksPage, manager: true, needs: '/api/webhooks/stats' },
  { id: 'account', path: /^\/account$/, page: AccountPage },
];


export function App() {
  const where = useLocation();
  const [me, setMe] = useState(/** @type {Me|null|undefined} */ (undefined));
  const [, setVersion] = useState(0);
  const [features, setFeatures] = useState(/** @type {Set<string>} */ (new Set()));

  useEffect(() => onPreferences(() => setVersion((v) => v + 1)), []);
  useEffect(() => {
    onUnauthorized(() => {
      setMe(null);
      forgetCapabilities();
      const { path, query } = current();
      if (path !== '/login') navigate('/login', { next: path + (Object.keys(query).length ? '?' + new URLSearchParams(query) : '') }, { replace: true });
    });
    // On the login page nobody is signed in yet (or wants to sign in again): no need to ask.
    if (current().path === '/login') setMe(null);
    else api.me().then(setMe, () => setMe(null));
  }, []);
  useEffect(() => {
    if (me) capabilities().then(setFeatures);
  }, [me]);

  if (where.path === '/login' || me === null) {
    return html`<${LoginPage} onLoggedIn=${(user) => {
      setMe(user);
      const next = where.query.next;
      navigate(next && next.startsWith('/') && !next.startsWith('//') ? next.split('?')[0] : '/', next && next.includes('?') ? Object.fromEntries(new URLSearchParams(next.split('?')[1])) : {}, { replace: true });
    }} />`;
  }
  if (me === undefined) return html`<${Loading} />`;

  const route = ROUTES.find((r) => r.path.test(where.path));
  const slug = route ? (where.path.match(route.path) || [])[1] : undefined;
  const project = slug ? me.projects.find((p) => p.slug === slug) : undefined;
  let body;
  if (!route || (slug && !project)) body = html`<${NotFound} />`;
  else if (!route.page || (route.needs && !features.has(route.needs))) body = html`<${NotFound} />`;
  else if (route.admin && !administers(me, slug)) body = html`<${Forbidden} />`;
  else if (route.manager && !managesUsers(me)) body = html`<${Forbidden} />`;
  else body = html`<${route.page} me=${me} project=${project} query=${where.query} key=${route.id + (slug || '')} />`;

  return html`<div class="shell">
    <${Header} me=${me} route=${route} project=${project} features=${features} onLoggedOut=${() => { setMe(null); forgetCapabilities(); navigate('/login', {}, { replace: true }); }} />
    <main id="main" tabindex="-1">${body}</main>
  </div>`;
}

function Header({ me, route, project, features, onLoggedOut }) {
  const projectLinks = project ? ROUTES.filter((r) => r.path.source.startsWith('^\\/p\\/') && r.page
    && (!r.needs || features.has(r.needs)) && (!r.admin || administers(me, project.slug))) : [];
  const href = (r) => (r.id === 'dashboard' ? `/p/${project.slug}` : `/p/${project.slug}/${r.id}`);
  const pick = (event) => {
    const slug = event.target.value;
    if (slug) navigate(route && route.id !== 'dashboard' && route.path.source.startsWith('^\\/p\\/') ? `/p/${slug}/${route.id}` : `/p/${slug}`);
  };
  const logout = async () => {
    try { await api.logout(); } finally { onLoggedOut(); }
  };
  return html`<header class="topbar">
    <a class="skip" href="#main">${t('nav.skip')}</a>
    <${Link} class="brand" href="/">${t('app.name')}</${Link}>
    <label class="project-picker"><span class="sr-only">${t('nav.project')}</span>
      <select onChange=${pick} value=${project ? project.slug : ''} name="project">
        <option value="">${t('nav.all_projects')}</option>
        ${me.projects.map((p) => html`<option value=${p.slug}>${p.name}</option>`)}
      </select></label>
    <nav class="main-nav" aria-label=${t('nav.main')}>
      ${projectLinks.map((r) => html`<${Link} href=${href(r)} aria-current=${route === r ? 'page' : undefined}>${t('nav.' + r.id)}</${Link}>`)}
      ${managesUsers(me) && html`<${Link} href="/users" aria-current=${route && route.id === 'users' ? 'page' : undefined}>${t('nav.users')}</${Link}>`}
      ${managesUsers(me) && html`<${Link} href="/audit" aria-current=${route && route.id === 'audit' ? 'page' : undefined}>${t('nav.audit')}</${Link}>`}
      ${managesUsers(me) && features.has('/api/webhooks/stats') && html`<${Link} href="/webhooks" aria-current=${route && route.id === 'webhooks' ? 'page' : undefined}>${t('nav.webhooks')}</${Link}>`}
    </nav>
    <div class="tools">
      <button type="button" class="chip" onClick=${() => setLang(lang() === 'uk' ? 'en' : 'uk')} title=${t('pref.language')}>${lang() === 'uk' ? 'EN' : 'УК'}</button>
      <button type="button" class="chip" onClick=${() => setTheme(currentTheme() === 'dark' ? 'light' : 'dark')}
        title=${t('pref.theme')} aria-label=${t('pref.theme')}>${currentTheme() === 'dark' ? '☀' : '☾'}</button>
      <${Link} href="/account" class="who" aria-current=${route && route.id === 'account' ? 'page' : undefined}>${me.login}</${Link}>
      <button type="button" class="chip" onClick=${logout}>${t('action.logout')}</button>
    </div>
  </header>`;
}

function NotFound() {
  return html`<section class="page narrow"><h1>${t('page.not_found')}</h1><p><${Link} href="/">${t('nav.projects')}</${Link}></p></section>`;
}

function Forbidden() {
  return html`<section class="page narrow"><h1>${t('page.forbidden')}</h1><p>${t('page.forbidden_text')}</p></section>`;
}
