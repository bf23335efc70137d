// Server functions (POST /v1/fn/NAME and "call" over the WebSocket): the
// wholesale app's place_order, set_order_status, adjust_inventory and
// set_price, as API.md "App: wholesale" describes them. What matters most:
// concurrent orders never oversell, a refused call writes nothing, a
// retried client_order_id gives the first order back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { mkdtempSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  startServer, req, login, assertError, listAll, lastSeq, snapshot,
} from './lib.mjs';

let srv;
// The VFS's fault seam (vfs.h): byte 3 'W' fails a function's second write.
const faults = path.join(mkdtempSync(path.join(tmpdir(), 'livedb-fn-')), 'faults');
writeFileSync(faults, Buffer.alloc(64));
const fault = (at, ch) => {
  const fd = openSync(faults, 'r+');
  writeSync(fd, Buffer.from(ch || '\0'), 0, 1, at);
  closeSync(fd);
};
const partners = []; // [{id, email, token}]

function as(p) {
  return {
    call: (fn, args, opts = {}) => req('POST', `${srv.url}/v1/fn/${fn}`,
      { body: args, headers: { Authorization: `Bearer ${p.token}`, ...(opts.headers || {}) } }),
    get: (path) => req('GET', srv.url + path, { headers: { Authorization: `Bearer ${p.token}` } }),
    req: (method, path, body) => req(method, srv.url + path,
      { body, headers: { Authorization: `Bearer ${p.token}` } }),
  };
}
const admin = () => ({ call: (fn, args) => srv.req('POST', `/v1/fn/${fn}`, { body: args }) });

let skuN = 0;
async function product(fields = {}) {
  skuN++;
  const r = await srv.req('POST', '/v1/c/products', {
    body: { sku: `SKU-${skuN}`, name: `Product ${skuN}`, category: 'test', unit: 'box',
      price_cents: 1000, stock: 10, active: true, ...fields },
  });
  assert.equal(r.status, 201, r.text);
  return r.json;
}
async function stockOf(id) {
  const r = await srv.req('GET', `/v1/c/products/${id}`);
  assert.equal(r.status, 200, r.text);
  return r.json.stock;
}

before(async () => {
  srv = await startServer({ env: { LIVEDB_FAULTS: faults }, args: ['--apps', 'wholesale'] });
  for (let i = 0; i < 4; i++) {
    const email = `partner${i}@test.livedb`;
    const r = await srv.req('POST', '/v1/accounts',
      { body: { email, role: 'partner', name: `Partner ${i}`, password: `partner-password-${i}` } });
    assert.equal(r.status, 201, r.text);
    const { token } = await login(srv, email, `partner-password-${i}`);
    partners.push({ id: r.json.id, email, token });
  }
});
after(async () => { await srv?.stop(); });

// ---------------------------------------------------------------- place_order

test('200 concurrent orders on a stock of 50 sell exactly 50', async () => {
  const p = await product({ stock: 50, price_cents: 250 });
  const calls = [];
  for (let i = 0; i < 200; i++) {
    calls.push(as(partners[i % 4]).call('place_order',
      { items: [{ product_id: p.id, qty: 1 }], client_order_id: `race-${i}` }));
  }
  const rs = await Promise.all(calls);
  const ok = rs.filter((r) => r.status === 200);
  const refused = rs.filter((r) => r.status !== 200);
  assert.equal(ok.length, 50);
  assert.equal(refused.length, 150);
  for (const r of refused) {
    assertError(r, 422, 'insufficient_stock');
    assert.deepEqual(r.json.error.details, [{ product_id: p.id, requested: 1, available: 0 }]);
  }
  assert.equal(await stockOf(p.id), 0);
  const orders = (await listAll(srv, 'orders')).filter((o) => o.items[0].product_id === p.id);
  assert.equal(orders.length, 50);
  assert.equal(new Set(orders.map((o) => o.id)).size, 50);
  for (const o of orders) {
    assert.equal(o.status, 'pending');
    assert.equal(o.total_cents, 250);
  }
});

