// End-to-end scenarios of the /account page in headless Chromium, driven by playwright-core.
//
// Started by crates/app/tests/browser.rs, which spawns the servers, passes their URLs and the
// values to type in the environment, and checks the database afterwards. Run alone with the same
// variables set: `node --test account.test.js`.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`environment variable ${name} is required (see crates/app/tests/browser.rs)`);
  return value;
}

const BASE = env('BASE_URL');
const NO_KEY_BASE = env('NO_KEY_BASE_URL');
const EXTERNAL_BASE = env('EXTERNAL_BASE_URL');
const EXTERNAL_TOKEN = env('EXTERNAL_TOKEN');
const JWT_SECRET = env('JWT_SECRET');
const SCREENSHOT_DIR = env('SCREENSHOT_DIR');
const TRADER = env('TRADER_EMAIL');
const PASSWORD = 'Alice-Horse-9-battery';
const V = {
  binanceKey: env('E2E_BINANCE_KEY'),
  binanceSecret: env('E2E_BINANCE_SECRET'),
  ibkrKey: env('E2E_IBKR_KEY'),
  ibkrSecret: env('E2E_IBKR_SECRET'),
  ibkrSecret2: env('E2E_IBKR_SECRET_2'),
  krakenKey: env('E2E_KRAKEN_KEY'),
  krakenSecret: env('E2E_KRAKEN_SECRET'),
  tradingKey: env('E2E_TRADING_KEY'),
  tradingSecret: env('E2E_TRADING_SECRET'),
  tradingSecret2: env('E2E_TRADING_SECRET_2')
};
/** The trader of the trading-consent scenarios (browser.rs checks the consent in the database). */
const TRADING_EMAIL = env('TRADING_EMAIL');
const TRADING_PASSWORD = 'Ivan-Horse-9-battery';
const TRADING_SWITCH = { en: 'Allow the platform to trade with this key', fr: 'Autoriser la plateforme à trader avec cette clé' };
const CREDENTIALS = '**/users/me/broker-credentials';
const KEY_NOT_CONFIGURED = 'Broker credentials encryption key is not configured';

/**
 * What a card shows of `value`: the mask of docs/contract.md#masking (bullets for all but the last four
 * characters), shortened by the page to at most eight bullets.
 */
function mask(value) {
  const chars = Array.from(value);
  if (chars.length <= 4) return '•'.repeat(chars.length);
  return '•'.repeat(Math.min(8, chars.length - 4)) + chars.slice(-4).join('');
}

/** An HS256 token signed with the servers' secret that expired a minute ago. */
function expiredToken(kind) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64({ sub: '1', exp: now - 60, iat: now - 1000, type: kind });
  const signature = crypto.createHmac('sha256', JWT_SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${signature}`;
}

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    // playwright gives each launch a fresh temporary user-data-dir.
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync'
    ]
  });
});

after(async () => {
  if (browser) await browser.close();
});

/**
 * A fresh page (own context: no shared memory, storage or cookies). Fails the scenario on a
 * script error or a Content-Security-Policy violation.
 */
async function openPage(t, { base = BASE, locale = 'en-US', viewport = { width: 1280, height: 900 } } = {}) {
  const context = await browser.newContext({ locale, viewport });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`script error: ${error.message}`));
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) problems.push(`CSP: ${message.text()}`);
  });
  page.on('dialog', (dialog) => dialog.accept());
  t.after(async () => {
    await context.close();
    assert.deepEqual(problems, [], 'no script error and no CSP violation');
  });
  const response = await page.goto(`${base}/account`);
  assert.equal(response.status(), 200);
  await page.waitForSelector('#signin-view:not([hidden])');
  return page;
}

const card = (page, broker) => page.locator(`.card[data-broker="${broker}"]`);

async function expectMessage(page, kind, text) {
  const box = page.locator(`#message.${kind}`);
  await box.waitFor();
  await page.waitForFunction(
    ([k, s]) => {
      const el = document.querySelector(`#message.${k}`);
      return el && el.textContent.includes(s);
    },
    [kind, text]
  );
  return box.textContent();
}

async function signIn(page, email, password) {
  await page.fill('#signin-email', email);
  await page.fill('#signin-password', password);
  await page.click('#signin-form button[type=submit]');
}

