// The access matrix: every role x every way data leaves the server (get,
// list, change feed page, long poll, SSE, realtime snapshot, realtime change,
// batch answer, export) x documents of another owner -> zero leaks; and the
// same for writes -> zero unauthorised changes. The wholesale app's rules:
// products are read by any account and written by admin; a partner reads
// only the orders whose partner_id is its account id, and writes none.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, addAccount, login, listAll, sleep } from './lib.mjs';
import { connect, open, subscribe } from './rt.mjs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

let srv;
const who = {}; // name -> {id, token}
const PW = 'password-12345';

const order = (partner, n) => ({
  partner_id: partner, items: [{ product_id: 'p1', name: 'Tea', qty: n, price_cents: 100 }],
  total_cents: 100 * n, status: 'pending', history: [], notes: null, client_order_id: null,
});

before(async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'livedb-access-'));
  for (const [name, role] of [['alice', 'partner'], ['bob', 'partner'], ['sam', 'staff']]) {
    who[name] = { id: addAccount(dir, { email: `${name}@t.livedb`, role, password: PW }) };
  }
  srv = await startServer({ dataDir: dir, args: ['--apps', 'wholesale,studio'] });
  who.admin = { id: srv.adminId, token: srv.token };
  for (const name of ['alice', 'bob', 'sam']) who[name].token = (await login(srv, `${name}@t.livedb`, PW)).token;
  const r = await srv.req('POST', '/v1/batch', { body: { ops: [
    { op: 'put', col: 'products', id: 'p1', doc: { sku: 'T1', name: 'Tea', price_cents: 100, stock: 9 } },
    { op: 'put', col: 'orders', id: 'a1', doc: order(who.alice.id, 1) },
    { op: 'put', col: 'orders', id: 'a2', doc: order(who.alice.id, 2) },
    { op: 'put', col: 'orders', id: 'b1', doc: order(who.bob.id, 3) },
    { op: 'put', col: 'jobs', id: 'j1', doc: { title: 'Shoot', status: 'open' } },
  ] } });
  assert.equal(r.status, 200, r.text);
});
after(async () => { assert.equal(await srv.stop(), 0, srv.stderrTail()); });

const as = (name) => ({ Authorization: name === 'anon' ? null : `Bearer ${who[name].token}` });
const get = (name, p) => srv.req('GET', p, { headers: as(name) });
const ids = (docs) => docs.map((d) => d.id).sort();

// What each caller may see of the orders.
const visibleOrders = { admin: ['a1', 'a2', 'b1'], alice: ['a1', 'a2'], bob: ['b1'], sam: [] };