test('orders of several units race without going below zero', async () => {
  const p = await product({ stock: 100 });
  const rs = await Promise.all(Array.from({ length: 60 }, (_, i) =>
    as(partners[i % 4]).call('place_order', { items: [{ product_id: p.id, qty: 3 }] })));
  const sold = rs.filter((r) => r.status === 200).length * 3;
  assert.equal(sold, 99); // 33 orders of 3; the 34th would need 3 of the 1 left
  assert.equal(await stockOf(p.id), 1);
  for (const r of rs.filter((x) => x.status !== 200)) {
    assertError(r, 422, 'insufficient_stock');
    assert.equal(r.json.error.details[0].available, 1);
  }
});

test('an order takes its prices from the products and answers the whole order', async () => {
  const a = await product({ price_cents: 1999, stock: 5, name: 'Olive oil' });
  const b = await product({ price_cents: 350, stock: 8 });
  const r = await as(partners[0]).call('place_order', {
    items: [{ product_id: a.id, qty: 2, price_cents: 1 }, { product_id: b.id, qty: 3 }],
    notes: 'back door',
  });
  assert.equal(r.status, 200, r.text);
  const o = r.json.order;
  assert.equal(o.partner_id, partners[0].id);
  assert.equal(o.status, 'pending');
  assert.equal(o.notes, 'back door');
  assert.equal(o.client_order_id, null);
  assert.equal(o.total_cents, 2 * 1999 + 3 * 350);
  assert.deepEqual(o.items, [
    { product_id: a.id, name: 'Olive oil', qty: 2, price_cents: 1999 },
    { product_id: b.id, name: b.name, qty: 3, price_cents: 350 },
  ]);
  assert.equal(o.history.length, 1);
  assert.equal(o.history[0].status, 'pending');
  assert.equal(o.history[0].by, partners[0].id);
  assert.equal(await stockOf(a.id), 3);
  assert.equal(await stockOf(b.id), 5);
  // The same product twice counts once, with the quantities added.
  const twice = await as(partners[0]).call('place_order',
    { items: [{ product_id: b.id, qty: 2 }, { product_id: b.id, qty: 2 }] });
  assert.equal(twice.status, 200, twice.text);
  assert.deepEqual(twice.json.order.items.map((i) => i.qty), [4]);
  assert.equal(await stockOf(b.id), 1);
});

test('a retried client_order_id gives the first order back and writes nothing', async () => {
  const p = await product({ stock: 10 });
  const args = { items: [{ product_id: p.id, qty: 2 }], client_order_id: 'tab-1-order-7' };
  const first = await as(partners[1]).call('place_order', args);
  assert.equal(first.status, 200, first.text);
  const seq = await lastSeq(srv);
  const again = await as(partners[1]).call('place_order', args);
  assert.equal(again.status, 200, again.text);
  assert.deepEqual(again.json.order, first.json.order);
  assert.equal(again.json.replayed, true);
  assert.equal(await lastSeq(srv), seq, 'a replay commits nothing');
  assert.equal(await stockOf(p.id), 8);
  // Another partner's order with the same client id is its own order.
  const other = await as(partners[2]).call('place_order', args);
  assert.equal(other.status, 200);
  assert.notEqual(other.json.order.id, first.json.order.id);
  assert.equal(await stockOf(p.id), 6);
});

test('the same client_order_id sent 20 times at once makes one order', async () => {
  const p = await product({ stock: 100 });
  const args = { items: [{ product_id: p.id, qty: 1 }], client_order_id: 'flaky-network-1' };
  const rs = await Promise.all(Array.from({ length: 20 }, () => as(partners[3]).call('place_order', args)));
  assert.ok(rs.every((r) => r.status === 200), rs.map((r) => r.status).join());
  assert.equal(new Set(rs.map((r) => r.json.order.id)).size, 1);
  assert.equal(rs.filter((r) => !r.json.replayed).length, 1);
  assert.equal(await stockOf(p.id), 99);
});

