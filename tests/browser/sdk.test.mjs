// The browser SDK (web/client/livedb.js), driven in Chromium against the
// real server: sessions, listeners, calls, reconnects and resume, the
// offline cache and queue, tabs, the SSE fallback, activity reports.
//
//   node --test --test-concurrency=1 tests/browser/sdk.test.mjs
//
// Pages are the home page (/); the SDK is imported into them with
// page.evaluate. The server serves web/client from the source tree
// (--web-root), so the file under test is the one in the tree.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, openPage, screenshot, startServer, sleep, ADMIN, freePort } from './lib.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WEB = ['--web-root', ROOT];
const PARTNER = { email: 'partner@test.livedb', password: 'partner-password-1', name: 'Pat Partner' };

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

// ---------------------------------------------------------------- helpers

// A server with the wholesale app, a partner account and a few products.
async function wholesale({ port, products = 3 } = {}) {
  const args = ['--apps', 'wholesale', ...WEB];
  if (port) args.push('--listen', `127.0.0.1:${port}`);
  const srv = await startServer({ args });
  const r = await srv.req('POST', '/v1/accounts', { body: { ...PARTNER, role: 'partner' } });
  assert.equal(r.status, 201, r.text);
  srv.partnerId = r.json.id;
  for (let i = 1; i <= products; i++) await addProduct(srv, i);
  return srv;
}

// A test on its own server (start(): wholesale() unless given) and browser
// context, both closed after it, pass or fail: fn(srv, ctx).
function sdkTest(name, fn, start = wholesale) {
  test(name, async () => {
    const srv = await start();
    const ctx = await browser.newContext();
    try {
      await fn(srv, ctx);
    } finally {
      await ctx.close();
      await srv.stop();
    }
  });
}

async function addProduct(srv, i, over = {}) {
  const body = {
    id: `p${i}`, sku: `SKU-${i}`, name: `Product ${i}`, category: i % 2 ? 'oil' : 'flour',
    unit: 'kg', price_cents: 100 * i, stock: 50, active: true, ...over,
  };
  const r = await srv.req('POST', '/v1/c/products', { body });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

// Opens the home page in ctx with the SDK as window.db (logged in as
// `as`, unless null), and in-page recorders:
//   window.states      every 'state' event
//   window.snaps[k]    every snapshot of the listener watched under k (copies)
//   window.events      'queue', 'call', 'auth', 'error' events
async function sdkPage(ctx, srv, { as = ADMIN, name = 'test', transports, opts = {}, restore = false } = {}) {
  const page = await openPage(ctx, srv, '/');
  await page.evaluate(async ({ as, name, transports, opts, restore }) => {
    const { LiveDB, LiveDBError } = await import('/client/livedb.js');
    window.LiveDBError = LiveDBError;
    window.db = new LiveDB({ name, ...(transports ? { transports } : {}), ...opts });
    window.states = [];
    window.snaps = {};
    window.events = [];
    window.unsubs = {};
    db.on('state', (s) => states.push(s));
    for (const ev of ['queue', 'call', 'auth', 'error']) {
      db.on(ev, (...a) => events.push({ ev, args: JSON.parse(JSON.stringify(a)) }));
    }
    window.watch = (k, target) => {
      snaps[k] = [];
      unsubs[k] = target.onSnapshot((s) => snaps[k].push(JSON.parse(JSON.stringify(s))));
    };
    // The ids a listener holds now, and every change it reported.
    window.ids = (k) => { const s = snaps[k].at(-1); return s ? s.docs.map((d) => d.id) : null; };
    window.allChanges = (k) => snaps[k].flatMap((s) => s.changes.map((c) => `${c.op}:${c.id}`));
    if (restore) window.restored = await db.restore();
    else if (as) await db.login(as.email, as.password);
  }, { as, name, transports, opts, restore });
  return page;
}

// What restore() gives a new LiveDB named name in page (closed after).
function restoreIn(page, name) {
  return page.evaluate(async (n) => {
    const { LiveDB } = await import('/client/livedb.js');
    const other = new LiveDB({ name: n });
    const r = await other.restore();
    other.close();
    return r;
  }, name);
}

// Waits until fn(arg), run in the page, is truthy.
async function until(page, fn, timeout = 10_000, arg = null) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (e) {
    const dump = await page.evaluate(() => JSON.stringify({ state: db.state, states, stats: db.stats,
      snaps: Object.fromEntries(Object.entries(snaps).map(([k, v]) => [k, v.slice(-3)])) })).catch(() => '?');
    throw new Error(`timed out waiting for ${fn}\n${dump.slice(0, 3000)}`);
  }
}

const last = (page, k) => page.evaluate((k) => snaps[k].at(-1), k);

// ---------------------------------------------------------------- sessions