describe('reads', () => {
  test('anonymous: 401 everywhere', async () => {
    for (const p of ['/v1/c/orders', '/v1/c/orders/a1', '/v1/changes', '/v1/c/products', '/v1/admin/export',
      '/v1/activity', '/v1/accounts', '/v1/auth/me']) {
      const r = await get('anon', p);
      assert.equal(r.status, 401, `${p}: ${r.status} ${r.text}`);
      assert.equal(r.json.error.code, 'unauthorized');
    }
    const c = connect(srv, { token: null });
    await assert.rejects(c.opened, (e) => e.status === 401);
  });

  for (const name of ['admin', 'alice', 'bob', 'sam']) {
    test(`${name}: get and list show only what the rule allows`, async () => {
      for (const id of ['a1', 'a2', 'b1']) {
        const r = await get(name, `/v1/c/orders/${id}`);
        const ok = visibleOrders[name].includes(id);
        assert.equal(r.status, ok ? 200 : 404, `${name} GET ${id}: ${r.text}`);
        if (!ok) assert.doesNotMatch(r.text, /partner_id|total_cents/);
      }
      const l = await get(name, '/v1/c/orders?limit=1000');
      assert.equal(l.status, 200, l.text);
      assert.deepEqual(ids(l.json.docs), visibleOrders[name]);
      // Filters cannot widen what a rule allows.
      const f = await get(name, `/v1/c/orders?where=${encodeURIComponent(`partner_id:eq:"${who.bob.id}"`)}`);
      assert.deepEqual(ids(f.json.docs), visibleOrders[name].filter((i) => i === 'b1'));
      const p = await get(name, '/v1/c/products/p1');
      assert.equal(p.status, 200); // any account reads products
    });
  }

  test('a collection no app declares is admin only; a studio collection is staff only', async () => {
    await srv.req('PUT', '/v1/c/secrets/s1', { body: { x: 1 } });
    for (const name of ['alice', 'sam']) {
      const r = await get(name, '/v1/c/secrets');
      assert.equal(r.status, 403);
      assert.equal((await get(name, '/v1/c/secrets/s1')).status, 404);
    }
    assert.equal((await get('alice', '/v1/c/jobs')).status, 403);
    assert.deepEqual(ids((await get('sam', '/v1/c/jobs')).json.docs), ['j1']);
  });

  test('change feed pages, long polls and SSE hide other owners\' changes', async () => {
    const base = (await get('admin', '/v1/c/zz?limit=1')).json.seq;
    await srv.req('PATCH', '/v1/c/orders/b1', { body: { notes: 'for bob' } });
    await srv.req('PATCH', '/v1/c/orders/a1', { body: { notes: 'for alice' } });
    for (const name of ['admin', 'alice', 'bob', 'sam']) {
      const r = await get(name, `/v1/changes?since=${base}`);
      assert.equal(r.status, 200);
      const seen = r.json.changes.filter((c) => c.col === 'orders').map((c) => c.id);
      assert.deepEqual(seen, { admin: ['b1', 'a1'], alice: ['a1'], bob: ['b1'], sam: [] }[name], name);
      assert.equal(r.json.seq, base + 2, 'hidden changes are still covered');
      if (name === 'alice' || name === 'sam') assert.doesNotMatch(JSON.stringify(r.json.changes), /for bob/);
    }
    // Long poll: alice waits; bob's change wakes nothing for her; hers answers.
    const poll = get('alice', `/v1/changes?since=${base + 2}&wait=5`);
    await sleep(100);
    await srv.req('PATCH', '/v1/c/orders/b1', { body: { notes: 'bob again' } });
    await srv.req('PATCH', '/v1/c/orders/a2', { body: { notes: 'alice again' } });
    const pr = await poll;
    assert.deepEqual(pr.json.changes.map((c) => c.id), ['a2']);
    // SSE from the start: only alice's orders (and the products everyone reads).
    const ac = new AbortController();
    const res = await fetch(`${srv.url}/v1/changes?since=0`, { headers: { Accept: 'text/event-stream', ...as('alice') }, signal: ac.signal });
    let text = '';
    const dec = new TextDecoder();
    const t0 = Date.now();
    for await (const chunk of res.body) {
      text += dec.decode(chunk);
      if (text.includes('alice again') || Date.now() - t0 > 3000) break;
    }
    ac.abort();
    assert.match(text, /alice again/);
    assert.doesNotMatch(text, /"b1"|for bob|bob again/);
    // ?token= works for EventSource, which cannot set headers.
    const ac2 = new AbortController();
    const r2 = await fetch(`${srv.url}/v1/changes?since=0&token=${who.bob.token}`, { headers: { Accept: 'text/event-stream' }, signal: ac2.signal });
    assert.equal(r2.status, 200);
    ac2.abort();
  });

  test('realtime: snapshots and changes follow the rule; leaving it is "removed"', async () => {
    const a = await open(srv, { token: who.alice.token });
    const snap = await subscribe(a, { id: 'o', col: 'orders' });
    assert.deepEqual(ids(snap.docs), ['a1', 'a2']);
    // A filter cannot widen it either.
    const wide = await subscribe(a, { id: 'w', col: 'orders', where: [['partner_id', 'eq', who.bob.id]] });
    assert.deepEqual(wide.docs, []);
    await srv.req('PUT', '/v1/c/orders/b2', { body: order(who.bob.id, 4) });
    await srv.req('PUT', '/v1/c/orders/a3', { body: order(who.alice.id, 5) });
    const add = await a.next((m) => m.t === 'change' && m.sub === 'o');
    assert.deepEqual([add.op, add.id], ['added', 'a3']);
    // An order moved from alice to bob is removed for her, without its new content.
    await srv.req('PATCH', '/v1/c/orders/a3', { body: { partner_id: who.bob.id } });
    const rem = await a.next((m) => m.t === 'change' && m.sub === 'o');
    assert.deepEqual([rem.op, rem.id, rem.doc], ['removed', 'a3', undefined]);
    // And back: added again.
    await srv.req('PATCH', '/v1/c/orders/a3', { body: { partner_id: who.alice.id } });
    assert.equal((await a.next((m) => m.t === 'change' && m.sub === 'o')).op, 'added');
    await sleep(100);
    assert.doesNotMatch(JSON.stringify(a.msgs), /"b2"|"b1"/);
    // Resume with since: the same view, nothing of bob's.
    a.send({ t: 'sub', id: 'r', col: 'orders', since: snap.seq });
    for (;;) {
      const m = await a.next((x) => x.sub === 'r');
      if (m.t === 'synced') break;
      assert.ok(!['b1', 'b2'].includes(m.id), JSON.stringify(m));
    }
    // System collections are for admins.
    for (const col of ['_presence', '_activity']) {
      a.send({ t: 'sub', id: col, col });
      const err = await a.next((m) => m.t === 'error' && m.sub === col);
      assert.equal(err.error.code, 'forbidden');
    }
    a.send({ t: 'sub', id: 'j', col: 'jobs' });
    assert.equal((await a.next((m) => m.t === 'error' && m.sub === 'j')).error.code, 'forbidden');
    await a.close();
    // sam (staff) sees no orders at all, live or not.
    const s = await open(srv, { token: who.sam.token });
    assert.deepEqual((await subscribe(s, { id: 'o', col: 'orders' })).docs, []);
    await srv.req('PATCH', '/v1/c/orders/a1', { body: { notes: 'x' } });
    await sleep(150);
    assert.equal(s.msgs.filter((m) => m.t === 'change').length, 0);
    await s.close();
  });

  test('export and the activity log are admin only', async () => {
    for (const name of ['alice', 'sam']) {
      assert.equal((await get(name, '/v1/admin/export')).status, 403);
      assert.equal((await get(name, '/v1/activity')).status, 403);
      assert.equal((await get(name, '/v1/activity/export')).status, 403);
      assert.equal((await get(name, '/v1/accounts')).status, 403);
    }
    const ex = await get('admin', '/v1/admin/export');
    assert.equal(ex.status, 200);
    assert.deepEqual(ids(ex.json.orders).filter((i) => i.startsWith('a') || i.startsWith('b')).sort(),
      ['a1', 'a2', 'a3', 'b1', 'b2']);
    assert.equal(ex.json._accounts, undefined, 'accounts are not exported');
    assert.doesNotMatch(ex.text, /argon2|\$argon/);
  });
});