test('a refused order changes nothing: unknown, inactive, short products', async () => {
  const a = await product({ stock: 5 });
  const b = await product({ stock: 2 });
  const off = await product({ stock: 5, active: false });
  const before = await snapshot(srv, ['products', 'orders']);
  const seq = await lastSeq(srv);
  const P = as(partners[0]);

  let r = await P.call('place_order', { items: [{ product_id: a.id, qty: 1 }, { product_id: 'no-such', qty: 1 }] });
  assertError(r, 404, 'not_found');
  r = await P.call('place_order', { items: [{ product_id: off.id, qty: 1 }] });
  assertError(r, 422, 'invalid');
  r = await P.call('place_order', {
    items: [{ product_id: a.id, qty: 5 }, { product_id: b.id, qty: 3 }, { product_id: 'no' + a.id, qty: 1 }],
  });
  assertError(r, 404, 'not_found');
  r = await P.call('place_order', { items: [{ product_id: a.id, qty: 6 }, { product_id: b.id, qty: 3 }] });
  assertError(r, 422, 'insufficient_stock');
  assert.deepEqual(r.json.error.details, [
    { product_id: a.id, requested: 6, available: 5 },
    { product_id: b.id, requested: 3, available: 2 },
  ]);
  assert.match(r.json.error.message, /not enough stock/);

  assert.equal(await lastSeq(srv), seq);
  assert.deepEqual(await snapshot(srv, ['products', 'orders']), before);
});

test('bad arguments are 400 or 422 with the field, and write nothing', async () => {
  const p = await product({ stock: 5 });
  const seq = await lastSeq(srv);
  const P = as(partners[0]);
  const bad = [
    [{}, 'items'],
    [{ items: [] }, 'items'],
    [{ items: 'all of it' }, 'items'],
    [{ items: Array.from({ length: 201 }, () => ({ product_id: p.id, qty: 1 })) }, 'items'],
    [{ items: [{ product_id: p.id, qty: 0 }] }, 'items[0]'],
    [{ items: [{ product_id: p.id, qty: -2 }] }, 'items[0]'],
    [{ items: [{ product_id: p.id, qty: 1.5 }] }, 'items[0]'],
    [{ items: [{ product_id: p.id, qty: '1' }] }, 'items[0]'],
    [{ items: [{ product_id: p.id, qty: 100001 }] }, 'items[0]'],
    [{ items: [{ product_id: p.id }] }, 'items[0]'],
    [{ items: [{ qty: 1 }] }, 'items[0]'],
    [{ items: [{ product_id: '../etc', qty: 1 }] }, 'items[0]'],
    [{ items: [null] }, 'items[0]'],
    [{ items: [{ product_id: p.id, qty: 1 }], notes: 'x'.repeat(2001) }, 'notes'],
    [{ items: [{ product_id: p.id, qty: 1 }], notes: 7 }, 'notes'],
    [{ items: [{ product_id: p.id, qty: 1 }], client_order_id: '' }, 'client_order_id'],
    [{ items: [{ product_id: p.id, qty: 1 }], client_order_id: 'x'.repeat(129) }, 'client_order_id'],
    [{ items: [{ product_id: p.id, qty: 1 }], client_order_id: 12 }, 'client_order_id'],
    [{ items: [{ product_id: p.id, qty: 1 }], partner_id: partners[1].id }, 'partner_id'],
  ];
  for (const [args, field] of bad) {
    const r = await P.call('place_order', args);
    assertError(r, 422, 'invalid');
    assert.equal(r.json.error.details[0].field, field, JSON.stringify(args).slice(0, 80));
  }
  for (const body of ['{"items":', '[1,2]', '"text"', 'null', '{"items":[{"product_id":"a","qty":1e400}]}']) {
    const r = await P.call('place_order', body, { headers: { 'Content-Type': 'application/json' } });
    assertError(r, 400, 'bad_request');
  }
  assert.equal(await lastSeq(srv), seq);
  assert.equal(await stockOf(p.id), 5);
});