async function register(page, email, password) {
  await page.fill('#register-email', email);
  await page.fill('#register-password', password);
  await page.click('#register-form button[type=submit]');
}

async function signedIn(page) {
  await page.waitForSelector('#credentials-view:not([hidden])');
  await card(page, 'ibkr').waitFor();
}

async function save(page, broker, { key, secret }) {
  const c = card(page, broker);
  if (key !== undefined) await c.locator('.key-input').fill(key);
  if (secret !== undefined) await c.locator('.secret-input').fill(secret);
  await c.locator('.save').click();
}

async function masks(page, broker) {
  const c = card(page, broker);
  return [await c.locator('.key-mask').textContent(), await c.locator('.secret-mask').textContent()];
}

/** Every input of the page has a label, and no text input holds a typed value. */
async function checkInputs(page) {
  const inputs = await page.$$eval('input', (all) =>
    all.map((i) => ({ id: i.id, type: i.type, labelled: i.labels.length > 0, value: i.value }))
  );
  for (const input of inputs) {
    assert.ok(input.labelled, `input #${input.id} has a <label>`);
    if (input.type !== 'checkbox') assert.equal(input.value, '', `input #${input.id} is empty`);
  }
}

/** The visible text and the DOM never contain a typed key or secret. */
async function checkNoPlaintext(page) {
  const html = await page.content();
  const text = await page.evaluate(() => document.body.innerText);
  for (const [name, value] of Object.entries(V)) {
    assert.ok(!html.includes(value), `${name} is not in the DOM`);
    assert.ok(!text.includes(value), `${name} is not shown`);
  }
}