sdkTest('login, restore and logout', async (srv, ctx) => {
  const page = await sdkPage(ctx, srv, { as: PARTNER });
  const acct = await page.evaluate(() => db.account);
  assert.equal(acct.email, PARTNER.email);
  assert.equal(acct.role, 'partner');
  assert.equal(acct.name, PARTNER.name);
  assert.equal(acct.id, srv.partnerId);
  await until(page, () => db.state === 'live');

  // A reload takes the session back from localStorage.
  await page.reload();
  await page.evaluate(async () => {
    const { LiveDB, LiveDBError } = await import('/client/livedb.js');
    window.LiveDBError = LiveDBError;
    window.db = new LiveDB({ name: 'test' });
    window.restored = await db.restore();
  });
  assert.equal(await page.evaluate(() => restored.email), PARTNER.email);
  await until(page, () => db.state === 'live');

  // Another name is another namespace: no session there.
  assert.equal(await restoreIn(page, 'elsewhere'), null);

  // Something cached for this account...
  await page.evaluate(() => {
    window.seen = [];
    db.collection('products').onSnapshot((s) => seen.push(s));
  });
  await until(page, () => seen.length && !seen.at(-1).stale);
  await until(page, async () => (await db._store.all('cache')).length === 1);

  // Logout ends the session on the server too.
  const token = await page.evaluate(() => db._token);
  await page.evaluate(async () => {
    window.authEvents = [];
    db.on('auth', (a) => authEvents.push(a));
    await db.logout();
  });
  assert.equal(await page.evaluate(() => db.account), null);
  assert.deepEqual(await page.evaluate(() => authEvents), [null]);
  assert.equal(await page.evaluate(() => db.state), 'offline');
  // ...and the account's cache is gone with it.
  assert.equal(await page.evaluate(async () => (await db._store.all('cache')).length), 0);
  const me = await srv.req('GET', '/v1/auth/me', { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(me.status, 401);
  assert.equal(await restoreIn(page, 'test'), null);

  // A wrong password is a LiveDBError with the server's code.
  const err = await page.evaluate(async () => {
    try {
      await db.login('partner@test.livedb', 'not-the-password');
      return null;
    } catch (e) {
      return { isErr: e instanceof LiveDBError, code: e.code, status: e.status };
    }
  });
  assert.deepEqual(err, { isErr: true, code: 'unauthorized', status: 401 });
  // (Chromium logs the 401 of that request as a console error: expected.)
  page.problems = page.problems.filter((p) => !/401/.test(p));
  assert.deepEqual(page.problems, []);
});

// ---------------------------------------------------------------- listeners

sdkTest('collection onSnapshot: snapshot, then added, modified and removed; where filters', async (srv, ctx) => {
  const page = await sdkPage(ctx, srv);
  await page.evaluate(() => {
    watch('all', db.collection('products'));
    watch('oil', db.collection('products').where('category', 'eq', 'oil'));
    watch('cheap', db.collection('products').where('category', 'eq', 'oil').where('price_cents', 'lt', 250));
  });
  await until(page, () => snaps.all.length && !snaps.all.at(-1).stale && snaps.cheap.length && snaps.oil.length);
  let s = await last(page, 'all');
  assert.deepEqual(s.docs.map((d) => d.id), ['p1', 'p2', 'p3']);
  assert.equal(s.fromCache, false);
  assert.equal(typeof s.seq, 'number');
  assert.deepEqual(s.changes.map((c) => c.op + ':' + c.id), ['added:p1', 'added:p2', 'added:p3']);
  assert.deepEqual(await page.evaluate(() => ids('oil')), ['p1', 'p3']);
  assert.deepEqual(await page.evaluate(() => ids('cheap')), ['p1']);

  await addProduct(srv, 4);          // flour
  await addProduct(srv, 5, { price_cents: 200 }); // oil, cheap
  await until(page, () => ids('all').length === 5 && ids('cheap').length === 2);
  assert.deepEqual(await page.evaluate(() => ids('oil')), ['p1', 'p3', 'p5']);

  let r = await srv.req('PATCH', '/v1/c/products/p3', { body: { price_cents: 10 } });
  assert.equal(r.status, 200);
  await until(page, () => ids('cheap').includes('p3'));
  r = await srv.req('PATCH', '/v1/c/products/p1', { body: { category: 'flour' } });
  await until(page, () => !ids('oil').includes('p1'));
  r = await srv.req('DELETE', '/v1/c/products/p5');
  await until(page, () => ids('all').length === 4);

  assert.deepEqual(await page.evaluate(() => allChanges('all')), [
    'added:p1', 'added:p2', 'added:p3', 'added:p4', 'added:p5', 'modified:p3', 'modified:p1', 'removed:p5']);
  assert.deepEqual(await page.evaluate(() => allChanges('oil')), [
    'added:p1', 'added:p3', 'added:p5', 'modified:p3', 'removed:p1', 'removed:p5']);
  assert.deepEqual(await page.evaluate(() => allChanges('cheap')), [
    'added:p1', 'added:p5', 'added:p3', 'removed:p1', 'removed:p5']);
  s = await last(page, 'all');
  assert.equal(s.docs.find((d) => d.id === 'p3').price_cents, 10);
  assert.equal(s.stale, false);
  // A removed change carries the document as the callback last saw it.
  const removed = await page.evaluate(() => snaps.all.flatMap((x) => x.changes).find((c) => c.op === 'removed'));
  assert.equal(removed.doc.id, 'p5');

  // Unsubscribed listeners hear nothing more.
  const n = await page.evaluate(() => { unsubs.all(); return snaps.all.length; });
  await addProduct(srv, 6);
  await until(page, () => ids('oil').includes('p6') === false && snaps.oil.length > 0);
  await sleep(300);
  assert.equal(await page.evaluate(() => snaps.all.length), n);
  assert.deepEqual(page.problems, []);
});

sdkTest('doc().onSnapshot follows one document, null when it does not exist', async (srv, ctx) => {
  const page = await sdkPage(ctx, srv);
  await page.evaluate(() => {
    watch('p2', db.doc('products', 'p2'));
    watch('p9', db.doc('products', 'p9'));
  });
  await until(page, () => snaps.p2.length && snaps.p9.length);
  let s = await last(page, 'p2');
  assert.equal(s.doc.id, 'p2');
  assert.equal(s.stale, false);
  assert.equal(s.fromCache, false);
  assert.deepEqual(s.changes.map((c) => c.op), ['added']);
  assert.equal((await last(page, 'p9')).doc, null);

  await srv.req('PATCH', '/v1/c/products/p2', { body: { stock: 7 } });
  await until(page, () => snaps.p2.at(-1).doc.stock === 7);
  await addProduct(srv, 9);
  await until(page, () => snaps.p9.at(-1).doc?.id === 'p9');
  await srv.req('DELETE', '/v1/c/products/p2');
  await until(page, () => snaps.p2.at(-1).doc === null);
  s = await last(page, 'p2');
  assert.deepEqual(s.changes.map((c) => c.op), ['removed']);
  assert.equal(await page.evaluate(() => snaps.p2.length), 3);
  assert.deepEqual(page.problems, []);
});

// ---------------------------------------------------------------- calls

sdkTest('call(): results, and errors as LiveDBError with code, status and details', async (srv, ctx) => {
  const page = await sdkPage(ctx, srv, { as: PARTNER });
  await until(page, () => db.state === 'live');
  const r = await page.evaluate(() => db.call('place_order',
    { items: [{ product_id: 'p1', qty: 2 }], client_order_id: 'o-1' }));
  assert.equal(r.order.status, 'pending');
  assert.equal(r.order.total_cents, 200);
  assert.equal(r.order.partner_id, srv.partnerId);

  const errs = await page.evaluate(async () => {
    const out = [];
    for (const [fn, args] of [
      ['place_order', { items: [{ product_id: 'p2', qty: 999 }] }],
      ['place_order', { items: [{ product_id: 'nope', qty: 1 }] }],
      ['set_price', { product_id: 'p1', price_cents: 5 }],
      ['no_such_function', {}],
    ]) {
      try {
        await db.call(fn, args);
        out.push(null);
      } catch (e) {
        out.push({ isErr: e instanceof LiveDBError, name: e.name, code: e.code, status: e.status, details: e.details ?? null });
      }
    }
    return out;
  });
  assert.deepEqual(errs[0], { isErr: true, name: 'LiveDBError', code: 'insufficient_stock', status: 422,
    details: [{ product_id: 'p2', requested: 999, available: 50 }] });
  assert.equal(errs[1].code, 'not_found');
  assert.equal(errs[1].status, 404);
  assert.equal(errs[2].code, 'forbidden');
  assert.equal(errs[2].status, 403);
  assert.equal(errs[3].code, 'not_found');

  // The order is in the partner's orders listener; stock went down.
  await page.evaluate(() => {
    watch('orders', db.collection('orders'));
    watch('p1', db.doc('products', 'p1'));
  });
  await until(page, () => snaps.orders.length && snaps.p1.length);
  assert.deepEqual((await last(page, 'orders')).docs.map((d) => d.client_order_id), ['o-1']);
  assert.equal((await last(page, 'p1')).doc.stock, 48);
  assert.deepEqual(page.problems, []);
});

// ---------------------------------------------------------------- reconnects

// The page itself comes from the server that is about to go down: serve
// the shell (/, the SDK) from a copy, as a service worker or the HTTP
// cache would, so that a reload reaches the SDK while the API is away.
async function serveShellFromCache(ctx, srv) {
  const shell = {};
  // The SDK is livedb.js and the modules it imports (web/client/livedb/).
  const sdk = readdirSync(path.join(ROOT, 'web/client/livedb')).map((f) => `/client/livedb/${f}`);
  for (const p of ['/', '/client/livedb.js', ...sdk, '/favicon.svg']) {
    const r = await fetch(srv.url + p);
    shell[p] = { body: Buffer.from(await r.arrayBuffer()), headers: Object.fromEntries(r.headers) };
  }
  await ctx.route((u) => Object.hasOwn(shell, u.pathname) && u.port === String(srv.port), (route) => {
    const { body, headers } = shell[new URL(route.request().url()).pathname];
    route.fulfill({ status: 200, body, headers });
  });
}

// Console errors a page logs while the server is down (failed WebSocket
// connects and fetches): expected in these tests, and only these.
function withoutNetworkErrors(problems) {
  return problems.filter((p) => !/ERR_CONNECTION_REFUSED|WebSocket connection to .* failed|Failed to load resource|ERR_INTERNET_DISCONNECTED|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE/.test(p));
}

sdkTest('server stop and restart: reconnects, resumes with since, no change lost or duplicated', async (srv, ctx) => {
  const page = await sdkPage(ctx, srv);
  await page.evaluate(() => {
    watch('all', db.collection('products'));
    watch('oil', db.collection('products').where('category', 'eq', 'oil'));
    watch('p1', db.doc('products', 'p1'));
  });
  await until(page, () => db.state === 'live' && snaps.all.length && !snaps.all.at(-1).stale &&
    snaps.oil.length && snaps.p1.length);
  const before = await page.evaluate(() => ({ ...db.stats }));

  await srv.stop();
  await until(page, () => db.state !== 'live');
  await until(page, () => snaps.all.at(-1).stale === true && snaps.p1.at(-1).stale === true);
  await sleep(1500); // a few failed attempts: backoff grows
  await srv.restart();
  // Writes right away, most likely before the client is back.
  await addProduct(srv, 4);
  await addProduct(srv, 5);
  await srv.req('PATCH', '/v1/c/products/p1', { body: { stock: 1 } });
  await srv.req('DELETE', '/v1/c/products/p3');
  await until(page, () => db.state === 'live' && !snaps.all.at(-1).stale && ids('all').length === 4 &&
    snaps.p1.at(-1).doc.stock === 1 && !snaps.oil.at(-1).stale && !snaps.p1.at(-1).stale, 20_000);
  // And live changes after the reconnect.
  await addProduct(srv, 7);
  await until(page, () => ids('all').includes('p7') && ids('oil').includes('p7'));

  // Each change once: the snapshot's, then the four made while it was
  // away (in one batch, ordered by id, when it came back after them; in
  // seq order when it came back between them), then p7 live.
  const once = (got, first, away, live) => {
    assert.deepEqual(got.slice(0, first.length), first, got.join());
    assert.deepEqual(got.slice(first.length, -live.length).sort(), [...away].sort(), got.join());
    assert.deepEqual(got.slice(-live.length), live, got.join());
  };
  once(await page.evaluate(() => allChanges('all')), ['added:p1', 'added:p2', 'added:p3'],
    ['modified:p1', 'removed:p3', 'added:p4', 'added:p5'], ['added:p7']);
  once(await page.evaluate(() => allChanges('oil')), ['added:p1', 'added:p3'],
    ['modified:p1', 'removed:p3', 'added:p5'], ['added:p7']);
  assert.deepEqual(await page.evaluate(() => allChanges('p1')), ['added:p1', 'modified:p1']);
  const after = await page.evaluate(() => ({ ...db.stats }));
  // Every listener came back with `since`, none needed a new snapshot.
  assert.equal(after.resumes - before.resumes, 3);
  assert.equal(after.snapshots, before.snapshots);
  // What the page shows is what the server has.
  const server = (await srv.req('GET', '/v1/c/products')).json.docs;
  assert.deepEqual(await last(page, 'all').then((s) => s.docs), server);
  const states = await page.evaluate(() => states);
  assert.equal(states[0], 'live'); // db.state starts as 'connecting'
  assert.ok(states.includes('reconnecting'), states.join());
  assert.equal(states.at(-1), 'live');
  assert.deepEqual(withoutNetworkErrors(page.problems), []);
}, async () => wholesale({ port: await freePort() }));

sdkTest('offline (navigator.onLine false): stale, then resumes with the changes made meanwhile', async (srv, ctx) => {
  const page = await sdkPage(ctx, srv);
  await page.evaluate(() => watch('all', db.collection('products')));
  await until(page, () => db.state === 'live' && snaps.all.length && !snaps.all.at(-1).stale);
  await ctx.setOffline(true);
  await until(page, () => db.state === 'offline' && snaps.all.at(-1).stale);
  for (let i = 4; i <= 8; i++) await addProduct(srv, i);
  await srv.req('PATCH', '/v1/c/products/p2', { body: { stock: 3 } });
  await sleep(300);
  assert.equal(await page.evaluate(() => ids('all').length), 3);
  await ctx.setOffline(false);
  await until(page, () => db.state === 'live' && !snaps.all.at(-1).stale && ids('all').length === 8);
  assert.deepEqual(await page.evaluate(() => allChanges('all')), [
    'added:p1', 'added:p2', 'added:p3', 'modified:p2', 'added:p4', 'added:p5', 'added:p6', 'added:p7', 'added:p8']);
  // The changes came as one batch, when the resume was synced.
  const s = await last(page, 'all');
  assert.equal(s.changes.length, 6);
  assert.equal(await page.evaluate(() => db.stats.resumes), 1);
  assert.deepEqual(await page.evaluate(() => states), ['live', 'offline', 'live']);
  assert.deepEqual(withoutNetworkErrors(page.problems), []);
});

sdkTest('a reload while the server is down shows the cached documents, stale, then live again', async (srv, ctx) => {
  const page = await sdkPage(ctx, srv, { as: PARTNER });
  await page.evaluate(() => {
    watch('oil', db.collection('products').where('category', 'eq', 'oil'));
    watch('p2', db.doc('products', 'p2'));
  });
  await until(page, () => snaps.oil.length && !snaps.oil.at(-1).stale && snaps.p2.length);
  await sleep(600); // the cache is written shortly after a change
  await serveShellFromCache(ctx, srv);
  await srv.stop();

  await page.reload();
  await page.evaluate(async () => {
    const { LiveDB } = await import('/client/livedb.js');
    window.db = new LiveDB({ name: 'test' });
    window.snaps = {};
    window.states = [];
    db.on('state', (s) => states.push(s));
    window.restored = await db.restore();
    for (const [k, target] of [['oil', db.collection('products').where('category', 'eq', 'oil')],
      ['p2', db.doc('products', 'p2')], ['flour', db.collection('products').where('category', 'eq', 'flour')]]) {
      snaps[k] = [];
      target.onSnapshot((s) => snaps[k].push(JSON.parse(JSON.stringify(s))));
    }
    window.ids = (k) => snaps[k].at(-1)?.docs.map((d) => d.id);
  });
  assert.equal(await page.evaluate(() => restored?.email), PARTNER.email);
  await until(page, () => snaps.oil.length && snaps.p2.length);
  let s = await last(page, 'oil');
  assert.deepEqual(s.docs.map((d) => d.id), ['p1', 'p3']);
  assert.equal(s.fromCache, true);
  assert.equal(s.stale, true);
  assert.equal((await last(page, 'p2')).doc.id, 'p2');
  assert.equal((await last(page, 'p2')).fromCache, true);
  // A query never cached: nothing to show, said once the SDK gives up.
  await until(page, () => db.state === 'offline' && snaps.flour.length, 20_000);
  s = await last(page, 'flour');
  assert.deepEqual([s.docs, s.stale, s.fromCache], [[], true, false]);

  await srv.restart();
  await srv.req('PATCH', '/v1/c/products/p3', { body: { stock: 9 } });
  await until(page, () => db.state === 'live' && !snaps.oil.at(-1).stale && !snaps.flour.at(-1).stale, 20_000);
  s = await last(page, 'oil');
  assert.equal(s.fromCache, false);
  assert.deepEqual(s.changes.map((c) => `${c.op}:${c.id}`), ['modified:p3']);
  assert.deepEqual(await page.evaluate(() => ids('flour')), ['p2']);
  assert.deepEqual(withoutNetworkErrors(page.problems), []);
}, async () => wholesale({ port: await freePort() }));

// ---------------------------------------------------------------- the offline queue, and tabs

// The server's log of function calls: [{fn, ok}], oldest first.
async function callsLogged(srv, fn) {
  const r = await srv.req('GET', '/v1/activity?action=call&limit=1000');
  return r.json.entries.reverse().map((e) => e.data).filter((d) => !fn || d.fn === fn);
}

sdkTest('queued calls: sent exactly once after the reconnect, with two tabs open', async (srv, ctx) => {
  const a = await sdkPage(ctx, srv);
  const b = await sdkPage(ctx, srv, { restore: true });
  for (const p of [a, b]) await until(p, () => db.state === 'live');
  await ctx.setOffline(true);
  for (const p of [a, b]) await until(p, () => db.state === 'offline');

  // adjust_inventory is not deduplicated by the server: a second send
  // would take the stock down twice.
  const queued = await a.evaluate(async () => {
    const out = [];
    for (let i = 0; i < 3; i++) out.push(await db.call('adjust_inventory', { product_id: 'p1', delta: -1 }, { queue: true }));
    out.push(await db.call('adjust_inventory', { product_id: 'p1', delta: -1000 }, { queue: true })); // will fail
    return out;
  });
  assert.ok(queued.every((q) => q.queued === true && typeof q.id === 'string'));
  const queuedB = await b.evaluate(() => db.call('adjust_inventory', { product_id: 'p2', delta: -5 }, { queue: true }));
  assert.equal(queuedB.queued, true);
  // Both tabs see the whole queue.
  for (const p of [a, b]) {
    await until(p, () => events.filter((e) => e.ev === 'queue').at(-1)?.args[0].length === 5);
    assert.equal((await p.evaluate(() => db.pending())).length, 5);
  }

  await ctx.setOffline(false);
  for (const p of [a, b]) await until(p, () => db.state === 'live' && events.filter((e) => e.ev === 'queue').at(-1)?.args[0].length === 0);
  await until(a, () => events.filter((e) => e.ev === 'call').length === 4);
  await until(b, () => events.filter((e) => e.ev === 'call').length === 1);
  await sleep(500);
  // Each outcome came once, to the tab that queued the call.
  const callsA = await a.evaluate(() => events.filter((e) => e.ev === 'call').map((e) => e.args));
  const callsB = await b.evaluate(() => events.filter((e) => e.ev === 'call').map((e) => e.args));
  assert.equal(callsA.length, 4);
  assert.equal(callsB.length, 1);
  assert.deepEqual(callsA.map(([entry]) => entry.id), queued.map((q) => q.id));
  assert.deepEqual(callsA.slice(0, 3).map(([, r]) => r.product.id), ['p1', 'p1', 'p1']);
  assert.equal(callsA[3][1].code, 'insufficient_stock');
  assert.equal(callsA[3][1].status, 422);
  assert.equal(callsB[0][0].id, queuedB.id);
  assert.equal(callsB[0][1].product.stock, 45);

  // Sent once each: the server ran exactly five calls.
  assert.equal((await srv.req('GET', '/v1/c/products/p1')).json.stock, 47);
  assert.equal((await srv.req('GET', '/v1/c/products/p2')).json.stock, 45);
  const log = await callsLogged(srv, 'adjust_inventory');
  assert.equal(log.filter((d) => d.ok).length, 4);
  assert.deepEqual(a.problems, []);
  assert.deepEqual(b.problems, []);
});

sdkTest('a queued place_order is placed once; the partner sees it in both tabs', async (srv, ctx) => {
  const a = await sdkPage(ctx, srv, { as: PARTNER });
  const b = await sdkPage(ctx, srv, { restore: true });
  for (const p of [a, b]) {
    await p.evaluate(() => watch('orders', db.collection('orders')));
    await until(p, () => db.state === 'live' && snaps.orders.length && !snaps.orders.at(-1).stale);
  }
  await ctx.setOffline(true);
  for (const p of [a, b]) await until(p, () => db.state === 'offline');
  const q = await a.evaluate(() => db.call('place_order',
    { items: [{ product_id: 'p3', qty: 4 }], client_order_id: 'offline-1' }, { queue: true }));
  assert.equal(q.queued, true);
  // Without a client_order_id the SDK makes one, so resends stay safe.
  const entries = await a.evaluate(async () => {
    await db.call('place_order', { items: [{ product_id: 'p1', qty: 1 }] }, { queue: true });
    return db.pending();
  });
  assert.equal(entries.length, 2);
  assert.equal(typeof entries[1].args.client_order_id, 'string');

  await ctx.setOffline(false);
  for (const p of [a, b]) await until(p, () => snaps.orders.at(-1).docs.length === 2 && !snaps.orders.at(-1).stale);
  const orders = (await srv.req('GET', '/v1/c/orders')).json.docs;
  assert.equal(orders.length, 2);
  assert.deepEqual(orders.map((o) => o.client_order_id).sort(), [entries[1].args.client_order_id, 'offline-1'].sort());
  assert.equal((await callsLogged(srv, 'place_order')).length, 2);
  await until(a, () => events.filter((e) => e.ev === 'call').length === 2);
  assert.equal(await b.evaluate(() => events.filter((e) => e.ev === 'call').length), 0);
  // Both tabs show the same orders.
  const docsA = await a.evaluate(() => snaps.orders.at(-1).docs);
  const docsB = await b.evaluate(() => snaps.orders.at(-1).docs);
  assert.deepEqual(docsA, docsB);
  assert.deepEqual(a.problems, []);
  assert.deepEqual(b.problems, []);
});

sdkTest('tabs share changes: a tab whose connection is down still shows what another tab hears', async (srv, ctx) => {
  const a = await sdkPage(ctx, srv);
  const b = await sdkPage(ctx, srv, { restore: true });
  for (const p of [a, b]) {
    await p.evaluate(() => {
      watch('all', db.collection('products'));
      watch('oil', db.collection('products').where('category', 'eq', 'oil'));
    });
    await until(p, () => snaps.all.length && !snaps.all.at(-1).stale && snaps.oil.length && !snaps.oil.at(-1).stale);
  }
  // B loses its connection and does not come back by itself.
  await b.evaluate(() => { db._connect = () => {}; db._endConnection(); });
  await until(b, () => snaps.all.at(-1).stale);
  await addProduct(srv, 4);
  await addProduct(srv, 5);
  await srv.req('PATCH', '/v1/c/products/p1', { body: { category: 'flour', stock: 2 } });
  await srv.req('DELETE', '/v1/c/products/p3');
  await until(a, () => ids('all').join() === 'p1,p2,p4,p5' && ids('oil').join() === 'p5');
  await until(b, () => ids('all').join() === 'p1,p2,p4,p5' && ids('oil').join() === 'p5');
  const [sa, sb] = [await last(a, 'all'), await last(b, 'all')];
  assert.deepEqual(sb.docs, sa.docs);
  assert.equal(sb.stale, true); // B is not in sync with the server itself
  assert.deepEqual(await b.evaluate(() => allChanges('oil')), await a.evaluate(() => allChanges('oil')));
  assert.deepEqual(a.problems, []);
  assert.deepEqual(b.problems, []);
});

// ---------------------------------------------------------------- the SSE fallback

// A server with enough products for several list pages, on a fixed port.
async function sseServer() {
  const port = await freePort();
  const srv = await wholesale({ port });
  const ops = [];
  for (let i = 10; i < 1210; i++) {
    ops.push({ op: 'create', col: 'products', doc: { id: `q${String(i).padStart(4, '0')}`, sku: `Q-${i}`, name: `Bulk ${i}`, category: 'bulk', unit: 'kg', price_cents: i, stock: 5, active: true } });
  }
  for (let i = 0; i < ops.length; i += 600) {
    assert.equal((await srv.req('POST', '/v1/batch', { body: { ops: ops.slice(i, i + 600) } })).status, 200);
  }
  return srv;
}

sdkTest("transports ['sse']: snapshots from lists, live changes from the event stream, calls over HTTP", async (srv, ctx) => {
  const page = await sdkPage(ctx, srv, { transports: ['sse'] });
  await page.evaluate(() => {
    window.wsOpened = 0;
    const WS = window.WebSocket;
    window.WebSocket = class extends WS { constructor(...a) { super(...a); window.wsOpened++; } };
    watch('oil', db.collection('products').where('category', 'eq', 'oil'));
    watch('bulk', db.collection('products').where('category', 'eq', 'bulk').where('price_cents', 'ge', 100));
    watch('p2', db.doc('products', 'p2'));
  });
  await until(page, () => db.state === 'live' && snaps.oil.length && !snaps.oil.at(-1).stale &&
    snaps.bulk.length && !snaps.bulk.at(-1).stale && snaps.p2.length && !snaps.p2.at(-1).stale);
  assert.deepEqual(await page.evaluate(() => ids('oil')), ['p1', 'p3']);
  assert.equal(await page.evaluate(() => ids('bulk').length), 1110);
  assert.equal((await last(page, 'p2')).doc.id, 'p2');

  await addProduct(srv, 5);
  await srv.req('PATCH', '/v1/c/products/p1', { body: { category: 'flour' } });
  await srv.req('PATCH', '/v1/c/products/p2', { body: { stock: 11 } });
  await srv.req('PATCH', '/v1/c/products/q0100', { body: { price_cents: 1 } });
  await srv.req('DELETE', '/v1/c/products/p3');
  await until(page, () => ids('oil').join() === 'p5' && snaps.p2.at(-1).doc.stock === 11 && ids('bulk').length === 1109);
  assert.deepEqual(await page.evaluate(() => allChanges('oil')), ['added:p1', 'added:p3', 'added:p5', 'removed:p1', 'removed:p3']);
  assert.deepEqual(await page.evaluate(() => allChanges('p2')), ['added:p2', 'modified:p2']);
  assert.deepEqual(await page.evaluate(() => allChanges('bulk').slice(-1)), ['removed:q0100']);

  // Calls go to POST /v1/fn/NAME.
  const r = await page.evaluate(() => db.call('adjust_inventory', { product_id: 'p2', delta: 4 }));
  assert.equal(r.product.stock, 15);
  await until(page, () => snaps.p2.at(-1).doc.stock === 15);

  // A restart: the listeners resume from their seq (the JSON feed), then stream again.
  const before = await page.evaluate(() => ({ ...db.stats }));
  await srv.stop();
  await until(page, () => db.state !== 'live' && snaps.oil.at(-1).stale);
  await srv.restart();
  await addProduct(srv, 7);
  await srv.req('PATCH', '/v1/c/products/p2', { body: { stock: 1 } });
  await until(page, () => db.state === 'live' && ids('oil').join() === 'p5,p7' && snaps.p2.at(-1).doc.stock === 1 &&
    !snaps.oil.at(-1).stale && !snaps.p2.at(-1).stale, 20_000);
  const after = await page.evaluate(() => ({ ...db.stats }));
  assert.equal(after.snapshots, before.snapshots); // resumed, no new lists
  assert.equal(after.resumes - before.resumes, 3);
  assert.deepEqual(await page.evaluate(() => allChanges('oil')), ['added:p1', 'added:p3', 'added:p5', 'removed:p1', 'removed:p3', 'added:p7']);
  assert.equal(await page.evaluate(() => wsOpened), 0);
  assert.deepEqual(withoutNetworkErrors(page.problems), []);
}, sseServer);

sdkTest('a WebSocket that cannot be opened (while HTTP works) falls back to SSE', async (srv, ctx) => {
  const page = await openPage(ctx, srv, '/');
  await page.evaluate(async ({ email, password }) => {
    // A proxy that refuses upgrades: every WebSocket closes unopened.
    window.WebSocket = class {
      constructor() { this.readyState = 0; setTimeout(() => { this.readyState = 3; this.onclose?.({ code: 1006, reason: '' }); }, 5); }
      send() {}
      close() {}
    };
    const { LiveDB } = await import('/client/livedb.js');
    window.db = new LiveDB({ name: 'fallback' });
    window.states = [];
    db.on('state', (s) => states.push(s));
    await db.login(email, password);
    window.snaps = [];
    db.collection('products').onSnapshot((s) => snaps.push(JSON.parse(JSON.stringify(s))));
  }, ADMIN);
  await page.waitForFunction(() => db.state === 'live' && snaps.length && !snaps.at(-1).stale, null, { timeout: 15_000 });
  assert.equal(await page.evaluate(() => db._mode), 'sse');
  await addProduct(srv, 4);
  await page.waitForFunction(() => snaps.at(-1).docs.length === 4, null, { timeout: 10_000 });
  assert.deepEqual(await page.evaluate(() => snaps.at(-1).docs.map((d) => d.id)), ['p1', 'p2', 'p3', 'p4']);
  assert.deepEqual(page.problems, []);
});

// ---------------------------------------------------------------- resync

sdkTest('resync(): a fresh snapshot for every listener, callbacks get the difference', async (srv, ctx) => {
  const page = await sdkPage(ctx, srv);
  await page.evaluate(() => {
    watch('all', db.collection('products'));
    watch('p1', db.doc('products', 'p1'));
  });
  await until(page, () => snaps.all.length && !snaps.all.at(-1).stale && snaps.p1.length);
  // Damage what the listener holds (as a bug would) and show it.
  await page.evaluate(() => {
    const L = [...db._listeners].find((l) => l.docId === null);
    L.remove('p2');
    L.put({ ...L.docs.get('p1'), version: 99, name: 'wrong' });
    L.flush();
  });
  assert.deepEqual(await page.evaluate(() => ids('all')), ['p1', 'p3']);
  const before = await page.evaluate(() => ({ n: snaps.all.length, n1: snaps.p1.length, snaps: db.stats.snapshots }));
  await page.evaluate(() => db.resync());
  await until(page, () => db.stats.snapshots === 2 + 2 && snaps.all.length === 3);
  const s = await last(page, 'all');
  assert.deepEqual(s.docs.map((d) => d.id), ['p1', 'p2', 'p3']);
  assert.deepEqual(s.changes.map((c) => `${c.op}:${c.id}`), ['modified:p1', 'added:p2']);
  assert.equal(s.docs[0].name, 'Product 1');
  assert.equal(s.stale, false);
  // The doc listener's state did not change: no callback.
  assert.equal(await page.evaluate(() => snaps.p1.length), before.n1);
  assert.deepEqual(page.problems, []);
});

// A server whose change feed keeps only the last 5 changes.
async function shortFeedServer() {
  const srv = await startServer({ args: ['--apps', 'wholesale', '--retain-changes', '5', ...WEB] });
  for (let i = 1; i <= 3; i++) await addProduct(srv, i);
  return srv;
}

sdkTest('resync_required (the feed no longer holds the position): a new snapshot, diffed', async (srv, ctx) => {
  const page = await sdkPage(ctx, srv);
  await page.evaluate(() => watch('all', db.collection('products')));
  await until(page, () => snaps.all.length && !snaps.all.at(-1).stale);
  await ctx.setOffline(true);
  await until(page, () => db.state === 'offline');
  for (let i = 4; i <= 20; i++) await addProduct(srv, i);
  await srv.req('DELETE', '/v1/c/products/p1');
  await srv.req('PATCH', '/v1/c/products/p2', { body: { stock: 0 } });
  await ctx.setOffline(false);
  await until(page, () => !snaps.all.at(-1).stale && ids('all').length === 19);
  assert.equal(await page.evaluate(() => db.stats.resyncs), 1);
  const s = await last(page, 'all');
  const ops = s.changes.map((c) => `${c.op}:${c.id}`);
  assert.deepEqual(ops.filter((o) => !o.startsWith('added')), ['removed:p1', 'modified:p2']);
  assert.equal(ops.filter((o) => o.startsWith('added')).length, 17);
  assert.deepEqual(s.docs, (await srv.req('GET', '/v1/c/products')).json.docs);
  assert.deepEqual(page.problems, []);
}, shortFeedServer);

// ---------------------------------------------------------------- access changes, errors

sdkTest('close code 4003: a role change re-snapshots; a disabled account ends the session (auth event)', async (srv, ctx) => {
  // An order by the partner, one by another partner.
  const other = await srv.req('POST', '/v1/accounts', { body: { email: 'o@test.livedb', role: 'partner', password: 'other-password-1' } });
  const page = await sdkPage(ctx, srv, { as: PARTNER });
  await page.evaluate(() => db.call('place_order', { items: [{ product_id: 'p1', qty: 1 }], client_order_id: 'mine' }));
  const o = await (await fetch(`${srv.url}/v1/auth/login`, { method: 'POST', body: JSON.stringify({ email: 'o@test.livedb', password: 'other-password-1' }) })).json();
  const r = await fetch(`${srv.url}/v1/fn/place_order`, { method: 'POST', headers: { Authorization: `Bearer ${o.token}` }, body: JSON.stringify({ items: [{ product_id: 'p2', qty: 1 }], client_order_id: 'theirs' }) });
  assert.equal(r.status, 200);
  await page.evaluate(() => watch('orders', db.collection('orders')));
  await until(page, () => snaps.orders.length && !snaps.orders.at(-1).stale);
  assert.equal(await page.evaluate(() => snaps.orders.at(-1).docs.length), 1);

  // Promoted to admin: the connection closes with 4003, the SDK comes
  // back with a fresh snapshot of what the account may see now.
  await srv.req('PATCH', `/v1/accounts/${srv.partnerId}`, { body: { role: 'admin' } });
  await until(page, () => db.account.role === 'admin' && snaps.orders.at(-1).docs.length === 2 && !snaps.orders.at(-1).stale);
  assert.deepEqual(await page.evaluate(() => allChanges('orders').length), 2);

  // Disabled: the session is over.
  await srv.req('PATCH', `/v1/accounts/${srv.partnerId}`, { body: { disabled: true } });
  await until(page, () => events.some((e) => e.ev === 'auth'));
  assert.deepEqual(await page.evaluate(() => events.filter((e) => e.ev === 'auth').map((e) => e.args)), [[null]]);
  assert.equal(await page.evaluate(() => db.account), null);
  assert.equal(await page.evaluate(() => db.state), 'offline');
  assert.equal(await page.evaluate(() => localStorage.getItem('livedb:test:session')), null);
  assert.ok(other.status === 201);
  // Chromium logs the 401 of /v1/auth/me as a console error: expected here.
  assert.deepEqual(page.problems.filter((p) => !/401/.test(p)), []);
});

sdkTest('a subscription the server refuses reaches onError and the error event', async (srv, ctx) => {
  const page = await sdkPage(ctx, srv, { as: PARTNER });
  await page.evaluate(() => {
    window.refusals = [];
    db.collection('secrets').onSnapshot(() => {}, (e) => refusals.push({ code: e.code, status: e.status, isErr: e instanceof LiveDBError }));
    watch('products', db.collection('products'));
  });
  await until(page, () => refusals.length && snaps.products.length);
  assert.deepEqual(await page.evaluate(() => refusals), [{ code: 'forbidden', status: 403, isErr: true }]);
  assert.equal(await page.evaluate(() => events.filter((e) => e.ev === 'error').length), 1);
  assert.deepEqual(page.problems, []);
});

sdkTest('heartbeat: a server that stops answering is noticed; the SDK reconnects when it is back', async (srv, ctx) => {
  const page = await sdkPage(ctx, srv, { opts: { heartbeatMs: 300, connectTimeoutMs: 1000 } });
  await page.evaluate(() => watch('all', db.collection('products')));
  await until(page, () => db.state === 'live' && snaps.all.length && !snaps.all.at(-1).stale);
  srv.proc.kill('SIGSTOP'); // the TCP connection stays up, nothing answers
  try {
    await until(page, () => db.state !== 'live' && snaps.all.at(-1).stale, 5000);
  } finally {
    srv.proc.kill('SIGCONT');
  }
  await srv.req('PATCH', '/v1/c/products/p1', { body: { stock: 3 } });
  await until(page, () => db.state === 'live' && !snaps.all.at(-1).stale && snaps.all.at(-1).docs[0].stock === 3, 15_000);
  assert.deepEqual(await page.evaluate(() => allChanges('all')), ['added:p1', 'added:p2', 'added:p3', 'modified:p1']);
  assert.deepEqual(withoutNetworkErrors(page.problems), []);
});

sdkTest('presence: sent, and sent again after a reconnect', async (srv, ctx) => {
  const page = await sdkPage(ctx, srv, { as: PARTNER });
  await until(page, () => db.state === 'live');
  await page.evaluate(() => db.presence({ page: 'catalog', cart: 2 }));
  const watcher = await sdkPage(await browser.newContext(), srv, { name: 'watcher' });
  await watcher.evaluate(() => watch('presence', db.collection('_presence')));
  const partnerState = (id) => snaps.presence.length &&
    snaps.presence.at(-1).docs.some((d) => d.account === id && d.state?.page === 'catalog');
  await until(watcher, partnerState, 10_000, srv.partnerId);
  await srv.stop();
  await srv.restart();
  await until(watcher, () => db.state === 'live', 20_000);
  await until(watcher, partnerState, 20_000, srv.partnerId);
  await watcher.context().close();
}, async () => wholesale({ port: await freePort() }));

// ---------------------------------------------------------------- activity reports

async function activity(srv, query) {
  const r = await srv.req('GET', `/v1/activity?limit=1000&${query}`);
  assert.equal(r.status, 200, r.text);
  return r.json.entries;
}

sdkTest('activity: page_view once, report(), uncaught errors and rejections, batched, within the rate limit', async (srv, ctx) => {
  const page = await sdkPage(ctx, srv, { as: PARTNER });
  await page.evaluate(() => {
    db.report('cart.add', { product_id: 'p1', qty: 2 });
    setTimeout(() => { throw new Error('boom in a timer'); }, 0);
    Promise.reject(new Error('a promise nobody awaited'));
  });
  const bad = await page.evaluate(() => {
    const out = [];
    for (const a of ['Bad-Name', 'login', '', 'x'.repeat(33), '9lives']) {
      try { db.report(a, {}); out.push(null); } catch (e) { out.push(e.code); }
    }
    return out;
  });
  assert.deepEqual(bad, ['bad_request', 'bad_request', 'bad_request', 'bad_request', 'bad_request']);
  await until(page, () => db._reporter.buf.length === 0 && !db._reporter.sending, 10_000);
  await sleep(300);
  const mine = (await activity(srv, `actor=${srv.partnerId}`)).reverse();
  const clientEvents = mine.filter((e) => !['login', 'call'].includes(e.action));
  assert.deepEqual(clientEvents.map((e) => e.action).sort(), ['cart.add', 'client_error', 'client_error', 'page_view']);
  const pv = clientEvents.find((e) => e.action === 'page_view');
  assert.equal(pv.data.path, '/');
  assert.equal(typeof pv.data.load_ms, 'number');
  assert.deepEqual(clientEvents.find((e) => e.action === 'cart.add').data, { product_id: 'p1', qty: 2 });
  const errors = clientEvents.filter((e) => e.action === 'client_error').map((e) => e.data);
  const thrown = errors.find((d) => /boom in a timer/.test(d.message));
  assert.ok(thrown, JSON.stringify(errors));
  assert.ok(thrown.line > 0);
  assert.equal(typeof thrown.source, 'string');
  const rejected = errors.find((d) => /a promise nobody awaited/.test(d.message));
  assert.ok(rejected, JSON.stringify(errors));
  assert.match(rejected.source, /unhandledrejection/);
  // The page's own errors are the only problems.
  assert.equal(page.problems.length, 2, page.problems.join('\n'));
  assert.match(page.problems.join('\n'), /boom in a timer[^]*a promise nobody awaited|a promise nobody awaited[^]*boom in a timer/);
  page.problems = [];

  // A flood: never more than 120 a minute for the session, never a 429.
  await page.evaluate(() => { for (let i = 0; i < 150; i++) db.report('flood', { i }); });
  await sleep(4000);
  const all = await activity(srv, `actor=${srv.partnerId}`);
  const client = all.filter((e) => !['login', 'call'].includes(e.action));
  assert.equal(client.length, 120);
  assert.equal(await page.evaluate(() => db._reporter.buf.length), 150 - 116);
  // No second page_view for the same page load, even from a second db.
  await page.evaluate(async () => {
    const { LiveDB } = await import('/client/livedb.js');
    const other = new LiveDB({ name: 'test' });
    await other.restore();
    other.close();
  });
  assert.deepEqual(page.problems, []);
});

sdkTest('activity: events still buffered when the page goes away are sent with keepalive', async (srv, ctx) => {
  const page = await sdkPage(ctx, srv, { as: PARTNER, opts: { reportEveryMs: 60_000 } });
  await page.evaluate(() => db.report('checkout.left', { step: 2 }));
  // Away to another page of the same site (about:blank would swap the
  // renderer, whose unload handlers a loaded machine may never run).
  await page.goto(`${srv.url}/favicon.svg`);
  let got = [];
  for (let i = 0; i < 50 && !got.length; i++) {
    await sleep(100);
    got = await activity(srv, 'action=checkout.left');
  }
  assert.equal(got.length, 1);
  assert.deepEqual(got[0].data, { step: 2 });
  assert.equal(got[0].account, srv.partnerId);
  assert.equal((await activity(srv, 'action=page_view')).length, 1);
});

sdkTest('activity: a batch half sent when the page goes away is finished with keepalive', async (srv, ctx) => {
  const page = await sdkPage(ctx, srv, { as: PARTNER, opts: { reportBatch: 2, reportEveryMs: 60_000 } });
  // The second event starts a flush of [page_view, left.a] that sends one
  // at a time; the page leaves while the first is on its way.
  await page.evaluate(() => { for (const a of ['left.a', 'left.b', 'left.c']) db.report(a); });
  await page.goto(`${srv.url}/favicon.svg`);
  const seen = async () => (await activity(srv, `actor=${srv.partnerId}`)).map((e) => e.action).filter((a) => a.startsWith('left.'));
  let got = [];
  for (let i = 0; i < 50 && got.length < 3; i++) {
    await sleep(100);
    got = await seen();
  }
  assert.deepEqual(got.sort(), ['left.a', 'left.b', 'left.c']);
  await sleep(300);
  assert.equal((await seen()).length, 3, 'none twice');
});

// ---------------------------------------------------------------- odds and ends

sdkTest("a callback that throws does not stop the SDK; one-shot reads: get(), api()", async (srv, ctx) => {
  const page = await sdkPage(ctx, srv);
  await page.evaluate(() => {
    window.seen = 0;
    db.collection('products').onSnapshot(() => { seen++; if (seen === 1) throw new Error('page bug'); });
    watch('all', db.collection('products'));
  });
  await until(page, () => seen === 1 && snaps.all.length);
  await addProduct(srv, 4);
  await until(page, () => seen === 2 && ids('all').length === 4);
  // The page's bug is logged (a console error: it is the page's) and reported.
  assert.equal(page.problems.length, 1);
  assert.match(page.problems[0], /a callback threw/);
  page.problems = [];

  const got = await page.evaluate(async () => ({
    oil: (await db.collection('products').where('category', 'eq', 'oil').get()).map((d) => d.id),
    p2: (await db.doc('products', 'p2').get()).name,
    none: await db.doc('products', 'nope').get(),
    me: (await db.api('GET', '/v1/auth/me')).account.email,
    badOp: (() => { try { db.collection('products').where('x', 'like', 1); } catch (e) { return e.code; } })(),
    badCol: (() => { try { db.collection('Bad Name'); } catch (e) { return e.code; } })(),
  }));
  assert.deepEqual(got, { oil: ['p1', 'p3'], p2: 'Product 2', none: null, me: ADMIN.email, badOp: 'bad_request', badCol: 'bad_request' });
  await until(page, () => db._reporter.buf.length === 0 && !db._reporter.sending);
  const errs = (await activity(srv, 'action=client_error')).map((e) => e.data.message);
  assert.ok(errs.some((m) => /page bug/.test(m)), errs.join());
  // get() of a missing document is a 404 Chromium logs: expected.
  assert.deepEqual(page.problems.filter((p) => !/404/.test(p)), []);
});

sdkTest('close code 4008 (read too slowly): reconnects at once and resumes with since', async (srv, ctx) => {
  const page = await sdkPage(ctx, srv, { opts: { backoffMinMs: 5000 } });
  await page.evaluate(() => watch('all', db.collection('products')));
  await until(page, () => db.state === 'live' && snaps.all.length && !snaps.all.at(-1).stale);
  const t0 = Date.now();
  // As the server does it: the connection ends with 4008 after it opened.
  await page.evaluate(() => db._transport._ended({ code: 4008 }));
  await srv.req('PATCH', '/v1/c/products/p2', { body: { stock: 8 } });
  await until(page, () => db.state === 'live' && !snaps.all.at(-1).stale && snaps.all.at(-1).docs[1].stock === 8);
  assert.ok(Date.now() - t0 < 2500, 'no backoff after 4008');
  assert.equal(await page.evaluate(() => db.stats.resumes), 1);
  assert.equal(await page.evaluate(() => db.stats.snapshots), 1);
  assert.deepEqual(await page.evaluate(() => allChanges('all')), ['added:p1', 'added:p2', 'added:p3', 'modified:p2']);
  assert.deepEqual(page.problems, []);
});

sdkTest('SSE: a role change (the server ends the stream) brings fresh lists of what the account may see', async (srv, ctx) => {
  const page = await sdkPage(ctx, srv, { as: PARTNER, transports: ['sse'] });
  await page.evaluate(() => db.call('place_order', { items: [{ product_id: 'p1', qty: 1 }], client_order_id: 'mine' }));
  const o = await srv.req('POST', '/v1/accounts', { body: { email: 'o2@test.livedb', role: 'partner', password: 'other-password-1' } });
  assert.equal(o.status, 201);
  const ot = await (await fetch(`${srv.url}/v1/auth/login`, { method: 'POST', body: JSON.stringify({ email: 'o2@test.livedb', password: 'other-password-1' }) })).json();
  const r = await fetch(`${srv.url}/v1/fn/place_order`, { method: 'POST', headers: { Authorization: `Bearer ${ot.token}` }, body: JSON.stringify({ items: [{ product_id: 'p2', qty: 1 }] }) });
  assert.equal(r.status, 200);
  await page.evaluate(() => watch('orders', db.collection('orders')));
  await until(page, () => db.state === 'live' && snaps.orders.length && !snaps.orders.at(-1).stale);
  assert.equal(await page.evaluate(() => snaps.orders.at(-1).docs.length), 1);
  await srv.req('PATCH', `/v1/accounts/${srv.partnerId}`, { body: { role: 'admin' } });
  await until(page, () => db.account.role === 'admin' && snaps.orders.at(-1).docs.length === 2 && !snaps.orders.at(-1).stale, 15_000);
  assert.deepEqual(withoutNetworkErrors(page.problems), []);
});