test('who may call what: 401 without a token, 403 for the wrong role, 404 for no function', async () => {
  const p = await product({ stock: 5 });
  let r = await req('POST', `${srv.url}/v1/fn/place_order`, { body: { items: [{ product_id: p.id, qty: 1 }] } });
  assertError(r, 401, 'unauthorized');
  r = await admin().call('place_order', { items: [{ product_id: p.id, qty: 1 }] });
  assertError(r, 403, 'forbidden');
  for (const [fn, args] of [['adjust_inventory', { product_id: p.id, delta: 5 }],
    ['set_price', { product_id: p.id, price_cents: 1 }]]) {
    r = await as(partners[0]).call(fn, args);
    assertError(r, 403, 'forbidden');
  }
  r = await admin().call('no_such_function', {});
  assertError(r, 404, 'not_found');
  r = await admin().call('assign_job', {}); // the studio app is not served here
  assertError(r, 404, 'not_found');
  r = await srv.req('GET', '/v1/fn/place_order');
  assert.equal(r.status, 405);
  // A partner writes orders only through the functions, products not at all.
  r = await as(partners[0]).req('POST', '/v1/c/orders',
    { partner_id: partners[0].id, items: [{}], total_cents: 0, status: 'delivered' });
  assertError(r, 403, 'forbidden');
  r = await as(partners[0]).req('PATCH', `/v1/c/products/${p.id}`, { stock: 1000 });
  assert.ok(r.status === 403 || r.status === 404, `${r.status}`);
  assert.equal(await stockOf(p.id), 5);
});

test('a partner reads only its own orders', async () => {
  const p = await product({ stock: 10 });
  const mine = await as(partners[0]).call('place_order', { items: [{ product_id: p.id, qty: 1 }] });
  const theirs = await as(partners[1]).call('place_order', { items: [{ product_id: p.id, qty: 1 }] });
  let r = await as(partners[0]).get(`/v1/c/orders/${theirs.json.order.id}`);
  assertError(r, 404, 'not_found');
  r = await as(partners[0]).get(`/v1/c/orders/${mine.json.order.id}`);
  assert.equal(r.status, 200);
  r = await as(partners[0]).get('/v1/c/orders?limit=1000');
  assert.ok(r.json.docs.length > 0);
  assert.ok(r.json.docs.every((o) => o.partner_id === partners[0].id));
});

// ---------------------------------------------------------------- set_order_status

async function newOrder(p, qty = 2, who = partners[0]) {
  const r = await as(who).call('place_order', { items: [{ product_id: p.id, qty }] });
  assert.equal(r.status, 200, r.text);
  return r.json.order;
}

test('an order moves pending -> confirmed -> packed -> shipped -> delivered, with its history', async () => {
  const p = await product({ stock: 10 });
  const o = await newOrder(p);
  let last;
  for (const status of ['confirmed', 'packed', 'shipped', 'delivered']) {
    const r = await admin().call('set_order_status', { order_id: o.id, status });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.order.status, status);
    last = r.json.order;
  }
  assert.deepEqual(last.history.map((h) => h.status), ['pending', 'confirmed', 'packed', 'shipped', 'delivered']);
  assert.equal(last.history[4].by, srv.adminId);
  assert.equal(await stockOf(p.id), 8);
  const r = await admin().call('set_order_status', { order_id: o.id, status: 'cancelled' });
  assertError(r, 409, 'invalid_transition');
  assert.deepEqual(r.json.error.details, { from: 'delivered', to: 'cancelled' });
});

