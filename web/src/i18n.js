// Strings in one table per language (strings/uk.js, strings/en.js): Ukrainian by default,
// English by a switch; the choice and the theme (dark by default) are kept in this browser.
import uk from './strings/uk.js';
import en from './strings/en.js';

const tables = { uk, en };
const stored = (key, fallback, allowed) => {
  try {
    const value = localStorage.getItem(key);
    return allowed.includes(value) ? value : fallback;
  } catch {
    return fallback;
  }
};

let language = stored('ksa.lang', 'uk', ['uk', 'en']);
let theme = stored('ksa.theme', 'dark', ['dark', 'light']);
const listeners = new Set();

/** @returns {'uk'|'en'} */
export const lang = () => /** @type {'uk'|'en'} */ (language);
/** @returns {'dark'|'light'} */
export const currentTheme = () => /** @type {'dark'|'light'} */ (theme);

function apply() {
  if (typeof document === 'undefined') return; // imported by the tests, outside a page
  document.documentElement.lang = language;
  document.documentElement.dataset.theme = theme;
  for (const listener of listeners) listener();
}

/** @param {'uk'|'en'} value */
export function setLang(value) {
  language = value;
  try { localStorage.setItem('ksa.lang', value); } catch { /* private mode: this tab only */ }
  apply();
}

/** @param {'dark'|'light'} value */
export function setTheme(value) {
  theme = value;
  try { localStorage.setItem('ksa.theme', value); } catch { /* private mode: this tab only */ }
  apply();
}

/** Calls `listener` after a change of language or theme. */
export function onPreferences(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/**
 * The string `key` in the current language, with `{name}` placeholders filled from `values`.
 * @param {string} key
 * @param {Record<string, any>} [values]
 */
export function t(key, values) {
  const text = tables[language][key] ?? tables.uk[key] ?? key;
  return values ? text.replace(/\{(\w+)\}/g, (_, name) => (name in values ? String(values[name]) : `{${name}}`)) : text;
}

apply();
