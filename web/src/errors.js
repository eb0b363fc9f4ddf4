// The API words its errors in English, for every client alike. The pages say them in the
// reader's language: a message the UI knows (by its pattern, keeping the values it names) is
// said from the strings table (`apierr.*`); any other is said by its error code, with the API's
// own words kept as a tooltip, so nothing the server explained is lost.
import { lang, t } from './i18n.js';

/** `"x"` as the API quotes a value (Rust's `{:?}`): the value without the quotes. */
const Q = '"((?:[^"\\\\]|\\\\.)*)"';

/** [pattern, string key, names of the captured values]: the most specific first. */
const PATTERNS = /** @type {[RegExp, string, string[]][]} */ ([
  [/^(\w+) must come after (\w+)$/, 'apierr.after', ['later', 'earlier']],
  [/^must be after (\w+)$/, 'apierr.after_field', ['earlier']],
  [/^the period is longer than 3 years/, 'apierr.period_too_long', []],
  [new RegExp(`^${Q} is not a date \\(YYYY-MM-DD\\) or an instant with its offset$`), 'apierr.not_date_or_instant', ['value']],
  [new RegExp(`^${Q} is not a date \\(expected YYYY-MM-DD\\)$`), 'apierr.not_date', ['value']],
  [new RegExp(`^${Q} is not an RFC 3339 (?:UTC )?time(?:stamp)?$`), 'apierr.not_instant', ['value']],
  [/^the date is out of range$/, 'apierr.date_range', []],
  [/^\S+ is more than a day ahead/, 'apierr.as_of_future', []],
  [/^\S+ is more than a day before the project's first order/, 'apierr.as_of_past', []],
  [/^a cursor keeps its first page's as_of/, 'apierr.cursor', []],
  [/^not a cursor/, 'apierr.cursor', []],
  [/^search by an order number or its first digits$/, 'apierr.search', []],
  [/^the number is too long$/, 'apierr.search', []],
  [new RegExp(`^${Q} is not a number from 1 to (\\d+)$`), 'apierr.number_range', ['value', 'max']],
  [new RegExp(`^${Q} is not a number$`), 'apierr.not_number', ['value']],
  [new RegExp(`^${Q}: sort by working, wall, created, changed or id`), 'apierr.sort_orders', ['value']],
  [new RegExp(`^${Q} is not a column; sort by one of (.+) \\(with - for descending\\)$`), 'apierr.sort_columns', ['value', 'columns']],
  [new RegExp(`^${Q} is not a duration \\(expected HH:MM`), 'apierr.not_duration', ['value']],
  [new RegExp(`^${Q} is not a window \\(expected HH:MM-HH:MM`), 'apierr.not_window', ['value']],
  [new RegExp(`^${Q} is not an IANA time zone`), 'apierr.not_timezone', ['value']],
  [new RegExp(`^${Q} is not an http\\(s\\) URL$`), 'apierr.not_url', ['value']],
  [new RegExp(`^${Q} is not an IP address or CIDR$`), 'apierr.not_cidr', ['value']],
  [new RegExp(`^${Q} must be 1–64 characters of a–z, 0–9 and '-'$`), 'apierr.slug', ['value']],
  [/^(\d+) is not a status group id$/, 'apierr.not_group', ['value']],
  [/^(\d+) is not a status id$/, 'apierr.not_status', ['value']],
  [/^group (\d+) cannot mean both completion and cancellation$/, 'apierr.both_terminal', ['value']],
  [/^(\S+) is used by another cycle$/, 'apierr.cycle_taken', ['value']],
  [/^(\S+) is not the id of a cycle in `cycles`$/, 'apierr.no_cycle', ['value']],
  [/^must not be empty$/, 'apierr.empty', []],
  [/^give at least one value$/, 'apierr.empty', []],
  [/^given more than once$/, 'apierr.twice', []],
  [/^give a name of 1 to (\d+) characters$/, 'apierr.name_length', ['max']],
  [/^give the token a name of 1 to (\d+) characters$/, 'apierr.name_length', ['max']],
  [/^not an e-mail address$/, 'apierr.email', []],
  [/^1 to 100 letters, digits or/, 'apierr.login', []],
  [/^give your login$/, 'apierr.login_missing', []],
  [/^the (?:new )?password must be at least (\d+) characters \(this one has (\d+)\)$/, 'apierr.password_short', ['min', 'length']],
  [/^the (?:new )?password must be at most 1024 bytes$/, 'apierr.password_long', []],
  [/^a user `(.*)` already exists$/, 'apierr.login_taken', ['value']],
  [/^a project `(.*)` already exists$/, 'apierr.slug_taken', ['value']],
  [/^the settings were saved by someone else meanwhile \(revision (\d+) now\)/, 'apierr.stale', ['revision']],
  [/^the API token is empty/, 'apierr.token', []],
  [/^give requests per minute between 1 and 600/, 'apierr.rate', []],
  [/^wrong login or password$/, 'apierr.wrong_login', []],
  [/^(\d+) fields are invalid$/, 'apierr.fields_invalid', ['n']],
]);

/** The query parameters the pages name in their own words (`apierr.field.*`). */
const FIELDS = new Set(['from', 'to', 'created_from', 'created_to', 'changed_from', 'changed_to']);
const fieldName = (value) => (FIELDS.has(value) ? t('apierr.field.' + value) : value);

/** Error codes the strings table says in words (`apierr.code.*`). */
const CODES = new Set(['invalid_parameter', 'invalid_body', 'invalid_document', 'invalid_query', 'bad_request',
  'unauthorized', 'wrong_password', 'forbidden', 'not_found', 'conflict', 'stale_revision', 'too_large',
  'too_many_requests', 'unavailable', 'internal', 'analytics_failed', 'analytics_off']);

/**
 * The API's `message` (with its error `code`; none for a request that got no answer) in the
 * reader's language.
 * @param {string} message
 * @param {string} [code]
 */
export function sayError(message, code) {
  if (lang() === 'en' || !message) return message;
  for (const [pattern, key, names] of PATTERNS) {
    const found = pattern.exec(message);
    if (found) return t(key, Object.fromEntries(names.map((name, i) => [name, fieldName(found[i + 1])])));
  }
  // A document's one invalid field: `path: message`.
  const one = /^([\w.[\]]+): (.+)$/.exec(message);
  if (one && knows(one[2])) return `${one[1]}: ${sayError(one[2], code)}`;
  if (!code) return t('apierr.code.network');
  return t('apierr.code.' + (CODES.has(code) ? code : 'invalid_parameter'));
}

/** Whether `sayError` knows `message` by its pattern (for the tests). */
export const knows = (message) => PATTERNS.some(([pattern]) => pattern.test(message));