test('transitions not in the list are 409 and change nothing', async () => {
  const p = await product({ stock: 10 });
  const o = await newOrder(p);
  for (const status of ['packed', 'shipped', 'delivered', 'pending', 'lost', '']) {
    const r = await admin().call('set_order_status', { order_id: o.id, status });
    assertError(r, 409, 'invalid_transition');
  }
  await admin().call('set_order_status', { order_id: o.id, status: 'confirmed' });
  for (const status of ['pending', 'shipped', 'confirmed']) {
    const r = await admin().call('set_order_status', { order_id: o.id, status });
    assertError(r, 409, 'invalid_transition');
  }
  const r = await srv.req('GET', `/v1/c/orders/${o.id}`);
  assert.equal(r.json.status, 'confirmed');
  assert.equal(r.json.version, 2);
});

test('cancelling puts the stock back, once', async () => {
  const p = await product({ stock: 10 });
  const o1 = await newOrder(p, 3);
  const o2 = await newOrder(p, 4);
  assert.equal(await stockOf(p.id), 3);
  let r = await admin().call('set_order_status', { order_id: o1.id, status: 'cancelled' });
  assert.equal(r.status, 200, r.text);
  assert.equal(await stockOf(p.id), 6);
  r = await admin().call('set_order_status', { order_id: o1.id, status: 'cancelled' });
  assertError(r, 409, 'invalid_transition');
  assert.equal(await stockOf(p.id), 6);
  await admin().call('set_order_status', { order_id: o2.id, status: 'confirmed' });
  r = await admin().call('set_order_status', { order_id: o2.id, status: 'cancelled' });
  assert.equal(r.status, 200, r.text);
  assert.equal(await stockOf(p.id), 10);
});

test('a partner may cancel its own pending order, and nothing else', async () => {
  const p = await product({ stock: 10 });
  const mine = await newOrder(p, 1, partners[0]);
  const theirs = await newOrder(p, 1, partners[1]);
  let r = await as(partners[0]).call('set_order_status', { order_id: theirs.id, status: 'cancelled' });
  assertError(r, 404, 'not_found');
  r = await as(partners[0]).call('set_order_status', { order_id: mine.id, status: 'confirmed' });
  assertError(r, 403, 'forbidden');
  r = await as(partners[0]).call('set_order_status', { order_id: mine.id, status: 'cancelled' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.order.history.at(-1).by, partners[0].id);
  assert.equal(await stockOf(p.id), 9);
  await admin().call('set_order_status', { order_id: theirs.id, status: 'confirmed' });
  r = await as(partners[1]).call('set_order_status', { order_id: theirs.id, status: 'cancelled' });
  assertError(r, 403, 'forbidden');
});

test('set_order_status refuses bad arguments', async () => {
  for (const args of [{}, { order_id: 'x/y', status: 'confirmed' }, { order_id: 'a' },
    { order_id: 5, status: 'confirmed' }, { order_id: 'a', status: 'confirmed', extra: 1 }]) {
    const r = await admin().call('set_order_status', args);
    assertError(r, 422, 'invalid');
  }
  const r = await admin().call('set_order_status', { order_id: 'nope', status: 'confirmed' });
  assertError(r, 404, 'not_found');
});

// ---------------------------------------------------------------- inventory and price

test('adjust_inventory adds and removes stock, never below zero', async () => {
  const p = await product({ stock: 4 });
  let r = await admin().call('adjust_inventory', { product_id: p.id, delta: 6 });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.product.stock, 10);
  r = await admin().call('adjust_inventory', { product_id: p.id, delta: -10 });
  assert.equal(r.json.product.stock, 0);
  r = await admin().call('adjust_inventory', { product_id: p.id, delta: -1 });
  assertError(r, 422, 'insufficient_stock');
  assert.deepEqual(r.json.error.details, [{ product_id: p.id, requested: 1, available: 0 }]);
  for (const delta of [1.5, '3', null, 2e9]) {
    r = await admin().call('adjust_inventory', { product_id: p.id, delta });
    assertError(r, 422, 'invalid');
  }
  r = await admin().call('adjust_inventory', { product_id: 'nope', delta: 1 });
  assertError(r, 404, 'not_found');
  assert.equal(await stockOf(p.id), 0);
});

