// The web UI in a real browser: Debian's chromium, headless, driven by playwright-core, against
// a server that scripts/ui-test started with a generated project. Every page is photographed
// into KSA_UI_SHOTS; every test fails on a console error or a failed request it did not expect.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests with scripts/ui-test`);
  return value;
};
const BASE = env('KSA_UI_BASE');
const SECRET = env('KSA_UI_SECRET');
const SHOTS = env('KSA_UI_SHOTS');
const PASSWORDS = { admin: env('KSA_UI_ADMIN_PASSWORD'), viewer: env('KSA_UI_VIEWER_PASSWORD') };
const FIXTURE = JSON.parse(readFileSync(new URL('../../fixtures/keycrm/webhook_status_change.json', import.meta.url), 'utf8'));

/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.KSA_UI_CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close();
});

/**
 * A browser page that records what went wrong: console errors, page errors and failed requests,
 * except those `expect` allows (a request as `STATUS METHOD path-prefix`).
 */
async function session(t, { expect = [], viewport = { width: 1440, height: 900 } } = {}) {
  const context = await browser.newContext({ viewport, locale: 'uk-UA' });
  const page = await context.newPage();
  const problems = [];
  const allowed = (text) => expect.some((e) => text.startsWith(e));
  page.on('console', (m) => {
    // A failed fetch is logged by the browser too; it is judged by its response below.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText || '';
    if (!why.includes('ERR_ABORTED')) problems.push(`request failed: ${r.method()} ${r.url()} ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() < 400) return;
    const url = new URL(r.url());
    const text = `${r.status()} ${r.request().method()} ${url.pathname}`;
    if (!allowed(text)) problems.push(`response: ${text}`);
  });
  page.on('dialog', (d) => d.accept());
  t.after(async () => {
    await context.close();
    assert.deepEqual(problems, [], 'the page had errors');
  });
  return page;
}

async function login(page, who) {
  await page.goto(BASE + '/login');
  await page.fill('input[name=login]', who);
  await page.fill('input[name=password]', PASSWORDS[who]);
  await page.press('input[name=password]', 'Enter');
  await page.waitForSelector('.topbar');
}

const shot = (page, name, options = {}) => page.screenshot({ path: `${SHOTS}/${name}.png`, ...options });

/** Seconds as the UI shows them (`2 д 04:30`). */
function duration(seconds) {
  const minutes = Math.floor(seconds / 60);
  const days = Math.floor(minutes / 1440);
  const clock = `${String(Math.floor((minutes % 1440) / 60)).padStart(2, '0')}:${String(minutes % 60).padStart(2, '0')}`;
  return days ? `${days} д ${clock}` : clock;
}

/** Posts a status change of `order` to the project's webhook, as KeyCRM would. */
async function webhook(order, group, status, changedAt, createdAt) {
  const body = structuredClone(FIXTURE);
  Object.assign(body.context, {
    id: order, status_group_id: group, status_id: status, status_changed_at: changedAt, created_at: createdAt,
    ordered_at: createdAt, updated_at: changedAt,
  });
  const response = await fetch(`${BASE}/webhooks/keycrm/shop?token=${SECRET}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  assert.equal(response.status, 202, await response.text());
}

const ago = (minutes) => new Date(Date.now() - minutes * 60_000).toISOString().replace(/\.\d+Z$/, '.000000Z');

test('strings: both languages have the same keys, and every key the code names exists', async () => {
  const uk = (await import('../src/strings/uk.js')).default;
  const en = (await import('../src/strings/en.js')).default;
  assert.deepEqual(Object.keys(en).sort(), Object.keys(uk).sort());
  const src = new URL('../src/', import.meta.url);
  const files = readdirSync(src, { recursive: true }).filter((f) => String(f).endsWith('.js'));
  for (const file of files) {
    const text = readFileSync(new URL(String(file), src), 'utf8');
    for (const [, key] of text.matchAll(/\bt\('([a-z_.]+)'[,)]/g)) assert.ok(key in uk, `${file} names a string ${key} that uk.js lacks`);
  }
});

test('errors: the API\'s messages are said in Ukrainian with their values, and an unknown one by its code', async () => {
  const { sayError, knows } = await import('../src/errors.js');
  const said = {
    'to must come after from': '«До» має бути пізніше за «Від».',
    'created_to must come after created_from': '«Створено до» має бути пізніше за «Створено від».',
    '"25:99" is not a duration (expected HH:MM, for example "36:30")': '«25:99» — не тривалість; введіть год:хв, наприклад 36:30.',
    '"x" is not a number from 1 to 500': '«x» — не число від 1 до 500.',
    'sla.urgent.2: "25:99" is not a duration (expected HH:MM, for example "36:30")': 'sla.urgent.2: «25:99» — не тривалість; введіть год:хв, наприклад 36:30.',
    'the password must be at least 10 characters (this one has 3)': 'Пароль має містити щонайменше 10 символів (цей — 3).',
    '"ftp://example" is not an http(s) URL': '«ftp://example» — не адреса http(s).',
    '3 fields are invalid': 'Помилок у полях: 3.',
  };
  for (const [message, uk] of Object.entries(said)) assert.equal(sayError(message, 'invalid_parameter'), uk, message);
  assert.equal(sayError('something new the API says', 'forbidden'), 'Недостатньо прав для цієї дії.');
  assert.equal(sayError('something new the API says', 'a_code_the_ui_lacks'), 'Неприпустиме значення.');
  assert.equal(sayError('Failed to fetch'), 'Немає зв’язку із сервером.');
  assert.ok(!knows('something new the API says'));
});

test('login: a wrong password is said beside it, throttling says how long to wait, Enter logs in', async (t) => {
  const page = await session(t, { expect: ['401 GET /api/me', '401 POST /api/auth/login', '429 POST /api/auth/login'] });
  await page.goto(BASE + '/p/shop');
  await page.waitForURL(/\/login\?next=/);
  await shot(page, 'login');
  await page.fill('input[name=login]', 'admin');
  await page.fill('input[name=password]', 'not the password');
  await page.press('input[name=password]', 'Enter');
  await page.waitForSelector('[data-error-for=password]');
  await shot(page, 'login-error');
  for (let i = 0; i < 6; i++) {
    await page.fill('input[name=login]', 'ghost');
    await page.fill('input[name=password]', 'wrong');
    await page.click('button[type=submit]:not([disabled])');
    await page.waitForSelector('[data-error-for=password], [data-error-for=throttle]');
    if (await page.$('[data-error-for=throttle]')) break;
  }
  const throttle = await page.textContent('[data-error-for=throttle]');
  assert.match(throttle, /\d+ (хв|с)/, 'the throttling message names the wait');
  await shot(page, 'login-throttled');
  assert.ok(await page.isDisabled('button[type=submit]'), 'the throttled login waits');
  await page.fill('input[name=login]', 'admin');
  assert.ok(await page.isEnabled('button[type=submit]'), 'another login need not wait');
  await page.fill('input[name=password]', PASSWORDS.admin);
  await page.press('input[name=password]', 'Enter');
  await page.waitForURL(BASE + '/p/shop');
  await page.waitForSelector('[data-order-id]');
});

test('projects: a card per project; picking one opens its dashboard with a card per order and more on scroll', async (t) => {
  const page = await session(t);
  await login(page, 'admin');
  const openOrders = async () => (await (await page.request.get(BASE + '/api/orders/kpis?project=shop&open=true')).json()).kpis.count;
  const before = await openOrders();
  await webhook(990050, 1, 1, ago(30), ago(30));
  for (let i = 0; i < 100 && (await openOrders()) !== before + 1; i++) await page.waitForTimeout(100);
  await page.reload();
  await page.waitForFunction((n) => document.querySelector('[data-project=shop] .counts dd')?.textContent.replace(/\D/g, '') === String(n), before + 1);
  const kpis = await (await page.request.get(BASE + '/api/orders/kpis?project=shop&open=true')).json();
  const counts = await page.$$eval('[data-project=shop] .counts dd', (cells) => cells.map((c) => c.textContent.replace(/\D/g, '')));
  assert.deepEqual(counts, [kpis.kpis.count, kpis.kpis.sla.over, kpis.kpis.sla.near].map((k) => String(typeof k === 'object' ? k.count : k)),
    'the card counts the open orders, and those over and near, as the KPIs do');
  await shot(page, 'projects');
  await page.click('[data-project=shop]');
  await page.waitForURL(BASE + '/p/shop');
  await page.waitForSelector('[data-order-id]');
  const all = (await (await page.request.get(BASE + '/api/orders?project=shop&limit=500')).json()).orders.length;
  assert.ok(all > 50, `the generated project has more than a page of orders (${all})`);
  assert.equal(await page.locator('[data-order-id]').count(), 50);
  await shot(page, 'dashboard');
  await page.locator('.sentinel').scrollIntoViewIfNeeded();
  await page.waitForFunction((n) => document.querySelectorAll('[data-order-id]').length === n, all);
  const ids = await page.$$eval('[data-order-id]', (cards) => cards.map((c) => c.dataset.orderId));
  assert.equal(new Set(ids).size, ids.length, 'no order shows twice');
  const text = await page.textContent('[data-order-id]');
  assert.match(text, /\d{2}\.\d{2}\.20\d{2}/, 'dates carry their year');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot(page, 'dashboard-phone');
});

test('live: a webhook posted while the dashboard is open appears and patches its card without a reload', async (t) => {
  const page = await session(t);
  await login(page, 'admin');
  await page.goto(BASE + '/p/shop');
  await page.waitForSelector('[data-order-id]');
  await page.evaluate(() => { window.__sameDocument = true; });
  await webhook(990001, 1, 1, ago(180), ago(185));
  const card = await page.waitForSelector('[data-order-id="990001"]', { timeout: 10_000 });
  assert.match(await card.textContent(), /Статус 1|Новий/);
  await webhook(990001, 3, 7, ago(60), ago(185));
  await page.waitForFunction(() => document.querySelector('[data-order-id="990001"] .status')?.textContent.includes('Виробництво'), null, { timeout: 10_000 });
  assert.ok(await card.evaluate((node) => node.isConnected), 'the same card element was patched, not replaced');
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the page did not reload');
  await shot(page, 'dashboard-live');
});

test('live: a card turns near and then over when its crossings pass, by the clock alone, with no request', async (t) => {
  const page = await session(t);
  await login(page, 'admin');
  await webhook(990300, 1, 1, ago(1), ago(1));
  let row;
  for (let i = 0; i < 100 && !row; i++) {
    row = (await (await page.request.get(BASE + '/api/orders?project=shop&q=990300')).json()).orders.find((o) => o.order_id === 990300);
    if (!row) await new Promise((done) => setTimeout(done, 100));
  }
  assert.ok(row, 'the order was processed');
  const { group_near_at: near, group_over_at: over } = row.crossings;
  assert.ok(near && over && Date.parse(near) < Date.parse(over), `a new order crosses near, then over: ${JSON.stringify(row.crossings)}`);
  assert.equal(row.sla, 'ok');

  await page.clock.install();
  await page.goto(BASE + '/p/shop?q=990300');
  const card = '[data-order-id="990300"]';
  await page.waitForSelector(`${card}[data-sla=ok]`);
  const asked = [];
  page.on('request', (r) => { if (new URL(r.url()).pathname === '/api/orders') asked.push(r.url()); });
  const pageNow = () => page.evaluate(() => Date.now());
  await page.clock.fastForward(Date.parse(near) - await pageNow() + 1000);
  await page.waitForSelector(`${card}[data-sla=near] .group-cell .bar.sla-near`);
  await shot(page, 'dashboard-clock-near');
  await page.clock.fastForward(Date.parse(over) - await pageNow() + 1000);
  await page.waitForSelector(`${card}[data-sla=over] .group-cell .bar.sla-over`);
  assert.deepEqual(asked, [], 'the colours moved with no request');
});

test('timeline: the panel shows a known order’s intervals and totals; its state is in the URL and back closes it', async (t) => {
  const page = await session(t);
  await login(page, 'admin');
  await page.goto(BASE + '/p/shop');
  await page.click('[data-order-id="990001"] .order-id');
  await page.waitForURL(/order=990001/);
  await page.waitForSelector('[data-timeline="990001"] [data-totals=groups]');
  const timeline = await (await page.request.get(BASE + '/api/orders/990001/timeline?project=shop')).json();
  assert.equal(await page.locator('[data-timeline="990001"] [data-interval]').count(), timeline.intervals.length);
  assert.equal(timeline.intervals.length, 2);
  const row = page.locator('[data-totals=groups] tr[data-group-id="1"] td');
  assert.equal(await row.nth(2).textContent(), '02:00', 'two hours of wall time in the first group');
  assert.equal(await row.nth(1).textContent(), duration(timeline.groups['1'].working_seconds));
  await shot(page, 'timeline');
  await page.goBack();
  await page.waitForFunction(() => !document.querySelector('[data-timeline]'));
  assert.ok(!page.url().includes('order='));
  await page.goForward();
  await page.waitForSelector('[data-timeline="990001"]');
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !document.querySelector('[data-timeline]'));
  await page.locator('[data-order-id="990001"]').focus();
  await page.keyboard.press('Enter');
  await page.waitForSelector('[data-timeline="990001"] [data-override]');
});

test('as of: an instant freezes the view in the URL, and back returns to live', async (t) => {
  const page = await session(t);
  await login(page, 'admin');
  await page.goto(BASE + '/p/shop');
  await page.waitForSelector('[data-live=polling], [data-live=live]');
  const local = await page.evaluate(() => {
    const d = new Date(Date.now() - 86_400_000);
    const p = Object.fromEntries(new Intl.DateTimeFormat('en-CA', { timeZone: 'Europe/Kyiv', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).formatToParts(d).map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`;
  });
  await page.fill('input[name=as_of]', local);
  await page.waitForURL(/as_of=/);
  await page.waitForSelector('[data-live=paused]');
  await page.waitForSelector('[data-order-id]');
  assert.equal(await page.$('[data-order-id="990001"]'), null, 'an order that began after the instant is not shown');
  await page.goBack();
  await page.waitForSelector('[data-live=polling], [data-live=live]');
  assert.ok(!page.url().includes('as_of'));
});

/** Opens a settings tab, changes it with `edit`, saves and waits for the recompute. */
async function saveTab(page, tab, edit) {
  await page.goto(`${BASE}/p/shop/settings?tab=${tab}`);
  await page.waitForSelector('form.settings-form');
  await edit();
  await page.click('form.settings-form button[type=submit]');
}

async function expectSaved(page) {
  await page.waitForSelector('[data-recompute=done]', { timeout: 20_000 });
}

async function expectFieldError(page, field) {
  const error = await page.waitForSelector(`[data-error-for="${field}"]`);
  assert.ok((await error.textContent()).length > 3);
}

const SETTINGS_422 = ['422 PUT /api/settings'];

test('settings: SLA limits round-trip, and a bad limit is named beside its field', async (t) => {
  const page = await session(t, { expect: SETTINGS_422 });
  await login(page, 'admin');
  await saveTab(page, 'sla', () => page.fill('[data-field="sla.normal.1"]', '07:30'));
  await expectSaved(page);
  await page.reload();
  assert.equal(await page.inputValue('[data-field="sla.normal.1"]'), '07:30');
  await shot(page, 'settings-sla');
  await page.fill('[data-field="sla.urgent.2"]', '25:99');
  await page.click('form.settings-form button[type=submit]');
  await expectFieldError(page, 'sla.urgent.2');
  await shot(page, 'settings-sla-error');
});

test('settings: working hours round-trip (several windows, overnight, holidays), and a bad window is named', async (t) => {
  const page = await session(t, { expect: SETTINGS_422 });
  await login(page, 'admin');
  await saveTab(page, 'hours', async () => {
    const calendar = page.locator('[data-calendar="calendars.default"]');
    await calendar.locator('[data-field="calendars.default.weekly.mon[0]"]').fill('08:00-12:00');
    await calendar.locator('tr', { hasText: 'Пн' }).getByRole('button', { name: '+' }).click();
    await page.fill('[data-field="calendars.default.weekly.mon[1]"]', '22:00-06:00');
    await page.fill('input[name="calendars.default.new-exception"]', '2026-12-31');
    await calendar.getByRole('button', { name: 'Додати дату' }).click();
  });
  await expectSaved(page);
  await page.reload();
  assert.equal(await page.inputValue('[data-field="calendars.default.weekly.mon[1]"]'), '22:00-06:00');
  assert.ok(await page.$('[data-calendar="calendars.default"] [data-exception="2026-12-31"]'));
  await shot(page, 'settings-hours');
  await page.fill('[data-field="calendars.default.weekly.tue[0]"]', '25:00-18:00');
  await page.click('form.settings-form button[type=submit]');
  await expectFieldError(page, 'calendars.default.weekly.tue[0]');
});

test('settings: cycles round-trip, and a repeated id is named', async (t) => {
  const page = await session(t, { expect: SETTINGS_422 });
  await login(page, 'admin');
  await saveTab(page, 'cycles', () => page.fill('[data-field="cycles[0].title"]', 'до доставки'));
  await expectSaved(page);
  await page.reload();
  assert.equal(await page.inputValue('[data-field="cycles[0].title"]'), 'до доставки');
  await shot(page, 'settings-cycles');
  await page.fill('[data-field="cycles[1].id"]', await page.inputValue('[data-field="cycles[0].id"]'));
  await page.click('form.settings-form button[type=submit]');
  await expectFieldError(page, 'cycles[1].id');
});

test('settings: completion and cancellation groups round-trip, and a group in both is named', async (t) => {
  const page = await session(t, { expect: SETTINGS_422 });
  await login(page, 'admin');
  await saveTab(page, 'terminal', () => page.check('input[name="cancellation_groups.4"]'));
  await expectSaved(page);
  await page.reload();
  assert.ok(await page.isChecked('input[name="cancellation_groups.4"]'));
  await shot(page, 'settings-terminal');
  await page.uncheck('input[name="cancellation_groups.4"]');
  await page.check('input[name="cancellation_groups.5"]');
  await page.click('form.settings-form button[type=submit]');
  await expectFieldError(page, 'cancellation_groups');
  await page.uncheck('input[name="cancellation_groups.5"]');
  await page.click('form.settings-form button[type=submit]');
  await expectSaved(page);
});

test('settings: urgency rules round-trip, and an offer id that is not a number is named', async (t) => {
  const page = await session(t, { expect: SETTINGS_422 });
  await login(page, 'admin');
  let index = 0;
  await saveTab(page, 'urgency', async () => {
    index = await page.locator('[data-rule]').count();
    await page.getByRole('button', { name: 'Додати правило' }).click();
    await page.fill(`[data-field="urgency_rules[${index}].match_value"]`, 'UI-TEST-SKU');
    await page.fill(`[data-field="urgency_rules[${index}].name"]`, 'тест');
  });
  await expectSaved(page);
  await page.reload();
  assert.equal(await page.inputValue(`[data-field="urgency_rules[${index}].match_value"]`), 'UI-TEST-SKU');
  await shot(page, 'settings-urgency');
  await page.selectOption(`[data-field="urgency_rules[${index}].match_type"]`, 'offer_id');
  await page.click('form.settings-form button[type=submit]');
  await expectFieldError(page, `urgency_rules[${index}].match_value`);
});

test('settings: the project, its write-only token, group names and a rotated webhook URL shown once', async (t) => {
  const page = await session(t, { expect: ['400 PATCH /api/projects/shop'] });
  await login(page, 'admin');
  await page.goto(`${BASE}/p/shop/settings?tab=project`);
  await page.waitForSelector('[data-token-state=unset]');
  await page.fill('[data-field="name"]', 'Майстерня UI');
  await page.fill('[data-field="keycrm.token"]', 'secret-token-7777');
  await page.click('form[data-part=project] button[type=submit]');
  await page.waitForSelector('[data-token-state=set]');
  await page.reload();
  assert.equal(await page.inputValue('[data-field="name"]'), 'Майстерня UI');
  assert.equal(await page.inputValue('[data-field="keycrm.token"]'), '', 'the token is never shown back');
  assert.match(await page.textContent('[data-token-state]'), /7777/);
  await page.fill('[data-field="groups.4"]', 'Відправка');
  await page.click('form[data-part=groups] button[type=submit]');
  await page.waitForSelector('form[data-part=groups] [role=status]');
  await page.reload();
  // The group names arrive after the form: wait for them rather than read the empty field.
  // (Until the form is there at all, the field is missing, which is not "filled".)
  await page.waitForFunction(() => {
    const field = /** @type {HTMLInputElement|null} */ (document.querySelector('[data-field="groups.4"]'));
    return field !== null && field.value !== '';
  }, null, { timeout: 10_000 }).catch(() => {});
  assert.equal(await page.inputValue('[data-field="groups.4"]'), 'Відправка');
  await page.getByRole('button', { name: 'Змінити секрет' }).click();
  const url = await page.inputValue('.shown-once input');
  assert.match(url, /\/webhooks\/keycrm\/shop\?token=[0-9a-f]{64}$/);
  await shot(page, 'settings-project');
  await page.fill('[data-field="keycrm.base_url"]', 'ftp://example');
  await page.click('form[data-part=project] button[type=submit]');
  await expectFieldError(page, 'keycrm.base_url');
  await page.fill('[data-field="groups.4"]', 'Доставка');
  await page.click('form[data-part=groups] button[type=submit]');
  await page.waitForSelector('form[data-part=groups] [role=status]');
});

test('a viewer sees no settings and no override switch, and the API refuses them anyway', async (t) => {
  const page = await session(t);
  await login(page, 'viewer');
  await page.goto(BASE + '/p/shop?order=990001');
  await page.waitForSelector('[data-timeline="990001"] [data-totals=groups]');
  assert.equal(await page.$('[data-override]'), null, 'no override editor');
  assert.equal(await page.locator('.main-nav a', { hasText: 'Налаштування' }).count(), 0, 'no settings link');
  assert.equal(await page.locator('.main-nav a', { hasText: 'Користувачі' }).count(), 0, 'no users link');
  await shot(page, 'viewer-dashboard');
  await page.goto(BASE + '/p/shop/settings');
  await page.waitForSelector('h1');
  assert.equal(await page.$('form.settings-form'), null);
  const origin = { origin: BASE };
  const sla = await page.request.put(BASE + '/api/settings/sla?project=shop', { data: { sla: {} }, headers: origin });
  assert.equal(sla.status(), 403);
  const read = await page.request.get(BASE + '/api/settings?project=shop');
  assert.equal(read.status(), 403);
  const override = await page.request.put(BASE + '/api/orders/990001/override?project=shop', { data: { is_urgent: true }, headers: origin });
  assert.equal(override.status(), 403);
});

test('an admin overrides an order’s urgency from the panel', async (t) => {
  const page = await session(t);
  await login(page, 'admin');
  await page.goto(BASE + '/p/shop?order=990001');
  await page.waitForSelector('[data-override]');
  await page.selectOption('[data-override] select[name=is_urgent]', 'true');
  await page.click('[data-override] button[type=submit]');
  await page.waitForSelector('[data-order-id="990001"] .urgency-urgent', { timeout: 15_000 });
  await page.selectOption('[data-override] select[name=is_urgent]', '');
  await page.click('[data-override] button[type=submit]');
  await page.waitForSelector('[data-override] [role=status]');
});

test('users, my account and the audit log work; English and the light theme by a switch', async (t) => {
  const page = await session(t);
  await login(page, 'admin');
  await page.goto(BASE + '/users');
  await page.waitForSelector('[data-users]');
  await page.fill('input[name=new_login]', 'ops');
  await page.selectOption('select[name="role.shop"]', 'viewer');
  await page.click('form.add-user button[type=submit]');
  await page.waitForSelector('[data-user=ops]');
  assert.ok((await page.inputValue('.shown-once input')).length >= 12, 'the generated password is shown once');
  await shot(page, 'users');
  await page.goto(BASE + '/account');
  await page.fill('input[name=token_name]', 'ui test');
  await page.click('[data-tokens] button[type=submit]');
  await page.waitForSelector('[data-token="ui test"]');
  assert.match(await page.inputValue('.shown-once input'), /^ksa_/);
  await shot(page, 'account');
  await page.goto(BASE + '/audit');
  await page.waitForSelector('[data-audit] tr[data-audit-id]');
  await shot(page, 'audit');
  await page.goto(BASE + '/p/shop');
  await page.click('.tools button:has-text("EN")');
  await page.click('.tools button[aria-label="Тема"], .tools button[aria-label="Theme"]');
  await page.waitForSelector('html[lang=en][data-theme=light]');
  await page.waitForSelector('[data-order-id]');
  assert.match(await page.textContent('.main-nav'), /Orders/);
  await shot(page, 'dashboard-en-light');
});

test('webhooks: an owner sees today’s row of the project with a duplicate, the latency and the last refusal; a viewer has no such page', async (t) => {
  await webhook(990101, 1, 1, ago(30), ago(40));
  await webhook(990101, 1, 1, ago(30), ago(40));
  const refused = await fetch(`${BASE}/webhooks/keycrm/shop?token=not-the-secret`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(FIXTURE),
  });
  assert.equal(refused.status, 401);
  const page = await session(t, { expect: ['400 GET /api/webhooks/stats'] });
  await login(page, 'admin');
  await page.click('.main-nav a[href="/webhooks"]');
  await page.waitForURL(BASE + '/webhooks');
  const day = new Intl.DateTimeFormat('en-CA', { timeZone: 'Europe/Kyiv', year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date());
  const row = `[data-webhook-project=shop] [data-webhook-day="${day}"]`;
  // Ingest saves its counters every 5 s: the refusal shows up within a few reloads.
  for (let i = 0; i < 30 && !(await page.$(`${row} [data-refusal-reason=unauthorized]`)); i++) {
    await page.waitForTimeout(1000);
    await page.reload();
    await page.waitForSelector('[data-webhook-stats], [data-empty]');
  }
  await page.waitForSelector(`${row} [data-refusal-reason=unauthorized]`, { timeout: 1000 });
  const count = async (outcome) => Number((await page.textContent(`${row} [data-outcome=${outcome}]`)).replace(/\D/g, ''));
  assert.ok((await count('accepted')) >= 1, 'the webhooks posted today are counted');
  assert.ok((await count('duplicate')) >= 1, 'the webhook posted twice is a duplicate');
  assert.match(await page.textContent(`${row} [data-reason=unauthorized]`), /хибний або відсутній секрет: 1/);
  assert.match(await page.textContent(`${row} [data-p50]`), /^≤ [\d,]+ мс$/);
  assert.match(await page.textContent(`${row} [data-duplicate-share]`), /\d %$/);
  await shot(page, 'webhooks', { fullPage: true });
  await page.selectOption('select[name=webhooks-project]', 'shop');
  await page.waitForURL(/\/webhooks\?project=shop/);
  await page.fill('input[name=from]', '2026-01-01');
  await page.fill('input[name=to]', '2025-01-01');
  await page.dispatchEvent('input[name=to]', 'change');
  await page.waitForSelector('[data-error-for=to]');

  const viewer = await session(t);
  await login(viewer, 'viewer');
  await viewer.waitForSelector('[data-project=shop]');
  assert.equal(await viewer.locator('.main-nav a[href="/webhooks"]').count(), 0, 'no webhooks link for a viewer');
  const api = await viewer.request.get(BASE + '/api/webhooks/stats?project=shop');
  assert.equal(api.status(), 403);
});

test('csv: the dashboard links its filtered view as a CSV file', async (t) => {
  const page = await session(t);
  await login(page, 'admin');
  await page.goto(BASE + '/p/shop?sla=over');
  await page.waitForSelector('[data-csv]');
  const href = await page.getAttribute('[data-csv]', 'href');
  assert.match(href || '', /^\/api\/orders\.csv\?.*sla=over/, 'the link carries the view’s filters');
  const csv = await page.request.get(BASE + href);
  assert.equal(csv.status(), 200);
  assert.match(csv.headers()['content-disposition'] || '', /orders-shop-\d{4}-\d{2}-\d{2}_\d{4}\.csv/);
  const lines = (await csv.text()).trim().split('\n');
  assert.match(lines[0], /^order_id,/);
  assert.ok(lines.length > 1, 'the file has the orders over their limit');
});

const ANALYTICS = ['stages', 'cycles', 'sla', 'throughput'];

/** A date (`YYYY-MM-DD`) in the project's zone. */
const kyivDate = (at) => new Intl.DateTimeFormat('en-CA', { timeZone: 'Europe/Kyiv', year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date(at));

/**
 * The period the generated orders lie in: from the first order's creation to today, once every
 * analytics query has rows for it (the facts are written as the processor goes).
 */
async function generatedPeriod(page) {
  const orders = (await (await page.request.get(BASE + '/api/orders?project=shop&limit=500&sort=created')).json()).orders;
  assert.ok(orders.length > 0, 'the generated project has orders');
  const period = { from: kyivDate(orders[0].started_at), to: kyivDate(Date.now()) };
  for (const query of ANALYTICS) {
    let rows = 0;
    for (let i = 0; i < 100 && rows === 0; i++) {
      const answer = await page.request.get(`${BASE}/api/analytics/${query}?project=shop&from=${period.from}&to=${period.to}`);
      assert.equal(answer.status(), 200, `${query}: ${await answer.text()}`);
      rows = (await answer.json()).rows.length;
      if (rows === 0) await page.waitForTimeout(200);
    }
    assert.ok(rows > 0, `${query} has rows for ${period.from}..${period.to}`);
  }
  return period;
}

/** Waits until every analytics card has its answer for the view (none is loading). */
async function analyticsLoaded(page) {
  await page.waitForFunction((ids) => ids.every((id) => document.querySelector(`[data-analytics=${id}][aria-busy=false] .chart canvas`)), ANALYTICS);
}

test('analytics: a chart and a table per query over the generated period, the bucket in the URL, CSV links, both themes', async (t) => {
  const page = await session(t);
  await login(page, 'admin');
  const period = await generatedPeriod(page);
  await page.goto(`${BASE}/p/shop`);
  await page.click('.main-nav a:has-text("Аналітика")');
  await page.waitForURL(BASE + '/p/shop/analytics');
  await page.waitForSelector('[data-analytics-page]');
  assert.equal(await page.inputValue('input[name=to]'), period.to, 'the period ends today by default');
  await page.fill('input[name=from]', period.from);
  await page.waitForURL(new RegExp(`from=${period.from}`));
  await analyticsLoaded(page);
  for (const id of ANALYTICS) {
    assert.equal(await page.locator(`[data-analytics=${id}] .chart canvas`).count() > 0, true, `${id} draws a canvas`);
    assert.ok(await page.locator(`[data-table=${id}] tbody tr`).count() > 0, `${id} has table rows`);
    const href = await page.getAttribute(`[data-csv=${id}]`, 'href');
    assert.match(href || '', new RegExp(`^/api/analytics/${id}\\?.*format=csv`), `${id}: the CSV link asks for CSV`);
    assert.match(href || '', new RegExp(`from=${period.from}.*to=${period.to}`), `${id}: the CSV link carries the period`);
  }
  assert.match(await page.textContent('[data-table=stages] tbody'), /\d{2}:\d{2}/, 'durations as the UI shows them');
  const csv = await page.request.get(BASE + await page.getAttribute('[data-csv=stages]', 'href'));
  assert.equal(csv.status(), 200);
  assert.match(csv.headers()['content-disposition'] || '', /stages-shop-\d{4}-\d{2}-\d{2}_\d{4}-\d{2}-\d{2}\.csv/);
  assert.match((await csv.text()).split('\n')[0], /^group_id,/);
  await shot(page, 'analytics', { fullPage: true });

  await page.selectOption('select[name=bucket]', 'week');
  await page.waitForURL(/bucket=week/);
  await page.waitForFunction(() => [...document.querySelectorAll('[data-csv]')].every((a) => a.getAttribute('href').includes('bucket=week')));
  await analyticsLoaded(page);
  assert.ok(await page.locator('[data-table=throughput] tbody tr').count() > 1, 'a row per week');
  await shot(page, 'analytics-week', { fullPage: true });
  await page.goBack();
  await page.waitForURL((url) => !url.search.includes('bucket='));
  assert.equal(await page.inputValue('select[name=bucket]'), 'none');
  assert.match(page.url(), new RegExp(`from=${period.from}`), 'back keeps the period');
  await page.goForward();
  await page.waitForURL(/bucket=week/);
  assert.equal(await page.inputValue('select[name=bucket]'), 'week');
  await analyticsLoaded(page);

  await page.click('.tools button[aria-label="Тема"]');
  await page.waitForSelector('html[data-theme=light]');
  await analyticsLoaded(page);
  await shot(page, 'analytics-light', { fullPage: true });
});

test('analytics: a period with nothing in it says so, a period that ends before it starts is named beside the date, analytics off is said once', async (t) => {
  const page = await session(t, { expect: ['400 GET /api/analytics/', '503 GET /api/analytics/'] });
  await login(page, 'viewer');
  await page.goto(`${BASE}/p/shop/analytics?from=2020-01-01&to=2020-01-31&urgency=split`);
  await page.waitForFunction((n) => document.querySelectorAll('[data-analytics] [data-empty]').length === n, ANALYTICS.length);
  await shot(page, 'analytics-empty');
  await page.goto(`${BASE}/p/shop/analytics?from=2026-05-10&to=2026-05-01`);
  await expectFieldError(page, 'to');
  assert.equal(await page.getAttribute('input[name=to]', 'aria-invalid'), 'true');
  assert.equal((await page.textContent('[data-error-for=to]')).trim(), '«До» має бути пізніше за «Від».', 'the API\'s error, said in Ukrainian');
  assert.equal(await page.getAttribute('[data-error-for=to] div', 'title'), 'to must come after from', 'the API\'s own words stay as a tooltip');
  await shot(page, 'analytics-error');
  // A server whose facts are off answers every analytics query so (scripts/ui-test runs with them on).
  await page.route('**/api/analytics/**', (route) => route.fulfill({
    status: 503, contentType: 'application/json',
    body: JSON.stringify({ error: 'analytics_off', message: 'analytics read the fact tables, and this deployment writes none' }),
  }));
  await page.goto(`${BASE}/p/shop/analytics`);
  await page.waitForSelector('[data-analytics-error=analytics_off]');
  assert.match(await page.textContent('[data-analytics-error]'), /вимкнена/);
  assert.equal(await page.locator('[data-analytics] canvas').count(), 0, 'no chart without analytics');
});

const REPORTS = ['productivity', 'sla', 'success', 'cancellations', 'stage-time', 'custom'];

/** Waits until the report's table (or its "nothing" line) is the answer to the view in the URL. */
async function reportLoaded(page, name, sort) {
  await page.waitForSelector(`[data-report="${name}"][aria-busy=false]${sort ? `[data-sort="${sort}"]` : ''}`);
}

/** The same report asked of the API directly: the rows the page should show first. */
async function reportAnswer(page, name, params) {
  const answer = await page.request.get(`${BASE}/api/reports/${name}?project=shop&limit=500&${params}`);
  assert.equal(answer.status(), 200, `${name}: ${await answer.text()}`);
  return answer.json();
}

/** Opens each report by its tab over the generated period and checks its summary, rows and CSV link. */
async function everyReport(page, who) {
  const period = await generatedPeriod(page);
  await page.goto(`${BASE}/p/shop`);
  await page.click('.main-nav a:has-text("Звіти")');
  await page.waitForURL(BASE + '/p/shop/reports');
  await page.waitForSelector('[data-reports-page]');
  assert.equal(await page.inputValue('input[name=to]'), period.to, 'the period ends today by default');
  await page.fill('input[name=from]', period.from);
  await page.waitForURL(new RegExp(`from=${period.from}`));
  for (const name of REPORTS) {
    await page.click(`[data-report-tab="${name}"]`);
    await page.waitForURL(new RegExp(`report=${name}`));
    await reportLoaded(page, name);
    assert.equal(await page.getAttribute(`[data-report-tab="${name}"]`, 'aria-current'), 'page');
    const params = name === 'custom' ? '' : `from=${period.from}&to=${period.to}`;
    const answer = await reportAnswer(page, name, params);
    assert.ok(answer.total_rows > 0, `${name} has rows over the generated period`);
    const shown = await page.locator(`[data-table="${name}"] tbody tr`).count();
    assert.equal(shown, Math.min(50, answer.total_rows), `${name}: the first page of rows`);
    const key = name === 'stage-time' ? 'group_id' : 'order_id';
    assert.equal(await page.getAttribute(`[data-table="${name}"] tbody tr:first-child td[data-col=${key}]`, 'data-value'),
      String(answer.rows[0][key]), `${name}: the rows in the server's order`);
    assert.ok(await page.locator(`[data-summary="${name}"] .kpi`).count() > 0, `${name} has a summary`);
    assert.match(await page.textContent(`[data-summary="${name}"]`), /\d/, `${name}: the summary has figures`);
    const href = await page.getAttribute(`[data-csv="${name}"]`, 'href');
    assert.match(href || '', new RegExp(`^/api/reports/${name}\\?.*format=csv`), `${name}: the CSV link asks for CSV`);
    if (name !== 'custom') assert.match(href || '', new RegExp(`from=${period.from}.*to=${period.to}`), `${name}: the CSV link carries the period`);
    const csv = await page.request.get(BASE + href);
    assert.equal(csv.status(), 200, `${name}: ${href}`);
    assert.match(csv.headers()['content-disposition'] || '', new RegExp(`${name}-shop-`));
    const lines = (await csv.text()).trim().split('\n');
    assert.equal(lines[0].split(',')[0], answer.columns[0].name, `${name}: the CSV's header`);
    assert.equal(lines.length, 1 + answer.total_rows, `${name}: every row in the CSV`);
    await shot(page, `${who === 'admin' ? '' : 'viewer-'}reports-${name}`, { fullPage: true });
  }
  const text = await page.textContent('[data-table=custom] tbody');
  assert.match(text, /\d{2}\.\d{2}\.20\d{2}/, 'dates carry their year');
  assert.match(text, /\d{2}:\d{2}/, 'durations as the UI shows them');
  assert.notEqual((await page.textContent('[data-table=custom] tbody td[data-col=status]')).trim(), '—',
    'a status the dictionary lacks is named by its number');
}

test('reports: the admin opens each of the six reports: its summary, its rows in the server’s order, a CSV link of the same view', async (t) => {
  const page = await session(t);
  await login(page, 'admin');
  await everyReport(page, 'admin');
});

test('reports: a viewer opens each of the six reports too', async (t) => {
  const page = await session(t);
  await login(page, 'viewer');
  await everyReport(page, 'viewer');
});

/** The values of a column on screen, as numbers (null for an empty cell). */
const columnValues = (page, name, column) => page.$$eval(`[data-table="${name}"] tbody td[data-col="${column}"]`,
  (cells) => cells.map((c) => (c.dataset.value === '' ? null : Number(c.dataset.value))));

/** Whether `values` are in order (nulls last either way, as the API sorts). */
function inOrder(values, descending) {
  const known = values.filter((v) => v !== null);
  assert.deepEqual(values.slice(0, known.length), known, 'nulls come last');
  for (let i = 1; i < known.length; i++) assert.ok(descending ? known[i - 1] >= known[i] : known[i - 1] <= known[i], `${known[i - 1]} then ${known[i]}`);
}

test('reports: a click on a column header sorts on the server, ascending then descending, and the rows and the CSV link follow', async (t) => {
  const page = await session(t);
  await login(page, 'admin');
  await page.goto(`${BASE}/p/shop/reports?report=custom`);
  await reportLoaded(page, 'custom', '-changed_at');
  // The page's own request and answer (working time grows with the clock: another request
  // a moment later may order open orders of different calendars otherwise).
  const answered = (sort) => page.waitForResponse((r) => {
    const url = new URL(r.url());
    return url.pathname === '/api/reports/custom' && url.searchParams.get('sort') === sort && !url.searchParams.has('format');
  });
  for (const [sort, descending] of [['working_seconds', false], ['-working_seconds', true]]) {
    const response = answered(sort);
    await page.click('th[data-col=working_seconds] button.sort');
    const answer = await (await response).json();
    await page.waitForURL(new RegExp(`sort=${sort}(&|$)`));
    await reportLoaded(page, 'custom', sort);
    assert.equal(await page.getAttribute('th[data-col=working_seconds]', 'aria-sort'), descending ? 'descending' : 'ascending');
    inOrder(await columnValues(page, 'custom', 'working_seconds'), descending);
    const ids = await page.$$eval('[data-table=custom] tbody tr', (rows) => rows.map((r) => Number(r.getAttribute('data-order-id'))));
    assert.deepEqual(ids, answer.rows.map((r) => r.order_id), 'the order the server sorted in');
    assert.match(await page.getAttribute('[data-csv=custom]', 'href') || '', new RegExp(`sort=${sort.replace('-', '\\-')}.*format=csv|format=csv.*sort=${sort.replace('-', '\\-')}`));
  }
  await shot(page, 'reports-sorted');
  // A column under a group's header sorts the same way.
  const groupColumn = await page.getAttribute('[data-table=custom] thead th[data-col$="_working_seconds"][data-col^="group_"]', 'data-col');
  assert.ok(groupColumn, 'per-group columns under their group');
  await page.click(`th[data-col="${groupColumn}"] button.sort`);
  await reportLoaded(page, 'custom', groupColumn);
  inOrder(await columnValues(page, 'custom', groupColumn), false);
  await page.goBack();
  await reportLoaded(page, 'custom', '-working_seconds');
  // A facts report: the SLA table by its worst state, descending.
  const period = await generatedPeriod(page);
  await page.goto(`${BASE}/p/shop/reports?report=sla&from=${period.from}`);
  await reportLoaded(page, 'sla', '-worst');
  const request = page.waitForRequest((r) => new URL(r.url()).searchParams.get('sort') === 'created_at');
  await page.click('th[data-col=created_at] button.sort');
  await request;
  await reportLoaded(page, 'sla', 'created_at');
  const created = await page.$$eval('[data-table=sla] tbody td[data-col=created_at]', (cells) => cells.map((c) => Date.parse(c.dataset.value)));
  inOrder(created, false);
});

test('reports: more rows load as the table scrolls, a row opens the order’s timeline, and the page fits a phone', async (t) => {
  const page = await session(t);
  await login(page, 'admin');
  await page.goto(`${BASE}/p/shop/reports?report=custom&sort=order_id`);
  await reportLoaded(page, 'custom', 'order_id');
  const total = (await reportAnswer(page, 'custom', 'sort=order_id')).total_rows;
  assert.ok(total > 50, `more than a page of orders (${total})`);
  assert.equal(await page.locator('[data-table=custom] tbody tr').count(), 50);
  await page.locator('.report-wrap .sentinel').scrollIntoViewIfNeeded();
  await page.waitForFunction((n) => document.querySelectorAll('[data-table=custom] tbody tr').length === n, total);
  const ids = await page.$$eval('[data-table=custom] tbody tr', (rows) => rows.map((r) => Number(r.getAttribute('data-order-id'))));
  assert.equal(new Set(ids).size, total, 'no order shows twice');
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'the next pages continue the sort');
  assert.match(await page.textContent('[data-shown]'), new RegExp(`${total}\\D+${total}`));
  await page.locator('[data-table=custom] tbody tr[data-order-id="990001"] td[data-col=created_at]').click();
  await page.waitForURL(/order=990001/);
  await page.waitForSelector('[data-timeline="990001"] [data-totals=groups]');
  assert.ok(await page.$('[data-table=custom] tr.selected[data-order-id="990001"]'), 'the row of the open order is marked');
  await shot(page, 'reports-timeline');
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !document.querySelector('[data-timeline]'));
  assert.ok(!page.url().includes('order='));

  const period = await generatedPeriod(page);
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${BASE}/p/shop/reports?report=productivity&from=${period.from}`);
  await reportLoaded(page, 'productivity');
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1), 'the page does not scroll sideways');
  await shot(page, 'reports-phone', { fullPage: true });
  const first = await page.getAttribute('[data-table=productivity] tbody tr:first-child', 'data-order-id');
  await page.click('[data-table=productivity] tbody tr:first-child .order-link');
  await page.waitForSelector(`[data-timeline="${first}"] [data-totals=groups]`);
  await shot(page, 'reports-phone-timeline');
});

test('reports: the custom report takes an "as of" instant from its picker, keeps it in the URL, and a bad one is named beside it', async (t) => {
  const page = await session(t, { expect: ['400 GET /api/reports/'] });
  await login(page, 'admin');
  await page.goto(`${BASE}/p/shop/reports?report=custom`);
  await reportLoaded(page, 'custom');
  const local = (days) => page.evaluate((days) => {
    const d = new Date(Date.now() + days * 86_400_000);
    const p = Object.fromEntries(new Intl.DateTimeFormat('en-CA', { timeZone: 'Europe/Kyiv', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).formatToParts(d).map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`;
  }, days);
  await page.fill('[data-reports-page] input[name=as_of]', await local(-1));
  await page.waitForURL(/report=custom.*as_of=|as_of=.*report=custom/);
  const asOf = new URL(page.url()).searchParams.get('as_of');
  await reportLoaded(page, 'custom');
  const frozen = await reportAnswer(page, 'custom', `as_of=${encodeURIComponent(asOf)}`);
  assert.equal(await page.locator('[data-table=custom] tbody tr').count(), Math.min(50, frozen.rows.length));
  assert.equal(await page.$('[data-table=custom] tbody tr[data-order-id="990001"]'), null, 'an order that began after the instant is not in the report');
  assert.match(await page.getAttribute('[data-csv=custom]', 'href') || '', /as_of=/, 'the CSV is of the same instant');
  await shot(page, 'reports-custom-as-of');
  await page.fill('[data-reports-page] input[name=as_of]', await local(3));
  await expectFieldError(page, 'as_of');
  assert.match(await page.textContent('[data-error-for=as_of]'), /більш ніж на добу в майбутньому/);
  await page.click('[data-reports-page] .as-of button');
  await page.waitForFunction(() => !location.search.includes('as_of'));
  await reportLoaded(page, 'custom');
});

test('reports: English and the light theme by the switches; a period that ends before it starts is named beside the date; a bad sort is said with a way back', async (t) => {
  const page = await session(t, { expect: ['400 GET /api/reports/'] });
  await login(page, 'admin');
  const period = await generatedPeriod(page);
  await page.goto(`${BASE}/p/shop/reports?report=stage-time&from=${period.from}`);
  await reportLoaded(page, 'stage-time');
  await page.click('.tools button:has-text("EN")');
  await page.click('.tools button[aria-label="Тема"], .tools button[aria-label="Theme"]');
  await page.waitForSelector('html[lang=en][data-theme=light]');
  assert.match(await page.textContent('.report-tabs'), /Over the limit/);
  assert.match(await page.textContent('[data-table=stage-time] thead'), /Median, working/);
  await shot(page, 'reports-en-light', { fullPage: true });
  await page.click('[data-report-tab=success]');
  await reportLoaded(page, 'success');
  await shot(page, 'reports-success-en-light', { fullPage: true });
  await page.click('.tools button:has-text("УК")');
  await page.click('.tools button[aria-label="Theme"], .tools button[aria-label="Тема"]');
  await page.waitForSelector('html[lang=uk][data-theme=dark]');

  await page.goto(`${BASE}/p/shop/reports?report=cancellations&from=2026-05-10&to=2026-05-01`);
  await expectFieldError(page, 'to');
  assert.equal(await page.getAttribute('input[name=to]', 'aria-invalid'), 'true');
  await shot(page, 'reports-error');
  await page.goto(`${BASE}/p/shop/reports?report=sla&sort=speed`);
  await page.waitForSelector('[data-report-error=sort]');
  assert.match(await page.textContent('[data-report-error=sort]'), /За «speed» сортувати не можна; оберіть один зі стовпців: .*worst/, 'the message, in Ukrainian, lists the columns');
  await page.click('[data-report-error=sort] button');
  await reportLoaded(page, 'sla', '-worst');
  assert.ok(!page.url().includes('sort='));
});