test('a trader creates an account and manages broker keys', async (t) => {
  const page = await openPage(t);
  assert.equal(await page.getAttribute('html', 'lang'), 'en');
  await checkInputs(page);

  // The password rules are explained when they are not met.
  // (12 characters or more, so that the browser's own minlength check lets it through.)
  await register(page, TRADER, 'only-lowercase-letters');
  const rules = await expectMessage(page, 'error', 'does not follow the rules');
  assert.match(rules, /upper-case letter/);

  await register(page, TRADER, PASSWORD);
  await signedIn(page);
  await expectMessage(page, 'success', 'Your account is ready');
  assert.match(await page.textContent('#whoami'), /alice@example\.com/);
  assert.deepEqual(await masks(page, 'binance'), ['Not set', 'Not set']);
  assert.deepEqual(await masks(page, 'ibkr'), ['Not set', 'Not set']);
  assert.equal(await card(page, 'ibkr').locator('.card-title').textContent(), 'Interactive Brokers');

  // The inputs: never pre-filled, the secret is a password field, no autocomplete.
  const binance = card(page, 'binance');
  assert.equal(await binance.locator('.secret-input').getAttribute('type'), 'password');
  assert.equal(await binance.locator('.secret-input').getAttribute('autocomplete'), 'off');
  assert.equal(await binance.locator('.key-input').getAttribute('autocomplete'), 'off');
  await checkInputs(page);

  // Add a Binance key and secret: shown masked, inputs emptied.
  await save(page, 'binance', { key: V.binanceKey, secret: V.binanceSecret });
  await expectMessage(page, 'success', 'Binance: saved.');
  assert.deepEqual(await masks(page, 'binance'), [mask(V.binanceKey), mask(V.binanceSecret)]);
  assert.equal(await binance.locator('.badge').textContent(), 'Configured');
  assert.notEqual(await binance.locator('.updated-at').textContent(), '—');
  await checkInputs(page);
  await checkNoPlaintext(page);

  // Interactive Brokers: set both, replace only the secret, clear the key, delete.
  const ibkr = card(page, 'ibkr');
  await save(page, 'ibkr', { key: V.ibkrKey, secret: V.ibkrSecret });
  await expectMessage(page, 'success', 'Interactive Brokers: saved.');
  assert.deepEqual(await masks(page, 'ibkr'), [mask(V.ibkrKey), mask(V.ibkrSecret)]);
  await save(page, 'ibkr', { secret: V.ibkrSecret2 });
  await page.waitForFunction(
    (m) => document.querySelector('.card[data-broker="ibkr"] .secret-mask').textContent === m,
    mask(V.ibkrSecret2)
  );
  assert.deepEqual(await masks(page, 'ibkr'), [mask(V.ibkrKey), mask(V.ibkrSecret2)], 'the key is kept');
  await ibkr.locator('.clear-key').click();
  await expectMessage(page, 'success', 'API key cleared');
  assert.deepEqual(await masks(page, 'ibkr'), ['Not set', mask(V.ibkrSecret2)], 'only the key is cleared');
  assert.equal(await ibkr.locator('.badge').textContent(), 'Incomplete');
  assert.ok(await ibkr.locator('.clear-key').isHidden());
  await ibkr.locator('.delete').click();
  await expectMessage(page, 'success', 'Interactive Brokers: deleted.');
  await page.waitForFunction(() =>
    document.querySelector('.card[data-broker="ibkr"] .secret-mask').textContent === 'Not set'
  );
  assert.deepEqual(await masks(page, 'ibkr'), ['Not set', 'Not set'], 'the known broker stays listed');
  assert.ok(await ibkr.locator('.delete').isHidden());

  // Saving nothing says so and sends nothing.
  await ibkr.locator('.save').click();
  await expectMessage(page, 'error', 'Enter a new API key or secret first.');

  // A custom broker.
  await page.fill('#add-broker-input', '  Kraken ');
  await page.click('#add-broker-form button[type=submit]');
  const kraken = card(page, 'kraken');
  await kraken.waitFor();
  assert.equal(await kraken.locator('.badge').textContent(), 'Not saved yet');
  assert.ok(await kraken.locator('.key-input').evaluate((el) => el === document.activeElement), 'focus moves to the new card');
  await save(page, 'kraken', { key: V.krakenKey, secret: V.krakenSecret });
  await expectMessage(page, 'success', 'Kraken: saved.');
  assert.deepEqual(await masks(page, 'kraken'), [mask(V.krakenKey), mask(V.krakenSecret)]);

  // The connection test (against the fake Binance of browser.rs, which accepts any key).
  assert.equal(await binance.locator('.last-test').textContent(), 'Never');
  assert.ok(await ibkr.locator('.test').isHidden(), 'nothing to test without a stored key');
  await binance.locator('.test').click();
  await expectMessage(page, 'success', 'Binance: Connection established.');
  await page.waitForFunction(() =>
    document.querySelector('.card[data-broker="binance"] .last-test').textContent.startsWith('Connection OK')
  );
  await checkNoPlaintext(page);
  await checkInputs(page);

  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'account-page.png'), fullPage: true });

  // French and back.
  await page.click('#lang-switch');
  assert.equal(await page.getAttribute('html', 'lang'), 'fr');
  assert.equal(await page.textContent('#page-title'), 'Clés API des brokers');
  assert.equal(await binance.locator('dt').first().textContent(), 'Clé API');
  assert.equal(await page.textContent('#lang-switch'), 'English');
  assert.equal(await page.textContent('#sign-out'), 'Se déconnecter');
  assert.deepEqual(await masks(page, 'ibkr'), ['Non renseigné', 'Non renseigné']);
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'account-page-fr.png'), fullPage: true });
  await page.click('#lang-switch');
  assert.equal(await page.getAttribute('html', 'lang'), 'en');
  assert.equal(await page.textContent('#page-title'), 'Broker API keys');

  // Sign out: back to the form, nothing of the account left on the page.
  await page.click('#sign-out');
  await expectMessage(page, 'info', 'You are signed out.');
  assert.ok(await page.locator('#credentials-view').isHidden());
  assert.equal(await page.locator('.card').count(), 0);
  assert.ok(!(await page.content()).includes('•'), 'no mask left in the DOM');

  // A wrong password, then the right one.
  await signIn(page, TRADER, 'Wrong-Horse-9-battery');
  await expectMessage(page, 'error', 'Invalid e-mail or password.');
  assert.ok(await page.locator('#credentials-view').isHidden());
  await signIn(page, TRADER, PASSWORD);
  await signedIn(page);
  assert.deepEqual(await masks(page, 'binance'), [mask(V.binanceKey), mask(V.binanceSecret)]);
  assert.deepEqual(await masks(page, 'kraken'), [mask(V.krakenKey), mask(V.krakenSecret)]);
  assert.ok(!page.url().includes('token') && !page.url().includes('?'), 'no token in the URL');
});