test('set_price changes the product; existing orders keep their prices', async () => {
  const p = await product({ stock: 10, price_cents: 500 });
  const o = await newOrder(p, 2);
  let r = await admin().call('set_price', { product_id: p.id, price_cents: 650 });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.product.price_cents, 650);
  const old = await srv.req('GET', `/v1/c/orders/${o.id}`);
  assert.equal(old.json.items[0].price_cents, 500);
  assert.equal(old.json.total_cents, 1000);
  const next = await newOrder(p, 2);
  assert.equal(next.total_cents, 1300);
  for (const price_cents of [-1, 1.25, '700', null]) {
    r = await admin().call('set_price', { product_id: p.id, price_cents });
    assertError(r, 422, 'invalid');
  }
  assert.equal((await srv.req('GET', `/v1/c/products/${p.id}`)).json.price_cents, 650);
});

// ---------------------------------------------------------------- over the WebSocket, and the log

function ws(token) {
  const sock = new WebSocket(`${srv.url.replace('http', 'ws')}/v1/realtime?token=${token}`);
  const inbox = [];
  const waiters = [];
  sock.on('message', (d) => {
    const m = JSON.parse(d.toString());
    inbox.push(m);
    for (const w of waiters.splice(0)) w();
  });
  return {
    sock,
    opened: new Promise((res, rej) => { sock.once('open', res); sock.once('error', rej); }),
    send: (m) => sock.send(JSON.stringify(m)),
    async next(pred, ms = 5000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const i = inbox.findIndex(pred);
        if (i >= 0) return inbox.splice(i, 1)[0];
        if (Date.now() > deadline) throw new Error(`no matching message; got ${JSON.stringify(inbox).slice(0, 400)}`);
        await new Promise((res) => { waiters.push(res); setTimeout(res, 100); });
      }
    },
  };
}

test('calls over the WebSocket answer like HTTP, and the admin sees the order arrive', async () => {
  const p = await product({ stock: 3, price_cents: 700 });
  const watcher = ws(srv.token);
  await watcher.opened;
  watcher.send({ t: 'sub', id: 'o', col: 'orders' });
  await watcher.next((m) => m.t === 'snapshot' && !m.more);

  const c = ws(partners[2].token);
  await c.opened;
  c.send({ t: 'call', id: 'r1', fn: 'place_order', args: { items: [{ product_id: p.id, qty: 2 }] } });
  const ok = await c.next((m) => m.t === 'result' && m.id === 'r1');
  assert.equal(ok.ok, true);
  assert.equal(ok.data.order.total_cents, 1400);
  const seen = await watcher.next((m) => m.t === 'change' && m.id === ok.data.order.id);
  assert.equal(seen.op, 'added');
  assert.equal(seen.doc.partner_id, partners[2].id);

  c.send({ t: 'call', id: 'r2', fn: 'place_order', args: { items: [{ product_id: p.id, qty: 2 }] } });
  const refused = await c.next((m) => m.t === 'result' && m.id === 'r2');
  assert.equal(refused.ok, false);
  assert.equal(refused.error.code, 'insufficient_stock');
  assert.deepEqual(refused.error.details, [{ product_id: p.id, requested: 2, available: 1 }]);

  c.send({ t: 'call', id: 'r3', fn: 'set_price', args: { product_id: p.id, price_cents: 1 } });
  assert.equal((await c.next((m) => m.t === 'result' && m.id === 'r3')).error.code, 'forbidden');
  c.send({ t: 'call', id: 'r4', fn: 'nope', args: {} });
  assert.equal((await c.next((m) => m.t === 'result' && m.id === 'r4')).error.code, 'not_found');
  c.sock.close();
  watcher.sock.close();
});

