// The wholesale portals in a real browser: a partner (/partner/) and an
// admin (/admin/) in separate browser contexts against one server, checking
// that what one does reaches the other live, that errors read well, that a
// partner cannot see the admin portal's data, and that the partner portal
// keeps working offline (cached data marked stale, an order placed offline
// sent once when the server is back). Every page is screenshotted at
// 1280x800 and 375 px wide (build/screenshots/wholesale-*.png).
//
//   node --test --test-concurrency=1 tests/browser/wholesale.test.mjs
//
// Runs against build/livedb (pages built in): rebuild after editing pages.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  launch, openPage, screenshot, screenshots, startServer, login, sleep, DESKTOP, PHONE, freePort, ok, within, noProblems, finish,
  signInPage,
} from './lib.mjs';

const PARTNER = { email: 'north@test.livedb', password: 'partner-password-1', name: 'North Deli' };
const PARTNER2 = { email: 'harbor@test.livedb', password: 'partner-password-2', name: 'Harbor Cafe' };

let srv, browser, port;
const P = {}; // product ids by sku

before(async () => {
  // A fixed port: stop() and restart() keep the URL, so that pages and
  // their service worker find the server again.
  port = await freePort();
  // No automatic backups: the dashboard test takes one itself.
  srv = await startServer({ args: ['--apps', 'wholesale', '--listen', `127.0.0.1:${port}`, '--backup-interval', '0'] });
  for (const a of [PARTNER, PARTNER2]) {
    await ok(await srv.req('POST', '/v1/accounts', { body: { ...a, role: 'partner' } }), `account ${a.email}`);
  }
  const products = [
    ['OIL-001', 'Olive oil 5 l', 'pantry', 'can', 4250, 40],
    ['RICE-010', 'Basmati rice 10 kg', 'pantry', 'bag', 2899, 25],
    ['COF-250', 'Espresso beans 1 kg', 'drinks', 'bag', 1890, 60],
    ['TEA-100', 'Green tea, 100 bags', 'drinks', 'box', 890, 45],
    ['CHE-002', 'Aged cheddar 2 kg', 'dairy', 'wheel', 3680, 9],
    ['MLK-012', 'Whole milk 12 x 1 l', 'dairy', 'case', 1440, 30],
    ['CRO-040', 'Butter croissants, 40', 'bakery', 'case', 2880, 10],
    ['AVO-048', 'Avocados, 48', 'produce', 'box', 3840, 4],
  ];
  for (const [sku, name, category, unit, price_cents, stock] of products) {
    const d = await ok(await srv.req('POST', '/v1/c/products', {
      body: { sku, name, category, unit, price_cents, stock, active: true },
    }), `product ${sku}`);
    P[sku] = d.id;
  }
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

// ------------------------------------------------------------ helpers

// Opens a portal in ctx and signs in through the form; resolves when the
// portal is live.
async function signIn(ctx, path, who, { viewport, shot } = {}) {
  const page = await signInPage(ctx, srv, path, who, { viewport, shot: shot && ((pg) => shots(pg, shot)) });
  await waitLive(page);
  return page;
}

// A page of a context that is already signed in (the session is shared).
async function open(ctx, path, viewport = DESKTOP) {
  const page = await openPage(ctx, srv, path, { viewport });
  await page.waitForSelector('#app', { state: 'visible' });
  await waitLive(page);
  return page;
}

const waitLive = (page, timeout = 10_000) =>
  page.waitForSelector('#conn[data-state="live"]', { timeout });

const shots = (page, name, opts) => screenshots(page, `wholesale-${name}`, opts);

const card = (sku) => `.product[data-id="${P[sku]}"]`;

async function addToCart(page, sku, qty) {
  await page.fill(`${card(sku)} .qty-input`, String(qty));
  await page.click(`${card(sku)} .add`);
}

async function stockOf(sku) {
  const r = await srv.req('GET', `/v1/c/products/${P[sku]}`);
  return r.json.stock;
}

// ------------------------------------------------------------ tests

test('sign-in pages, and a partner order reaches the admin within 1 s with the chime and the unread count', async (t) => {
  const actx = await browser.newContext();
  const pctx = await browser.newContext();
  const admin = await signIn(actx, '/admin/', { email: 'admin@test.livedb', password: 'admin-password-1' }, { shot: 'admin-login' });
  const partner = await signIn(pctx, '/partner/', PARTNER, { shot: 'partner-login' });
  await partner.waitForSelector(card('OIL-001'));
  await admin.waitForSelector('#feed-empty', { state: 'visible' });
  assert.equal(await admin.evaluate(() => document.title), 'Admin · Wholesale');
  const chimes = await admin.evaluate(() => window.__chimes);

  await addToCart(partner, 'OIL-001', 2);
  await addToCart(partner, 'COF-250', 3);
  assert.equal(await partner.textContent('#cart-badge'), '5');
  await partner.fill('#cart-notes', 'Back door, before 9');
  const t0 = Date.now();
  await partner.click('#checkout');
  const ms = await within(admin, t0, (n) => window.__chimes > n && document.querySelector('.feed-item.unread'), chimes);
  t.diagnostic(`the admin saw the order ${ms} ms after the partner clicked Place order`);
  assert.ok(ms < 1000, `the admin saw the order after ${ms} ms`);
  assert.equal(await admin.evaluate(() => window.__chimes), chimes + 1, 'one chime');
  assert.equal((await admin.textContent('#unread-badge')).trim(), '1');
  assert.equal(await admin.evaluate(() => document.title), '(1) Admin · Wholesale');
  const row = await admin.textContent('.feed-item.unread');
  assert.match(row, /North Deli/);
  assert.match(row, /\$141\.70/); // 2 x 42.50 + 3 x 18.90, priced by the server
  await admin.waitForSelector('.toast >> text=New order');

  // The partner's side: a confirmation, an empty cart, stock taken.
  await partner.waitForSelector('.toast >> text=placed');
  assert.equal(await partner.isHidden('#cart-badge'), true);
  assert.equal(await stockOf('OIL-001'), 38);
  await partner.waitForSelector(`${card('OIL-001')} .p-stock >> text=38 in stock`);
  await shots(partner, 'partner-catalog');

  // Opening the order reads it: the count and the title clear.
  await shots(admin, 'admin-orders-new');
  await admin.click('.feed-item.unread .feed-btn');
  await admin.waitForSelector('#detail-body h2');
  assert.equal(await admin.isHidden('#unread-badge'), true);
  assert.equal(await admin.evaluate(() => document.title), 'Admin · Wholesale');
  assert.match(await admin.textContent('#detail-body'), /Back door, before 9/);
  await shots(admin, 'admin-order-detail', { view: true });
  await admin.setViewportSize(PHONE);
  await sleep(300);
  await admin.click('#detail-body .detail-close');
  await admin.setViewportSize(DESKTOP);

  // The admin in the partner portal is pointed to its own.
  const wrong = await openPage(actx, srv, '/partner/', { viewport: DESKTOP });
  await wrong.waitForSelector('#not-partner', { state: 'visible' });
  assert.equal(await wrong.isHidden('#app'), true);
  await shots(wrong, 'partner-not-partner');
  noProblems(wrong);

  await finish([admin, partner], actx, pctx);
});

test('an admin price change shows on the partner page within 1 s, highlighted; stock edits too', async (t) => {
  const actx = await browser.newContext();
  const pctx = await browser.newContext();
  const admin = await signIn(actx, '/admin/', { email: 'admin@test.livedb', password: 'admin-password-1' });
  const partner = await signIn(pctx, '/partner/', PARTNER);
  await partner.waitForSelector(card('RICE-010'));
  assert.equal(await partner.textContent(`${card('RICE-010')} .p-price`), '$28.99');

  await admin.click('#tab-inventory');
  const row = `#inv-body tr[data-id="${P['RICE-010']}"]`;
  await admin.waitForSelector(row);
  await admin.fill(`${row} .price-edit`, '31.50');
  const t0 = Date.now();
  await admin.press(`${row} .price-edit`, 'Enter');
  const ms = await within(partner, t0, (sel) => {
    const c = document.querySelector(sel);
    return c && c.querySelector('.p-price').textContent === '$31.50' && c.classList.contains('flash');
  }, card('RICE-010'));
  t.diagnostic(`the partner saw the new price ${ms} ms after the admin pressed Enter`);
  assert.ok(ms < 1000, `the partner saw the price after ${ms} ms`);
  assert.equal(await partner.isVisible(`${card('RICE-010')} .p-was`), true);
  assert.equal(await partner.textContent(`${card('RICE-010')} .p-was`), 'was $28.99');
  await sleep(300);
  const rice = (await srv.req('GET', `/v1/c/products/${P['RICE-010']}`)).json;
  assert.equal(rice.price_cents, 3150);
  assert.equal(rice.version, 2, 'Enter (and the change event after it) is one write');
  assert.equal(await admin.locator('.toast >> text=Price changed').count(), 1);

  // Stock: +10 through the adjust box, then one less with the stepper.
  await admin.fill(`${row} .delta`, '+10');
  await admin.click(`${row} .adjust button`);
  await partner.waitForSelector(`${card('RICE-010')} .p-stock >> text=35 in stock`, { timeout: 2000 });
  await admin.click(`${row} .stepper .step >> nth=0`);
  await partner.waitForSelector(`${card('RICE-010')} .p-stock >> text=34 in stock`, { timeout: 2000 });
  assert.equal(await stockOf('RICE-010'), 34);

  // Low stock is marked on the admin side (AVO-048 has 4).
  assert.equal(await admin.getAttribute(`#inv-body tr[data-id="${P['AVO-048']}"]`, 'data-level'), 'low');
  // Taking more than there is: refused, said so, nothing changed.
  await admin.fill(`#inv-body tr[data-id="${P['AVO-048']}"] .delta`, '-50');
  await admin.press(`#inv-body tr[data-id="${P['AVO-048']}"] .delta`, 'Enter');
  await admin.waitForSelector('.toast[data-kind="error"] >> text=Only 4 in stock');
  assert.equal(await stockOf('AVO-048'), 4);
  await shots(admin, 'admin-inventory');

  await finish([admin, partner], actx, pctx);
});

test('the admin moves an order to shipped; the partner sees the status and a notification', async () => {
  const actx = await browser.newContext();
  const pctx = await browser.newContext();
  const partner = await signIn(pctx, '/partner/', PARTNER);
  const admin = await signIn(actx, '/admin/', { email: 'admin@test.livedb', password: 'admin-password-1' });
  await addToCart(partner, 'TEA-100', 4);
  await partner.click('#checkout');
  await partner.waitForSelector('.toast >> text=placed');
  await partner.click('#tab-orders');
  const first = await partner.getAttribute('#order-list .order', 'data-id');
  assert.equal(await partner.getAttribute('#order-list .order', 'data-status'), 'pending');

  await admin.waitForSelector(`.feed-item[data-id="${first}"]`);
  await admin.click(`.feed-item[data-id="${first}"] .feed-btn`);
  const order = `#order-list .order[data-id="${first}"]`;
  for (const [button, status] of [['Confirm', 'confirmed'], ['Mark packed', 'packed'], ['Mark shipped', 'shipped']]) {
    await admin.click(`.detail-actions button >> text="${button}"`);
    await partner.waitForSelector(`${order}[data-status="${status}"]`, { timeout: 2000 });
    await partner.waitForSelector(`.toast >> text=is ${status}`, { timeout: 2000 });
  }
  assert.match(await partner.textContent(`${order} .status`), /Shipped/);
  assert.match(await partner.textContent('.toasts'), /on its way/);
  assert.equal(await partner.getAttribute(`${order} .track li[aria-current="step"]`, 'class'), 'now');
  // The admin's detail offers only what comes next.
  await admin.waitForSelector('.detail-actions button >> text="Mark delivered"');
  assert.equal(await admin.locator('.detail-actions button').count(), 1);
  await shots(partner, 'partner-orders');

  // A transition that is not allowed is answered, not applied.
  const r = await srv.req('POST', '/v1/fn/set_order_status', { body: { order_id: first, status: 'pending' } });
  assert.equal(r.status, 409);

  await finish([admin, partner], actx, pctx);
});

test('two partner tabs stay in step: orders, stock and the cart', async () => {
  const ctx = await browser.newContext();
  const a = await signIn(ctx, '/partner/', PARTNER2);
  const b = await open(ctx, '/partner/#orders');
  assert.equal(await b.textContent('#who-name'), 'Harbor Cafe');
  const stock = await stockOf('MLK-012');

  // The cart is one per partner: an item added in one tab shows in the other.
  await addToCart(a, 'MLK-012', 2);
  await b.waitForFunction(() => document.querySelector('#cart-badge').textContent === '2' &&
    !document.querySelector('#cart-badge').hidden, null, { timeout: 2000 });

  await a.click('#checkout');
  await a.waitForSelector('.toast >> text=placed');
  await b.waitForSelector('#order-list .order[data-status="pending"]', { timeout: 2000 });
  assert.equal(await b.locator('#order-list .order').count(), 1);
  await b.waitForFunction(() => document.querySelector('#cart-badge').hidden, null, { timeout: 2000 });
  await b.click('#tab-catalog');
  await b.waitForSelector(`${card('MLK-012')} .p-stock >> text=${stock - 2} in stock`, { timeout: 2000 });

  // Cancelled in tab B (asked twice, on the button): tab A sees it and the stock is back.
  await a.click('#tab-orders');
  await b.click('#tab-orders');
  await b.click('#order-list .order .btn-danger');
  await b.click('#order-list .order .btn-danger >> text="Yes, cancel it"');
  await a.waitForSelector('#order-list .order[data-status="cancelled"]', { timeout: 2000 });
  await a.waitForSelector('.toast >> text=is cancelled');
  assert.equal(await stockOf('MLK-012'), stock);

  await finish([a, b], ctx);
});

test('checkout that asks for more than there is says "only N left" and offers to fix it', async () => {
  const ctx = await browser.newContext();
  const partner = await signIn(ctx, '/partner/', PARTNER2, { viewport: PHONE });
  await addToCart(partner, 'CRO-040', 5);
  await addToCart(partner, 'COF-250', 1);
  // Someone else buys most of it before this partner checks out.
  await ok(await srv.req('POST', '/v1/fn/adjust_inventory', { body: { product_id: P['CRO-040'], delta: -7 } }), 'adjust');
  await partner.waitForSelector(`${card('CRO-040')} .p-stock >> text=Only 3 left`);
  await partner.click('#cart-bar');
  await partner.waitForSelector('#cart.open');
  await sleep(300);
  await screenshot(partner, 'wholesale-partner-cart-375', { view: true });
  await partner.click('#checkout');
  await partner.waitForSelector('#cart-error', { state: 'visible' });
  const msg = await partner.textContent('#cart-error');
  assert.match(msg, /Not enough stock/);
  assert.match(msg, /only 3 left \(you asked for 5\)/);
  assert.match(await partner.textContent(`#cart-lines .line[data-id="${P['CRO-040']}"]`), /Only 3 left/);
  await screenshot(partner, 'wholesale-partner-checkout-error-375', { view: true });
  await partner.setViewportSize(DESKTOP);
  await sleep(300);
  await partner.evaluate(() => window.scrollTo(0, 0));
  await screenshot(partner, 'wholesale-partner-checkout-error-desktop', { view: true });
  await partner.setViewportSize(PHONE);
  await sleep(300);
  assert.equal(await stockOf('CRO-040'), 3, 'a refused order takes nothing');

  await partner.click('#cart-bar'); // the sheet closed when the window changed size
  await partner.click('#cart-error .fix');
  assert.equal(await partner.inputValue(`#cart-lines .line[data-id="${P['CRO-040']}"] .qty-input`), '3');
  await partner.click('#checkout');
  await partner.waitForSelector('.toast >> text=placed');
  assert.equal(await stockOf('CRO-040'), 0);
  await partner.waitForSelector(`${card('CRO-040')} .p-stock >> text=Out of stock`);

  await finish([partner], ctx);
});

test('a partner cannot see the admin portal or its data', async () => {
  const ctx = await browser.newContext();
  await signIn(ctx, '/partner/', PARTNER);
  const page = await openPage(ctx, srv, '/admin/', { viewport: DESKTOP });
  await page.waitForSelector('#forbidden', { state: 'visible' });
  assert.equal(await page.isHidden('#app'), true);
  assert.equal(await page.locator('.feed-item').count(), 0);
  assert.match(await page.textContent('#forbidden'), /North Deli \(partner\)/);
  await shots(page, 'admin-forbidden');
  // The server refuses what the admin portal reads.
  const codes = await page.evaluate(async () => {
    const db = window.__portal.db;
    const sub = (col) => new Promise((res) => {
      const stop = db.collection(col).onSnapshot(() => { stop(); res('data'); }, (e) => { stop(); res(e.code); });
    });
    return { presence: await sub('_presence'), activity: await sub('_activity') };
  });
  assert.deepEqual(codes, { presence: 'forbidden', activity: 'forbidden' });
  const { token } = await login(srv, PARTNER.email, PARTNER.password);
  const auth = { headers: { Authorization: `Bearer ${token}` } };
  assert.equal((await srv.req('GET', '/v1/activity', auth)).status, 403);
  assert.equal((await srv.req('GET', '/v1/accounts', auth)).status, 403);
  assert.equal((await srv.req('POST', '/v1/fn/set_price', { ...auth, body: { product_id: P['OIL-001'], price_cents: 1 } })).status, 403);
  const mine = await srv.req('GET', '/v1/c/orders', auth);
  const me = (await srv.req('GET', '/v1/auth/me', auth)).json.account.id;
  assert.ok(mine.json.docs.length > 0 && mine.json.docs.every((o) => o.partner_id === me), 'only its own orders');
  await finish([page], ctx);
});

test('a partner whose account is disabled is signed out of the open page', async () => {
  const who = { email: 'grove@test.livedb', password: 'partner-password-3', name: 'Grove Market' };
  const acct = await ok(await srv.req('POST', '/v1/accounts', { body: { ...who, role: 'partner' } }), 'account');
  const ctx = await browser.newContext();
  const page = await signIn(ctx, '/partner/', who, { viewport: PHONE });
  await page.waitForSelector(card('OIL-001'));
  await ok(await srv.req('PATCH', `/v1/accounts/${acct.id}`, { body: { disabled: true } }), 'disable');
  await page.waitForSelector('#login', { state: 'visible', timeout: 5000 });
  assert.match(await page.textContent('#login-error'), /session has ended/);
  assert.equal(await page.isHidden('#app'), true);
  assert.equal(await page.locator('.product').count(), 0, 'nothing of the session stays on screen');
  // The server's 401 to the session check is the one console error expected.
  assert.deepEqual(page.problems.filter((p) => !/status of 401/.test(p)), []);
  await ctx.close();
});

test('the admin dashboard: charts, partners online, live activity, system health', async () => {
  const actx = await browser.newContext();
  const pctx = await browser.newContext();
  const partner = await signIn(pctx, '/partner/', PARTNER);
  const admin = await signIn(actx, '/admin/', { email: 'admin@test.livedb', password: 'admin-password-1' });
  await admin.click('#tab-dashboard');
  // Partners online (presence): North Deli, browsing the catalog.
  await admin.waitForSelector('#online li >> text=North Deli');
  assert.match(await admin.textContent('#online'), /the catalog/);
  // A presence update (the partner moves to its orders) shows too.
  await partner.click('#tab-orders');
  await admin.waitForSelector('#online li >> text=their orders', { timeout: 2000 });
  // The activity stream, live: a page error on the partner side shows and is counted.
  await partner.evaluate(() => window.__portal.db.report('client_error', { message: 'test: a page error' }));
  await admin.waitForSelector('#activity li[data-action="client_error"]', { timeout: 5000 });
  // Charts exist and carry the orders placed so far.
  const charts = await admin.evaluate(() => ['chart-opm', 'chart-rev', 'chart-top', 'chart-err'].map((id) => {
    const c = window.Chart.getChart(document.getElementById(id));
    return c ? c.data.datasets[0].data.reduce((a, b) => a + b, 0) : null;
  }));
  assert.ok(charts.every((v) => v !== null), 'four charts');
  assert.ok(charts[0] >= 3, 'orders per minute counts the orders');
  assert.ok(charts[2] > 0, 'top products');
  await admin.waitForFunction(() => window.Chart.getChart(document.getElementById('chart-err')).data.datasets[0].data.some((v) => v > 0), null, { timeout: 6000 });
  // Health: figures from /v1/health and /metrics; no backups here yet.
  await admin.waitForSelector('#health .hrow >> text=Commit latency');
  await admin.waitForFunction(() => /Server error rate\s*\d/.test(document.querySelector('#health').textContent), null, { timeout: 12_000 });
  const health = await admin.textContent('#health');
  assert.match(health, /Connections\s*[1-9]/);
  assert.match(health, /Backup age\s*No backups yet/);
  assert.equal(await admin.textContent('#health-status'), 'All good');
  // A backup taken now shows its age at the next refresh (every 5 s).
  await ok(await srv.req('POST', '/v1/admin/backups'), 'backup');
  await admin.waitForFunction(() => /Backup age\s*\d+ s/.test(document.querySelector('#health').textContent), null, { timeout: 8000 });
  assert.notEqual(await admin.textContent('#kpi-orders'), '0');
  await shots(admin, 'admin-dashboard');
  await finish([admin, partner], actx, pctx);
});

test('offline: a reload without the server shows cached data marked stale; an order placed offline is sent once', async () => {
  const ctx = await browser.newContext();
  const page = await signIn(ctx, '/partner/', PARTNER);
  await page.waitForSelector(card('OIL-001'));
  // The page files are kept by the service worker; the data by the SDK's cache.
  await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  await sleep(1000);
  const stock = await stockOf('TEA-100');
  const before = (await srv.req('GET', `/v1/c/orders?limit=1000`)).json.docs.length;

  await srv.stop();
  await page.waitForSelector('#conn:not([data-state="live"])', { timeout: 10_000 });
  await page.waitForSelector('#stale', { state: 'visible' });
  await page.reload();
  await page.waitForSelector('#app', { state: 'visible' });
  await page.waitForSelector(card('OIL-001'));
  await page.waitForSelector('#stale', { state: 'visible' });
  assert.match(await page.textContent('#stale'), /out of date|offline|Connect/i);
  assert.equal(await page.locator('#products.stale-mark').count(), 1, 'the catalog is marked stale');
  assert.match(await page.textContent('#catalog-stale'), /Saved copy/);
  assert.notEqual(await page.getAttribute('#conn', 'data-state'), 'live');
  assert.equal(await page.textContent(`${card('TEA-100')} .p-price`), '$8.90');
  await shots(page, 'partner-offline-catalog');

  // Order while offline: kept on the device, said so.
  await addToCart(page, 'TEA-100', 3);
  assert.match(await page.textContent('#checkout'), /sends when online/);
  await page.click('#checkout');
  await page.waitForSelector('.toast >> text=Order saved on this device');
  await page.waitForSelector('#queued', { state: 'visible' });
  assert.match(await page.textContent('#queued'), /1 order is saved/);
  await page.click('#tab-orders');
  await page.waitForSelector('#pending-sends .order.queued');
  await shots(page, 'partner-offline-orders');
  await page.click('#tab-catalog');

  // The server comes back: the order goes, once.
  await srv.restart();
  await waitLive(page, 25_000);
  await page.waitForSelector('.toast >> text=sent', { timeout: 10_000 });
  await page.waitForSelector('#queued', { state: 'hidden' });
  await page.waitForSelector('#stale', { state: 'hidden' });
  assert.equal(await page.isHidden('#catalog-stale'), true);
  await sleep(1500); // a second send would have landed by now
  const after = (await srv.req('GET', `/v1/c/orders?limit=1000`)).json.docs;
  assert.equal(after.length, before + 1, 'exactly one new order');
  assert.equal(await stockOf('TEA-100'), stock - 3);
  await page.waitForSelector(`${card('TEA-100')} .p-stock >> text=${stock - 3} in stock`);
  // This test stopped the server on purpose: the failed connections it
  // caused are the only console errors allowed.
  const unexpected = page.problems.filter((p) => !/ERR_CONNECTION_REFUSED|WebSocket|Failed to load resource|net::ERR/i.test(p));
  assert.deepEqual(unexpected, []);
  await ctx.close();
});