test('on a phone-sized screen, by keyboard alone', async (t) => {
  const page = await openPage(t, { viewport: { width: 390, height: 844 } });
  // The e-mail field has the focus on load; Tab and Enter do the rest.
  assert.equal(await page.evaluate(() => document.activeElement.id), 'signin-email');
  await page.keyboard.type(TRADER);
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await signedIn(page);
  await card(page, 'kraken').waitFor();
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 390, `no horizontal scrolling (content is ${width}px wide)`);
  const buttonHeight = await card(page, 'binance').locator('.save').evaluate((el) => el.getBoundingClientRect().height);
  assert.ok(buttonHeight >= 40, 'buttons are large enough to tap');
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'account-page-phone.png'), fullPage: true });
});

test('the language follows the browser: French', async (t) => {
  const page = await openPage(t, { locale: 'fr-FR' });
  assert.equal(await page.getAttribute('html', 'lang'), 'fr');
  assert.equal(await page.textContent('#signin-title'), 'Connexion');
  assert.equal(await page.textContent('label[for="signin-password"]'), 'Mot de passe');
  assert.equal(await page.textContent('#lang-switch'), 'English');
  await signIn(page, 'nobody@example.com', 'Wrong-Horse-9-battery');
  await expectMessage(page, 'error', 'Adresse e-mail ou mot de passe incorrect.');
});

test('an expired access token is renewed, an expired session returns to sign-in', async (t) => {
  const page = await openPage(t);
  await register(page, 'bob@example.com', 'Bob-Horse-9-battery-1');
  await signedIn(page);

  // The access token has expired: the page renews it with the refresh token and carries on.
  let replaced = 0;
  await page.route(CREDENTIALS, async (route) => {
    if (replaced > 0) return route.continue();
    replaced += 1;
    const headers = { ...route.request().headers(), authorization: `Bearer ${expiredToken('access')}` };
    return route.continue({ headers });
  });
  await save(page, 'binance', { key: 'bob-key-00001111' });
  await expectMessage(page, 'success', 'Binance: saved.');
  assert.equal(replaced, 1, 'the first attempt went out with the expired token');
  assert.deepEqual(await masks(page, 'binance'), [mask('bob-key-00001111'), 'Not set']);
  await page.unroute(CREDENTIALS);

  // Both tokens have expired: back to the sign-in form with a message, nothing kept.
  await page.route(CREDENTIALS, (route) =>
    route.continue({ headers: { ...route.request().headers(), authorization: `Bearer ${expiredToken('access')}` } })
  );
  await page.route('**/auth/refresh', (route) =>
    route.continue({ postData: JSON.stringify({ refresh_token: expiredToken('refresh') }) })
  );
  await save(page, 'ibkr', { key: 'bob-ibkr-key-2222', secret: 'bob-ibkr-secret-3333' });
  await expectMessage(page, 'error', 'Your session has expired. Please sign in again.');
  assert.ok(await page.locator('#signin-view').isVisible());
  assert.ok(await page.locator('#credentials-view').isHidden());
  assert.equal(await page.locator('.card').count(), 0);
  assert.ok(!(await page.content()).includes('bob-ibkr'), 'typed values are gone');
});

test('the session survives a reload; signing out ends it on the server', async (t) => {
  const page = await openPage(t);
  await register(page, 'heidi@example.com', 'Heidi-Horse-9-battery-1');
  await signedIn(page);
  const refreshCookie = async () =>
    (await page.context().cookies()).find((cookie) => cookie.name === 'user_service_refresh');
  const first = await refreshCookie();
  assert.ok(first, 'the refresh cookie is set');
  assert.equal(first.httpOnly, true);
  assert.equal(first.secure, true);
  assert.equal(first.sameSite, 'Strict');
  assert.equal(first.path, '/auth');
  assert.equal(await page.evaluate(() => document.cookie), '', 'the script cannot read it');
  assert.deepEqual(await page.evaluate(() => [localStorage.length, sessionStorage.length]), [0, 0]);

  // A reload resumes the session through the cookie (and rotates it).
  await page.reload();
  await signedIn(page);
  assert.ok((await page.textContent('#whoami')).includes('heidi@example.com'));
  const rotated = await refreshCookie();
  assert.notEqual(rotated.value, first.value, 'the refresh token was rotated');

  // Signing out ends the session on the server: the cookie is cleared and the last refresh
  // token no longer works, even for someone who kept a copy.
  await page.click('#sign-out');
  await expectMessage(page, 'info', 'You are signed out.');
  assert.equal(await refreshCookie(), undefined, 'the cookie is cleared');
  const reused = await page.request.post(`${BASE}/auth/refresh`, { data: { refresh_token: rotated.value } });
  assert.equal(reused.status(), 401);

  await page.reload();
  await page.waitForSelector('#signin-view:not([hidden])');
  assert.ok(await page.locator('#credentials-view').isHidden());
});