describe('writes', () => {
  test('a partner writes nothing directly: no create, no update, no delete, no batch', async () => {
    const before_ = await listAll(srv, 'orders');
    const prodBefore = await listAll(srv, 'products');
    const h = { headers: as('alice') };
    const tries = [
      ['POST', '/v1/c/orders', order(who.alice.id, 1), 403],
      ['PUT', '/v1/c/orders/a1', order(who.alice.id, 9), 403],
      ['PATCH', '/v1/c/orders/a1', { status: 'shipped' }, 403],
      ['DELETE', '/v1/c/orders/a1', undefined, 403],
      ['PATCH', '/v1/c/orders/b1', { notes: 'mine now' }, 404],
      ['DELETE', '/v1/c/orders/b1', undefined, 404],
      ['PUT', '/v1/c/orders/b1', order(who.alice.id, 1), 404],
      ['POST', '/v1/c/products', { sku: 'Z', name: 'z', price_cents: 0, stock: 1 }, 403],
      ['PATCH', '/v1/c/products/p1', { price_cents: 1 }, 403],
      ['PUT', '/v1/c/secrets/s2', { x: 1 }, 403],
      ['POST', '/v1/batch', { ops: [{ op: 'patch', col: 'orders', id: 'b1', doc: { notes: 'x' } }] }, 404],
      ['POST', '/v1/batch', { ops: [{ op: 'create', col: 'orders', doc: order(who.alice.id, 1) }] }, 403],
    ];
    for (const [m, p, body, want] of tries) {
      const r = await srv.req(m, p, { ...h, body });
      assert.equal(r.status, want, `${m} ${p}: ${r.status} ${r.text}`);
      assert.doesNotMatch(r.text, /mine now|"partner_id"/);
    }
    assert.deepEqual(await listAll(srv, 'orders'), before_);
    assert.deepEqual(await listAll(srv, 'products'), prodBefore);
  });

  test('staff writes jobs (its rule), not users; admin writes everything', async () => {
    const r1 = await srv.req('PATCH', '/v1/c/jobs/j1', { headers: as('sam'), body: { status: 'assigned' } });
    assert.equal(r1.status, 200, r1.text);
    const r2 = await srv.req('POST', '/v1/c/users', { headers: as('sam'), body: { name: 'Kim' } });
    assert.equal(r2.status, 403);
    const r3 = await srv.req('POST', '/v1/c/users', { body: { name: 'Kim', status: 'active' } });
    assert.equal(r3.status, 201);
  });
});