test('every call is in the activity log, refused ones too', async () => {
  const p = await product({ stock: 1 });
  await as(partners[3]).call('place_order', { items: [{ product_id: p.id, qty: 1 }] });
  await as(partners[3]).call('place_order', { items: [{ product_id: p.id, qty: 1 }] });
  const r = await srv.req('GET', `/v1/activity?actor=${partners[3].id}&action=call&limit=2`);
  assert.equal(r.status, 200, r.text);
  const [refused, ok] = r.json.entries;
  assert.equal(ok.data.fn, 'place_order');
  assert.equal(ok.data.ok, true);
  assert.equal(refused.data.ok, false);
  assert.equal(refused.data.error, 'insufficient_stock');
  // The order's own create entry names the partner, not the system.
  const w = await srv.req('GET', `/v1/activity?actor=${partners[3].id}&action=create&limit=1`);
  assert.equal(w.json.entries[0].col, 'orders');
});

// Calls run without a savepoint of their own; one that fails after a write
// has its group rolled back and run again with a savepoint per call. The
// others in the group must land exactly once, the failed call not at all.
test('a call that fails after its first write is undone alone; the rest of its group lands once', async () => {
  const p = await product({ stock: 1000 });
  const seq0 = await lastSeq(srv);
  const metric = async () => Number((await srv.req('GET', '/metrics')).text
    .match(/^livedb_commit_group_reruns_total (\d+)/m)[1]);
  const reruns0 = await metric();
  fault(3, 'W');
  let calls, writes;
  try {
    calls = [];
    writes = [];
    for (let i = 0; i < 60; i++) {
      if (i % 3 === 0) {
        calls.push(as(partners[i % 4]).call('place_order', { items: [{ product_id: p.id, qty: 2 }] }));
      }
      writes.push(srv.req('POST', '/v1/c/rerun_notes', { body: { i } }));
      if (i % 10 === 0) {
        writes.push(srv.req('POST', '/v1/batch', { body: { ops: [
          { op: 'put', col: 'rerun_notes', id: `b${i}`, doc: { batch: i } },
          { op: 'put', col: 'rerun_notes', id: `c${i}`, doc: { batch: i } }] } }));
      }
    }
    calls = await Promise.all(calls);
    writes = await Promise.all(writes);
  } finally {
    fault(3, null);
  }
  for (const r of calls) assertError(r, 500, 'internal');
  for (const r of writes) assert.ok(r.status === 201 || r.status === 200, r.text);
  assert.ok(await metric() > reruns0, 'the groups ran again');
  // Nothing of the failed calls: stock as it was, no order for it.
  assert.equal(await stockOf(p.id), 1000);
  assert.equal((await listAll(srv, 'orders')).filter((o) => o.items[0].product_id === p.id).length, 0);
  // Every other write once, at version 1, and once in the feed, gapless.
  const notes = await listAll(srv, 'rerun_notes');
  assert.equal(notes.length, 60 + 12);
  assert.ok(notes.every((d) => d.version === 1));
  const feed = (await srv.req('GET', `/v1/changes?since=${seq0}&limit=1000`)).json;
  const mine = feed.changes.filter((c) => c.col === 'rerun_notes');
  assert.equal(mine.length, 72);
  assert.equal(new Set(mine.map((c) => c.id)).size, 72);
  feed.changes.forEach((c, i) => assert.equal(c.seq, seq0 + 1 + i, 'gapless'));
  // The refusals are logged as calls that failed.
  const act = await srv.req('GET', `/v1/activity?action=call&limit=20`);
  assert.ok(act.json.entries.some((e) => e.data.ok === false && e.data.error === 'internal'));
  // And with the fault gone, the same call works.
  const ok = await as(partners[0]).call('place_order', { items: [{ product_id: p.id, qty: 2 }] });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(await stockOf(p.id), 998);
});