test('a misconfigured encryption key is explained', async (t) => {
  const page = await openPage(t, { base: NO_KEY_BASE });
  await register(page, 'erin@example.com', 'Erin-Horse-9-battery');
  await page.waitForSelector('#credentials-view:not([hidden])');
  const listed = await expectMessage(page, 'error', KEY_NOT_CONFIGURED);
  assert.match(listed, /encryption key is not configured/);
  assert.deepEqual(await masks(page, 'binance'), ['Not set', 'Not set']);
  // Nothing can be stored until the key is back: the forms say so by being disabled.
  assert.ok(await card(page, 'binance').locator('.key-input').isDisabled());
  assert.ok(await card(page, 'binance').locator('.save').isDisabled());
  assert.ok(await page.locator('#add-broker-input').isDisabled());
  await checkInputs(page);
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'account-page-no-key.png') });
});

for (const [locale, expected] of [
  ['en-US', { mask: 'Stored — unavailable', badge: 'Unavailable', notSet: 'Not set', file: 'account-page-key-outage.png' }],
  ['fr-FR', { mask: 'Enregistrée — indisponible', badge: 'Indisponible', notSet: 'Non renseigné', file: 'account-page-key-outage-fr.png' }],
]) {
  test(`during a key outage stored keys are shown as stored but unavailable (${locale})`, async (t) => {
    const page = await openPage(t, { base: NO_KEY_BASE, locale });
    await signIn(page, env('OUTAGE_EMAIL'), env('OUTAGE_PASSWORD'));
    await page.waitForSelector('#credentials-view:not([hidden])');
    await card(page, 'my-exchange').waitFor();
    const box = page.locator('#message.error');
    await box.waitFor();
    assert.equal((await box.textContent()).split(KEY_NOT_CONFIGURED).length, 2, 'said once');
    assert.deepEqual(await masks(page, 'binance'), [expected.mask, expected.mask]);
    assert.deepEqual(await masks(page, 'my-exchange'), [expected.mask, expected.notSet]);
    assert.equal(await card(page, 'binance').locator('.badge').textContent(), expected.badge);
    for (const broker of ['binance', 'my-exchange', 'ibkr']) {
      const controls = card(page, broker).locator('input, button');
      for (let i = 0; i < (await controls.count()); i++) {
        assert.ok(await controls.nth(i).isDisabled(), `${broker}: control ${i} is disabled`);
      }
    }
    assert.ok(!(await page.content()).includes('dave-'), 'no plaintext');
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, expected.file), fullPage: true });
  });
}

for (const [locale, expected] of [
  ['en-US', { message: 'Kraken: The API key or secret is missing for this broker.', last: 'Key or secret missing', file: 'account-page-test-missing-secret.png' }],
  ['fr-FR', { message: 'Kraken : Clés API manquantes pour ce broker.', last: 'Clé ou secret manquant', file: 'account-page-test-missing-secret-fr.png' }],
]) {
  test(`a connection test without a secret says so, and no test is offered without an adapter (${locale})`, async (t) => {
    const page = await openPage(t, { locale });
    const email = `missing-${locale}@example.com`;
    await register(page, email, 'Frank-Horse-9-battery');
    await signedIn(page);
    await page.fill('#add-broker-input', 'kraken');
    await page.click('#add-broker-form button[type=submit]');
    await card(page, 'kraken').waitFor();
    assert.equal(await card(page, 'kraken').locator('.card-title').textContent(), 'Kraken');
    await save(page, 'kraken', { key: 'frank-kraken-key-1234' });
    await card(page, 'kraken').locator('.test').waitFor();
    await save(page, 'ibkr', { key: 'frank-ibkr-key-1234', secret: 'frank-ibkr-secret-5678' });
    await card(page, 'ibkr').locator('.clear-key').waitFor();
    assert.ok(await card(page, 'ibkr').locator('.test').isHidden(), 'no adapter for IBKR: no test button');
    await card(page, 'kraken').locator('.test').click();
    await expectMessage(page, 'error', expected.message);
    await page.waitForFunction(
      ([text]) => document.querySelector('.card[data-broker="kraken"] .last-test').textContent.includes(text),
      [expected.last]
    );
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, expected.file), fullPage: true });
  });
}

