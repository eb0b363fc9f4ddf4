// The one module that talks to the API: every request goes through `request`, every error
// comes back as an ApiError in the API's one shape, and a 401 sends the person to the login
// page (except on the login call itself, where it means a wrong password).

/** An answer of the API that is not 2xx. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {any} body  the API's `{error, message, field?, errors?}`, or text
   * @param {number|null} retryAfter  seconds, from `Retry-After`
   */
  constructor(status, body, retryAfter) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error ? body.error : 'http_' + status;
    /** @type {string|null} */
    this.field = body && body.field ? body.field : null;
    /** @type {{field: string, message: string}[]} */
    this.errors = body && Array.isArray(body.errors) ? body.errors : (this.field ? [{ field: this.field, message: this.message }] : []);
    this.retryAfter = retryAfter;
  }
}

/** @type {(error: ApiError) => void} */
let unauthorized = () => {};

/** What happens when the session has ended (the app shows the login page). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/**
 * @param {Record<string, any>|undefined} query
 * @returns {string}
 */
export function queryString(query) {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
  }
  const text = params.toString();
  return text ? '?' + text : '';
}

/**
 * @param {string} method
 * @param {string} path
 * @param {{query?: Record<string, any>, body?: any, headers?: Record<string, string>, signal?: AbortSignal}} [options]
 * @returns {Promise<{data: any, headers: Headers}>}
 */
export async function request(method, path, options = {}) {
  const headers = { accept: 'application/json', ...(options.headers || {}) };
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(path + queryString(options.query), {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    credentials: 'same-origin',
    signal: options.signal,
  });
  const type = response.headers.get('content-type') || '';
  const data = type.includes('json') ? await response.json() : await response.text();
  if (!response.ok) {
    const retry = Number(response.headers.get('retry-after'));
    const error = new ApiError(response.status, data, Number.isFinite(retry) && retry > 0 ? retry : null);
    if (response.status === 401 && path !== '/api/auth/login') unauthorized(error);
    throw error;
  }
  return { data, headers: response.headers };
}

const get = async (path, query, signal) => (await request('GET', path, { query, signal })).data;
const send = async (method, path, body, query) => (await request(method, path, { body, query })).data;

/** The routes of the API, by what they do. */
export const api = {
  login: (login, password) => send('POST', '/api/auth/login', { login, password }),
  logout: () => send('POST', '/api/auth/logout'),
  me: () => get('/api/me'),
  changePassword: (oldPassword, newPassword) =>
    send('POST', '/api/me/password', { old_password: oldPassword, new_password: newPassword }),
  tokens: () => get('/api/tokens'),
  createToken: (name) => send('POST', '/api/tokens', { name }),
  revokeToken: (id) => send('DELETE', `/api/tokens/${id}`),
  users: () => get('/api/users'),
  createUser: (user) => send('POST', '/api/users', user),
  updateUser: (id, patch) => send('PATCH', `/api/users/${id}`, patch),
  projects: () => get('/api/projects'),
  project: (slug) => get(`/api/projects/${encodeURIComponent(slug)}`),
  updateProject: (slug, patch) => send('PATCH', `/api/projects/${encodeURIComponent(slug)}`, patch),
  rotateSecret: (slug) => send('POST', `/api/projects/${encodeURIComponent(slug)}/webhook-secret`),
  statuses: (project) => get('/api/dicts/statuses', { project }),
  renameGroup: (project, id, name) => send('PATCH', `/api/dicts/groups/${id}`, { name }, { project }),
  syncStatuses: (project) => send('POST', '/api/dicts/statuses/sync', undefined, { project }),
  /** A settings part (`sla`, `cycle`, `working-hours`, `urgent-rules`, `terminal`) or the whole. */
  settings: async (project, part) => {
    const { data, headers } = await request('GET', part ? `/api/settings/${part}` : '/api/settings', { query: { project } });
    return { ...data, etag: headers.get('etag') };
  },
  saveSettings: async (project, part, document, etag) => {
    const { data, headers } = await request('PUT', part ? `/api/settings/${part}` : '/api/settings', {
      query: { project },
      body: document,
      headers: etag ? { 'if-match': etag } : {},
    });
    return { ...data, etag: headers.get('etag') };
  },
  recompute: (project) => get('/api/settings/recompute', { project }),
  orders: (query, signal) => get('/api/orders', query, signal),
  kpis: (query, signal) => get('/api/orders/kpis', query, signal),
  timeline: (project, id, asOf, signal) => get(`/api/orders/${id}/timeline`, { project, as_of: asOf }, signal),
  putOverride: (project, id, value) => send('PUT', `/api/orders/${id}/override`, value, { project }),
  deleteOverride: (project, id) => send('DELETE', `/api/orders/${id}/override`, undefined, { project }),
  audit: (query) => get('/api/audit', query),
  /** Webhook statistics per project and day (`project` optional, `from`, `to`). */
  webhookStats: (params, signal) => get('/api/webhooks/stats', params, signal),
  openapi: () => get('/api/openapi.yaml'),
  /** One analytics query (`stages`, `cycles`, `sla`, `throughput`) over a period. */
  analytics: (query, params, signal) => get(`/api/analytics/${query}`, params, signal),
  /** The address of the same query's rows as a CSV file. */
  analyticsCsv: (query, params) => `/api/analytics/${query}` + queryString({ ...params, format: 'csv' }),
  /** One page of a report (`custom`, `productivity`, `cancellations`, `success`, `sla`, `stage-time`). */
  report: (name, params, signal) => get(`/api/reports/${name}`, params, signal),
  /** The address of every row of the same report (its sort too) as a CSV file. */
  reportCsv: (name, params) => `/api/reports/${name}` + queryString({ ...params, format: 'csv' }),
};

/** @type {Promise<Set<string>>|null} */
let described = null;

/**
 * The API's paths as its OpenAPI document lists them: pages whose API has not landed yet stay
 * out of the navigation, and the dashboard uses filters and the live feed once they exist.
 * @returns {Promise<Set<string>>}
 */
export function capabilities() {
  if (!described) {
    described = api.openapi().then(
      (text) => new Set(String(text).split('\n').filter((l) => /^ {2}\/api\//.test(l)).map((l) => l.trim().replace(/:$/, ''))),
      () => { described = null; return new Set(); },
    );
  }
  return described;
}

/** Forgets what was learnt about the API (after logging out). */
export function forgetCapabilities() {
  described = null;
}
