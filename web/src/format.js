// How numbers of time are shown: dates always with the year and in the project's time zone,
// durations as `2 д 04:30` (days, then hours:minutes), limits entered as `год:хв`.
import { lang, t } from './i18n.js';

const locales = { uk: 'uk-UA', en: 'en-GB' };
const cache = new Map();

function formatter(zone, withSeconds) {
  const key = `${lang()}|${zone}|${withSeconds}`;
  if (!cache.has(key)) {
    cache.set(key, new Intl.DateTimeFormat(locales[lang()], {
      timeZone: zone || 'UTC',
      year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: withSeconds ? '2-digit' : undefined,
      hourCycle: 'h23',
    }));
  }
  return cache.get(key);
}

/**
 * An instant as a date with its year and a time, in `zone`.
 * @param {string|number|Date|null|undefined} instant
 * @param {string} zone  IANA name
 */
export function dateTime(instant, zone, withSeconds = false) {
  if (instant === null || instant === undefined || instant === '') return '—';
  const date = instant instanceof Date ? instant : new Date(instant);
  if (Number.isNaN(date.getTime())) return String(instant);
  return formatter(zone, withSeconds).format(date).replace(',', '');
}

/** Only the date (with its year) of an instant, in `zone`. */
export function dateOnly(instant, zone) {
  return dateTime(instant, zone).split(' ')[0];
}

/** The zone's offset from UTC at `instant`, as `UTC+02:00`. */
export function offset(zone, instant = new Date()) {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone: zone || 'UTC', timeZoneName: 'longOffset' }).formatToParts(instant);
  const name = parts.find((p) => p.type === 'timeZoneName');
  const text = name ? name.value.replace('GMT', 'UTC') : 'UTC';
  return text === 'UTC' ? 'UTC+00:00' : text;
}

const pad = (n) => String(n).padStart(2, '0');

/**
 * Seconds as `2 д 04:30` (or `04:30` under a day); minutes are floored, as the server does.
 * @param {number|null|undefined} seconds
 */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
  const sign = seconds < 0 ? '−' : '';
  const minutes = Math.floor(Math.abs(seconds) / 60);
  const days = Math.floor(minutes / 1440);
  const clock = `${pad(Math.floor((minutes % 1440) / 60))}:${pad(minutes % 60)}`;
  return sign + (days ? `${days} ${t('unit.day')} ${clock}` : clock);
}

/** Seconds as `HH:MM` with hours past 24, the way limits are typed (`36:30`). */
export function hoursMinutes(seconds) {
  const minutes = Math.floor(seconds / 60);
  return `${pad(Math.floor(minutes / 60))}:${pad(minutes % 60)}`;
}

/** A number with the locale's digit grouping. */
export function number(value, digits = 0) {
  if (value === null || value === undefined) return '—';
  return new Intl.NumberFormat(locales[lang()], { maximumFractionDigits: digits }).format(value);
}

/** A date-time-local input's value (`2026-12-04T16:58`) for an instant, in `zone`. */
export function localInput(instant, zone) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-CA', {
    timeZone: zone || 'UTC', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
  }).formatToParts(new Date(instant)).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}`;
}

/** The instant (RFC 3339, UTC) a wall-clock `2026-12-04T16:58` in `zone` names. */
export function fromLocalInput(value, zone) {
  if (!value) return '';
  const [date, time] = value.split('T');
  const [y, mo, d] = date.split('-').map(Number);
  const [h, mi] = (time || '00:00').split(':').map(Number);
  const guess = Date.UTC(y, mo - 1, d, h, mi);
  // Two passes: the offset at the guess, then at the corrected instant (DST edges).
  let instant = guess;
  for (let i = 0; i < 2; i++) {
    const shown = localInput(instant, zone);
    const [sd, st] = shown.split('T');
    const [sy, smo, sdd] = sd.split('-').map(Number);
    const [sh, smi] = st.split(':').map(Number);
    instant = instant - (Date.UTC(sy, smo - 1, sdd, sh, smi) - guess);
  }
  return new Date(instant).toISOString().replace('.000Z', 'Z');
}