test('a typed key stays in the form when its save fails', async (t) => {
  const page = await openPage(t);
  await register(page, 'grace@example.com', 'Grace-Horse-9-battery');
  await signedIn(page);
  await page.route(CREDENTIALS, (route) =>
    route.request().method() === 'PUT'
      ? route.fulfill({ status: 503, contentType: 'application/json', headers: { 'Retry-After': '1' }, body: '{"detail":"Service unavailable","code":"service_unavailable"}' })
      : route.continue()
  );
  await save(page, 'binance', { key: 'grace-key-1234', secret: 'grace-secret-5678' });
  await expectMessage(page, 'error', 'temporarily unavailable');
  const binance = card(page, 'binance');
  assert.equal(await binance.locator('.key-input').inputValue(), 'grace-key-1234');
  assert.equal(await binance.locator('.secret-input').inputValue(), 'grace-secret-5678');
  await page.unroute(CREDENTIALS);
  await binance.locator('.save').click();
  await expectMessage(page, 'success', 'Binance: saved.');
  assert.equal(await binance.locator('.key-input').inputValue(), '');
  assert.equal(await binance.locator('.secret-input').inputValue(), '');
  assert.deepEqual(await masks(page, 'binance'), [mask('grace-key-1234'), mask('grace-secret-5678')]);
});

test('an entry that cannot be decrypted shows a warning', async (t) => {
  const page = await openPage(t);
  await signIn(page, env('UNDECRYPTABLE_EMAIL'), env('UNDECRYPTABLE_PASSWORD'));
  await signedIn(page);
  const binance = card(page, 'binance');
  await binance.locator('.warning').waitFor();
  assert.match(await binance.locator('.warning').textContent(), /cannot be decrypted/);
  assert.equal(await binance.locator('.badge').textContent(), 'Needs attention');
  assert.equal((await masks(page, 'binance'))[0], 'Unreadable');
  assert.ok(!(await page.content()).includes('gAAAAA'), 'no ciphertext shown');
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'account-page-undecryptable.png') });
});

test('with AUTH_MODE=external the page takes a platform token', async (t) => {
  const page = await openPage(t, { base: EXTERNAL_BASE });
  await page.waitForSelector('#token-panel:not([hidden])');
  assert.ok(await page.locator('#register-panel').isHidden());
  assert.equal(await page.getAttribute('#token-input', 'type'), 'password');
  await page.fill('#token-input', EXTERNAL_TOKEN);
  await page.click('#token-form button[type=submit]');
  await signedIn(page);
  assert.deepEqual(await masks(page, 'binance'), ['Not set', 'Not set']);
  assert.equal(await page.inputValue('#token-input'), '');
});

// ---- trading consent: the owner allows the platform to trade with a stored key, per broker ----

const tradingSwitch = (page, broker, lang = 'en') =>
  card(page, broker).getByRole('switch', { name: TRADING_SWITCH[lang], exact: true });

/** Waits until the card of `broker` states `text` (its trading consent, as the service answered it). */
async function tradingState(page, broker, text) {
  await page.waitForFunction(
    ([b, s]) => {
      const el = document.querySelector(`.card[data-broker="${b}"] .trading-state`);
      return el && !el.closest('[hidden]') && el.textContent === s;
    },
    [broker, text]
  );
}

