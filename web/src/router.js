// The page state lives in the URL: the path names the page (and project), the query holds its
// filters, sort, period and the selected order. Every change is a history entry (or replaces
// the current one), so a link can be shared and the back button restores the view.
import { html, useEffect, useState } from './lib.js';
import { queryString } from './api.js';

/** @typedef {{path: string, query: Record<string, string>}} Location */

const listeners = new Set();

/** @returns {Location} */
export function current() {
  return { path: location.pathname, query: Object.fromEntries(new URLSearchParams(location.search)) };
}

function announce() {
  const now = current();
  for (const listener of listeners) listener(now);
}

window.addEventListener('popstate', announce);

/**
 * @param {string} path
 * @param {Record<string, any>} [query]
 * @param {{replace?: boolean}} [options]
 */
export function navigate(path, query = {}, options = {}) {
  const url = path + queryString(query);
  if (url === location.pathname + location.search) return;
  if (options.replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  announce();
}

/** Changes some query parameters of the current page (`undefined` or '' removes one). */
export function setQuery(changes, options = {}) {
  const { path, query } = current();
  navigate(path, { ...query, ...changes }, options);
}

/** @returns {Location} the location, re-rendering the component when it changes */
export function useLocation() {
  const [where, setWhere] = useState(current);
  useEffect(() => {
    listeners.add(setWhere);
    return () => listeners.delete(setWhere);
  }, []);
  return where;
}

/** An ordinary link (it opens in a new tab, copies, works without script) that navigates in place. */
export function Link({ href, children, ...rest }) {
  const click = (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    const url = new URL(href, location.href);
    navigate(url.pathname, Object.fromEntries(url.searchParams));
  };
  return html`<a href=${href} onClick=${click} ...${rest}>${children}</a>`;
}