/** Signs in through the API (its own session, not the page's) and lists the stored credentials by broker. */
async function apiSession(email, password) {
  const login = await fetch(`${BASE}/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Requested-With': 'user-service' },
    body: JSON.stringify({ email, password })
  });
  assert.equal(login.status, 200, 'the API sign-in works');
  const { access_token: token } = await login.json();
  return {
    async list() {
      const answer = await fetch(`${BASE}/users/me/broker-credentials`, { headers: { Authorization: `Bearer ${token}` } });
      assert.equal(answer.status, 200);
      const body = await answer.json();
      return Object.fromEntries(body.credentials.map((c) => [c.broker, c]));
    }
  };
}

/** The body of the next PUT of the credentials (started before the action that sends it). */
function nextPut(page) {
  return page
    .waitForRequest((r) => r.method() === 'PUT' && r.url().endsWith('/users/me/broker-credentials'))
    .then((r) => r.postDataJSON());
}

test('the platform may trade with a key only once its owner allows it, per broker', async (t) => {
  const page = await openPage(t);
  await register(page, TRADING_EMAIL, TRADING_PASSWORD);
  await signedIn(page);
  const binance = card(page, 'binance');
  const ibkr = card(page, 'ibkr');
  await page.waitForFunction(() => document.querySelectorAll('.card').length >= 2);
  assert.equal(await page.getByRole('switch').count(), 0, 'nothing stored: nothing to allow');

  // A freshly stored key: the switch is there, labelled, explained and off.
  await save(page, 'binance', { key: V.tradingKey, secret: V.tradingSecret });
  await expectMessage(page, 'success', 'Binance: saved.');
  const onBinance = tradingSwitch(page, 'binance');
  await onBinance.waitFor();
  assert.equal(await onBinance.isChecked(), false, 'off by default');
  assert.equal(await onBinance.getAttribute('type'), 'checkbox');
  await tradingState(page, 'binance', 'Trading not allowed');
  assert.match(await binance.locator('.trading-hint').textContent(), /the secret never leaves the service/);
  const described = (await onBinance.getAttribute('aria-describedby')).split(' ');
  assert.ok(described.includes(await binance.locator('.trading-hint').getAttribute('id')), 'the hint describes the switch');
  assert.ok(described.includes(await binance.locator('.card-title').getAttribute('id')), 'and names the broker');
  assert.ok(await ibkr.locator('.trading').isHidden(), 'no switch where nothing is stored');
  await checkInputs(page);
  const api = await apiSession(TRADING_EMAIL, TRADING_PASSWORD);
  assert.equal((await api.list()).binance.trading_enabled, false, 'the API says off too');

  // A connection test first: a consent change keeps its result.
  await binance.locator('.test').click();
  await expectMessage(page, 'success', 'Binance: Connection established.');
  await page.waitForFunction(() =>
    document.querySelector('.card[data-broker="binance"] .last-test').textContent.startsWith('Connection OK')
  );

  // On, by keyboard: the consent alone is sent, the switch keeps the focus.
  await onBinance.focus();
  let sent = nextPut(page);
  await page.keyboard.press('Space');
  assert.deepEqual(await sent, { credentials: [{ broker: 'binance', trading_enabled: true }] }, 'no key or secret sent');
  await expectMessage(page, 'success', 'Binance: the platform may now trade with this key.');
  await tradingState(page, 'binance', 'Trading allowed');
  assert.equal(await onBinance.isChecked(), true);
  assert.ok(await onBinance.evaluate((el) => el === document.activeElement), 'the switch keeps the focus');
  assert.ok((await binance.locator('.last-test').textContent()).startsWith('Connection OK'), 'the last test is kept');
  assert.deepEqual(await masks(page, 'binance'), [mask(V.tradingKey), mask(V.tradingSecret)], 'key and secret kept');
  let listed = (await api.list()).binance;
  assert.equal(listed.trading_enabled, true, 'the API says on');
  assert.equal(listed.last_test_status, 'ok');
  await checkInputs(page);

  // Persisted: still on after a reload.
  await page.reload();
  await signedIn(page);
  await onBinance.waitFor();
  await tradingState(page, 'binance', 'Trading allowed');
  assert.equal(await onBinance.isChecked(), true, 'still on after a reload');

  // A failed change puts the switch back where the service has it.
  await page.route(CREDENTIALS, (route) =>
    route.request().method() === 'PUT'
      ? route.fulfill({ status: 503, contentType: 'application/json', headers: { 'Retry-After': '1' }, body: '{"detail":"Service unavailable","code":"service_unavailable"}' })
      : route.continue()
  );
  await onBinance.click();
  await expectMessage(page, 'error', 'temporarily unavailable');
  await tradingState(page, 'binance', 'Trading allowed');
  assert.equal(await onBinance.isChecked(), true, 'back on: the change did not go through');
  await page.unroute(CREDENTIALS);

  // Replacing the secret on the page turns it off, and the page says so.
  await save(page, 'binance', { secret: V.tradingSecret2 });
  await expectMessage(page, 'success', 'Binance: saved. Trading with this key is off again');
  await tradingState(page, 'binance', 'Trading not allowed');
  assert.equal(await onBinance.isChecked(), false, 'a new secret turns it off');
  assert.deepEqual(await masks(page, 'binance'), [mask(V.tradingKey), mask(V.tradingSecret2)]);
  assert.equal((await api.list()).binance.trading_enabled, false, 'the API says off again');
  await checkInputs(page);
  await checkNoPlaintext(page);

  // Per broker: Interactive Brokers on, off and on again; Binance stays off.
  await save(page, 'ibkr', { key: V.ibkrKey, secret: V.ibkrSecret });
  await expectMessage(page, 'success', 'Interactive Brokers: saved.');
  const onIbkr = tradingSwitch(page, 'ibkr');
  await onIbkr.waitFor();
  await tradingState(page, 'ibkr', 'Trading not allowed');
  await onIbkr.click();
  await expectMessage(page, 'success', 'Interactive Brokers: the platform may now trade with this key.');
  await tradingState(page, 'ibkr', 'Trading allowed');
  sent = nextPut(page);
  await ibkr.locator('.trading-label').click();
  assert.deepEqual(await sent, { credentials: [{ broker: 'ibkr', trading_enabled: false }] }, 'the label toggles it too');
  await expectMessage(page, 'success', 'Interactive Brokers: the platform may no longer trade with this key.');
  await tradingState(page, 'ibkr', 'Trading not allowed');
  await onIbkr.click();
  await expectMessage(page, 'success', 'Interactive Brokers: the platform may now trade with this key.');
  await tradingState(page, 'ibkr', 'Trading allowed');
  assert.equal(await onBinance.isChecked(), false, 'Binance is not affected');
  await tradingState(page, 'binance', 'Trading not allowed');
  listed = await api.list();
  assert.equal(listed.ibkr.trading_enabled, true);
  assert.equal(listed.binance.trading_enabled, false);
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'account-page-trading.png'), fullPage: true });
});

test('the trading switch in French', async (t) => {
  const page = await openPage(t, { locale: 'fr-FR' });
  assert.equal(await page.getAttribute('html', 'lang'), 'fr');
  await signIn(page, TRADING_EMAIL, TRADING_PASSWORD);
  await signedIn(page);
  const onBinance = tradingSwitch(page, 'binance', 'fr');
  await onBinance.waitFor();
  await tradingSwitch(page, 'ibkr', 'fr').waitFor();
  await tradingState(page, 'binance', 'Trading non autorisé');
  await tradingState(page, 'ibkr', 'Trading autorisé');
  assert.equal(await onBinance.isChecked(), false);
  assert.equal(await tradingSwitch(page, 'ibkr', 'fr').isChecked(), true);
  assert.match(await card(page, 'binance').locator('.trading-hint').textContent(), /le secret ne quitte jamais le service/);
  await onBinance.click();
  await expectMessage(page, 'success', 'Binance : la plateforme peut désormais trader avec cette clé.');
  await tradingState(page, 'binance', 'Trading autorisé');
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'account-page-trading-fr.png'), fullPage: true });
  await onBinance.click();
  await expectMessage(page, 'success', 'Binance : la plateforme ne peut plus trader avec cette clé.');
  await tradingState(page, 'binance', 'Trading non autorisé');
  // The switch follows the language switch too.
  await page.click('#lang-switch');
  await tradingSwitch(page, 'binance', 'en').waitFor();
  await tradingState(page, 'ibkr', 'Trading allowed');
});
