// Several livedb nodes over one PostgreSQL (issue 12): three nodes serve one
// schema of the throwaway cluster that scripts/with-pg starts, and every
// promise of one node holds across them: the same seqs in the same order on
// every node, sessions and revocations everywhere, exact resume on another
// node, a node killed with kill -9, PostgreSQL restarted under load, and
// place_order never overselling whichever nodes the partners reach.
//
// Run: LIVEDB_TEST_STORE=postgres scripts/with-pg node --test tests/nodes/
// (make test-nodes).

import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, login, req, sleep, until, listAll, PG, PG_DIR } from '../api/lib.mjs';
import { open, subscribe } from '../api/rt.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
if (!PG || !PG_DIR) throw new Error('tests/nodes run over PostgreSQL: LIVEDB_TEST_STORE=postgres scripts/with-pg');

const running = [];
after(async () => { for (const n of running) if (!n.exited) await n.kill(); });

// n nodes serving one new schema; each node's req() carries a token of
// the suite's admin made on that node.
async function startNodes(n, args = []) {
  const schema = 't_' + randomBytes(6).toString('hex');
  const nodes = [];
  for (let i = 0; i < n; i++) {
    const node = await startServer({ args, schema });
    running.push(node);
    nodes.push(node);
  }
  return nodes;
}

async function stopAll(nodes) {
  for (const n of nodes) if (!n.exited) assert.equal(await n.stop(), 0, n.stderrTail());
}


// A subscriber to col on a node: the changes it was sent, in order.
async function subscriber(node, col, opts = {}) {
  const c = await open(node, opts);
  const snap = await subscribe(c, { id: 's', col });
  const got = [];
  c.ws.on('message', (data) => {
    const m = JSON.parse(data.toString());
    if (m.t === 'change' && m.sub === 's') got.push(m);
  });
  return { c, snap, got };
}

// Every change after since, read from a node's feed by long polls.
async function feedFrom(node, since, count) {
  const out = [];
  while (out.length < count) {
    const r = await node.req('GET', `/v1/changes?since=${since}&limit=1000&wait=5`);
    assert.equal(r.status, 200, r.text);
    out.push(...r.json.changes);
    if (r.json.changes.length === 0 && r.json.seq === since) break;
    since = r.json.seq;
  }
  return out;
}

const seqsOf = (list) => list.map((c) => c.seq);

function assertIncreasing(seqs, who) {
  for (let i = 1; i < seqs.length; i++) {
    assert.ok(seqs[i] > seqs[i - 1], `${who}: seq ${seqs[i]} after ${seqs[i - 1]}`);
  }
}

describe('three nodes over one database', () => {
  test('writes spread over every node: each subscriber sees every change once, in one order, with the same seqs', async () => {
    const nodes = await startNodes(3);
    const subs = await Promise.all(nodes.map((n) => subscriber(n, 'spread')));
    const acked = new Set();
    const PER = 40;
    await Promise.all(nodes.flatMap((n, ni) => [0, 1, 2].map(async (w) => {
      for (let i = 0; i < PER; i++) {
        const r = await n.req('POST', '/v1/c/spread', { body: { node: ni, w, i } });
        assert.equal(r.status, 201, r.text);
        acked.add(r.json.id);
      }
    })));
    const total = 3 * 3 * PER;
    assert.equal(acked.size, total);
    await until(() => subs.every((s) => s.got.length >= total),
      () => `subscribers have ${subs.map((s) => s.got.length).join(', ')} of ${total}`);
    await sleep(200); // nothing more may come
    const first = seqsOf(subs[0].got);
    for (const [i, s] of subs.entries()) {
      assert.equal(s.got.length, total, `node ${i}: each change once`);
      assertIncreasing(seqsOf(s.got), `node ${i}`);
      assert.deepEqual(seqsOf(s.got), first, `node ${i} has the seqs of node 0`);
      assert.deepEqual(s.got.map((m) => m.id), subs[0].got.map((m) => m.id), `node ${i}: the same order`);
      assert.deepEqual(new Set(s.got.map((m) => m.id)), acked);
      assert.ok(s.got.every((m) => m.op === 'added'));
    }
    // The durable feed says the same on every node: gapless from the
    // subscription's seq on.
    const s0 = subs[0].snap.seq;
    const feeds = await Promise.all(nodes.map((n) => feedFrom(n, s0, total)));
    for (const f of feeds) {
      assert.deepEqual(seqsOf(f), Array.from({ length: total }, (_, i) => s0 + 1 + i));
      assert.deepEqual(seqsOf(f), first);
    }
    for (const s of subs) await s.c.close();
    await stopAll(nodes);
  });

  test('read your writes: a write answered by a node is in that node\'s feed at once', async () => {
    const nodes = await startNodes(2);
    // Writes on the other node keep the feeds busy meanwhile.
    let stop = false;
    const noise = (async () => { while (!stop) await nodes[1].req('POST', '/v1/c/noise', { body: {} }); })();
    for (let i = 0; i < 100; i++) {
      const before = (await nodes[0].req('GET', '/v1/health')).json.seq;
      const w = await nodes[0].req('POST', '/v1/c/mine', { body: { i } });
      assert.equal(w.status, 201);
      const r = await nodes[0].req('GET', `/v1/changes?since=${before}&col=mine`);
      assert.equal(r.status, 200, r.text);
      assert.ok(r.json.changes.some((c) => c.id === w.json.id), `write ${i} is not in its node's feed yet`);
    }
    stop = true;
    await noise;
    await stopAll(nodes);
  });

  test('a token from one node works on the others; logout and disabling an account end its connections on every node', async () => {
    const nodes = await startNodes(3);
    const [a, b, c] = nodes;
    const who = (n, token) => n.req('GET', '/v1/auth/me', { headers: { Authorization: `Bearer ${token}` } });
    const made = await a.req('POST', '/v1/accounts', { body: { email: 'pat@example.com', role: 'admin', name: 'Pat', password: 'pat-password-1' } });
    assert.equal(made.status, 201, made.text);
    // Made on A, logged in on B (the account and its password reached B).
    const t1 = (await login(b, 'pat@example.com', 'pat-password-1')).token;
    for (const n of nodes) assert.equal((await who(n, t1)).status, 200);
    assert.equal((await who(c, 'x' + t1.slice(1))).status, 401);
    // Logout on A closes the token's connection on C, and the token is
    // refused everywhere.
    const ws = await open(c, { token: t1 });
    await subscribe(ws, { id: 'x', col: 'anything' });
    const out = await a.req('POST', '/v1/auth/logout', { headers: { Authorization: `Bearer ${t1}` } });
    assert.equal(out.status, 204);
    assert.equal((await ws.closed).code, 4003);
    for (const n of nodes) assert.equal((await who(n, t1)).status, 401);
    // Disabled on B: its connections on A and C close, its logins fail.
    const t2 = (await login(c, 'pat@example.com', 'pat-password-1')).token;
    const wsA = await open(a, { token: t2 });
    const wsC = await open(c, { token: t2 });
    const off = await b.req('PATCH', `/v1/accounts/${made.json.id}`, { body: { disabled: true } });
    assert.equal(off.status, 200, off.text);
    assert.equal((await wsA.closed).code, 4003);
    assert.equal((await wsC.closed).code, 4003);
    for (const n of nodes) {
      assert.equal((await who(n, t2)).status, 401);
      const l = await req('POST', `${n.url}/v1/auth/login`, { body: { email: 'pat@example.com', password: 'pat-password-1' } });
      assert.equal(l.status, 401);
    }
    // A new password set on C is the one every node checks.
    await b.req('PATCH', `/v1/accounts/${made.json.id}`, { body: { disabled: false } });
    assert.equal((await c.req('PATCH', `/v1/accounts/${made.json.id}`, { body: { password: 'pat-password-2' } })).status, 200);
    await until(async () => (await req('POST', `${a.url}/v1/auth/login`, { body: { email: 'pat@example.com', password: 'pat-password-2' } })).status === 200,
      () => 'the new password on A');
    assert.equal((await req('POST', `${b.url}/v1/auth/login`, { body: { email: 'pat@example.com', password: 'pat-password-1' } })).status, 401);
    await stopAll(nodes);
  });

  test('a client moved from node to node mid-stream resumes exactly (event stream and WebSocket)', async () => {
    const nodes = await startNodes(3);
    const [a, b, c] = nodes;
    const since0 = (await a.req('GET', '/v1/health')).json.seq;
    const writeOn = async (n, k, tag) => {
      for (let i = 0; i < k; i++) assert.equal((await n.req('POST', '/v1/c/moving', { body: { tag, i } })).status, 201);
    };
    // An event stream on A, cut after 10 events.
    const events = [];
    const read = async (node, lastId, want) => {
      const ac = new AbortController();
      const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${node.token}` };
      if (lastId !== null) headers['Last-Event-ID'] = String(lastId);
      const r = await fetch(`${node.url}/v1/changes?since=${since0}`, { headers, signal: ac.signal });
      assert.equal(r.status, 200);
      const dec = new TextDecoder();
      let buf = '';
      try {
        for await (const chunk of r.body) {
          buf += dec.decode(chunk, { stream: true });
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const ev = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const data = /^data: (.*)$/m.exec(ev);
            if (data) events.push(JSON.parse(data[1]));
            if (events.length >= want) { ac.abort(); return; }
          }
        }
      } catch (e) { if (e.name !== 'AbortError') throw e; }
    };
    await writeOn(b, 20, 'one');
    await read(a, null, 10);
    assert.equal(events.length, 10);
    await writeOn(c, 20, 'two');
    // Resumed on C with the last id it had: the rest, none twice.
    await read(c, events.at(-1).seq, 40);
    assert.deepEqual(seqsOf(events), Array.from({ length: 40 }, (_, i) => since0 + 1 + i));

    // A WebSocket subscriber on B moves to C with `since`, mid-stream.
    const ws = await open(b);
    const snap = await subscribe(ws, { id: 'm', col: 'moving' });
    const seen = [];
    ws.ws.on('message', (d) => { const m = JSON.parse(d.toString()); if (m.t === 'change') seen.push(m); });
    await writeOn(a, 15, 'three');
    await until(() => seen.length >= 15, () => `B's subscriber has ${seen.length} of 15`);
    const last = seen.at(-1).seq;
    await ws.close();
    await writeOn(a, 15, 'four');
    const ws2 = await open(c);
    ws2.send({ t: 'sub', id: 'm', col: 'moving', since: last });
    const synced = await ws2.next((m) => m.t === 'synced' || m.t === 'error', 10_000);
    assert.equal(synced.t, 'synced', JSON.stringify(synced));
    const rest = ws2.msgs.filter((m) => m.t === 'change');
    assert.deepEqual(rest.map((m) => m.seq), Array.from({ length: 15 }, (_, i) => last + 1 + i));
    assert.ok(snap.seq <= seen[0].seq - 1);
    // A seq no node has is refused, on the node a client asks.
    const ws3 = await open(a);
    ws3.send({ t: 'sub', id: 'z', col: 'moving', since: 1e9 });
    const err = await ws3.next((m) => m.t === 'error');
    assert.equal(err.error.code, 'resync_required');
    const far = await c.req('GET', `/v1/changes?since=${1e9}`);
    assert.equal(far.status, 410);
    await ws2.close();
    await ws3.close();
    await stopAll(nodes);
  });

  test('presence: an admin on any node sees every node\'s connections come, change and go', async () => {
    const nodes = await startNodes(3);
    const [a, b, c] = nodes;
    const watch = await open(a);
    const snap = await subscribe(watch, { id: 'p', col: '_presence' });
    assert.equal(snap.docs.length, 1, 'only the watcher itself so far');
    const onB = await open(b);
    const added = await watch.next((m) => m.t === 'change' && m.sub === 'p' && m.op === 'added');
    onB.send({ t: 'presence', state: { page: 'orders' } });
    const changed = await watch.next((m) => m.t === 'change' && m.sub === 'p' && m.op === 'modified');
    assert.equal(changed.id, added.id);
    assert.deepEqual(changed.doc.state, { page: 'orders' });
    // A subscriber on C that starts now gets all three in its snapshot.
    const onC = await open(c);
    const snapC = await subscribe(onC, { id: 'q', col: '_presence' });
    await until(async () => {
      const again = await subscribe(onC, { id: `q${Date.now()}`, col: '_presence' });
      return again.docs.length === 3;
    }, () => 'C sees the three connections');
    assert.ok(snapC.docs.length >= 2);
    await onB.close();
    const gone = await watch.next((m) => m.t === 'change' && m.sub === 'p' && m.op === 'removed' && m.id === added.id);
    assert.equal(gone.id, added.id);
    // A node killed with kill -9 says nothing: its connections go from the
    // others' presence once its heartbeats stop (7 s without one).
    const snapAfter = await subscribe(watch, { id: 'p2', col: '_presence' });
    const onCid = snapAfter.docs.find((d) => d.id !== snap.docs[0].id)?.id;
    assert.ok(onCid, 'the connection on C is there');
    const killedAt = Date.now();
    await c.kill();
    const dropped = await watch.next((m) => m.t === 'change' && m.sub === 'p2' && m.op === 'removed' && m.id === onCid, 15000);
    assert.equal(dropped.id, onCid);
    assert.ok(Date.now() - killedAt < 12000, `the killed node's connection went after ${Date.now() - killedAt} ms`);
    await watch.close();
    await stopAll([a, b]);
  });

  test('a node killed with kill -9 under load: no acknowledged write is lost; its client resumes on another node exactly', async (t) => {
    const nodes = await startNodes(3);
    const [a, b, c] = nodes;
    const since0 = (await a.req('GET', '/v1/health')).json.seq;
    const acked = new Set();
    let stop = false;
    const writers = nodes.flatMap((n) => [0, 1].map(async () => {
      while (!stop) {
        let r;
        try { r = await n.req('POST', '/v1/c/load', { body: { at: Date.now() }, timeout: 5000 }); } catch { if (n.exited) return; continue; }
        if (r.status === 201) acked.add(r.json.id);
        else if (n.exited) return;
      }
    }));
    // A feed reader on B, moved to C when B dies.
    const read = [];
    let pos = since0;
    const reader = (async () => {
      let node = b;
      for (;;) {
        let r;
        try { r = await node.req('GET', `/v1/changes?since=${pos}&limit=1000&wait=1`, { timeout: 5000 }); } catch { node = c; continue; }
        if (r.status !== 200) { node = c; continue; }
        read.push(...r.json.changes);
        pos = r.json.seq;
        if (stop && node === c && r.json.changes.length === 0) return;
      }
    })();
    await sleep(700);
    await b.kill();
    await sleep(700);
    stop = true;
    await Promise.all(writers);
    await reader;
    t.diagnostic(`${acked.size} writes acknowledged; the reader moved with ${read.length} changes`);
    assert.ok(acked.size > 50, `only ${acked.size} writes`);
    // Every acknowledged write is there, on the nodes left.
    const docs = new Set((await listAll(c, 'load')).map((d) => d.id));
    for (const id of acked) assert.ok(docs.has(id), `acknowledged ${id} is lost`);
    // The reader that moved got every change once, gapless, as C's feed has them.
    const all = await feedFrom(c, since0, 1e9);
    assert.deepEqual(seqsOf(read), seqsOf(all));
    assert.deepEqual(seqsOf(all), Array.from({ length: all.length }, (_, i) => since0 + 1 + i));
    await stopAll([a, c]);
  });

  test('PostgreSQL restarted under load: writes answer 2xx or 503, health says degraded, everyone resumes without loss', async (t) => {
    const nodes = await startNodes(3);
    const subs = await Promise.all(nodes.map((n) => subscriber(n, 'pgload')));
    const acked = new Set();
    const statuses = new Map();
    let stop = false;
    const writers = nodes.flatMap((n) => [0, 1].map(async () => {
      while (!stop) {
        const r = await n.req('POST', '/v1/c/pgload', { body: { at: Date.now() }, timeout: 10_000 });
        statuses.set(r.status, (statuses.get(r.status) || 0) + 1);
        if (r.status === 201) acked.add(r.json.id);
        else if (r.status === 503) await sleep(20);
      }
    }));
    await sleep(500);
    const degraded = (async () => {
      for (let i = 0; i < 200; i++) {
        const h = await nodes[1].req('GET', '/v1/health');
        if (h.json.status === 'degraded') return h.json;
        await sleep(25);
      }
      return null;
    })();
    // Not spawnSync: the health poller must run while PostgreSQL is away
    // (a blocked event loop would only look once it is back).
    await promisify(execFile)(path.join(ROOT, 'scripts/pg-cluster'), ['restart', PG_DIR]);
    const seen = await degraded;
    assert.ok(seen, 'health said degraded while PostgreSQL was away');
    assert.equal(seen.checks.database.status, 'reconnecting');
    // Back: writes go through again on every node.
    for (const n of nodes) {
      await until(async () => (await n.req('POST', '/v1/c/pgload', { body: { after: true } })).status === 201,
        () => `${n.url} writes again`);
    }
    stop = true;
    await Promise.all(writers);
    t.diagnostic(`writes during the restart: ${[...statuses].map(([k, v]) => `${v} x ${k}`).join(', ')}`);
    for (const s of [...statuses.keys()]) assert.ok(s === 201 || s === 503, `a write answered ${s}`);
    assert.ok(statuses.get(201) > 20);
    // Every 2xx is durable; every subscriber has every change once, in
    // the one order of the feed.
    const docs = new Set((await listAll(nodes[0], 'pgload')).map((d) => d.id));
    for (const id of acked) assert.ok(docs.has(id), `acknowledged ${id} is lost`);
    const all = await feedFrom(nodes[2], subs[0].snap.seq, docs.size);
    assert.equal(all.length, docs.size);
    await until(() => subs.every((s) => s.got.length >= all.length),
      () => `subscribers have ${subs.map((s) => s.got.length).join(', ')} of ${all.length}`);
    for (const [i, s] of subs.entries()) {
      assert.deepEqual(seqsOf(s.got), seqsOf(all), `node ${i}'s subscriber`);
    }
    for (const s of subs) await s.c.close();
    await stopAll(nodes);
  });

  test('64 partners place orders through three nodes on 10 hot products: no oversell, each order seen once by an admin on each node', async () => {
    const nodes = await startNodes(3, ['--apps', 'wholesale']);
    const STOCK = 40;
    const products = [];
    for (let i = 0; i < 10; i++) {
      const r = await nodes[i % 3].req('POST', '/v1/c/products', {
        body: { sku: `HOT-${i}`, name: `Hot ${i}`, category: 'test', unit: 'box', price_cents: 100, stock: STOCK, active: true },
      });
      assert.equal(r.status, 201, r.text);
      products.push(r.json.id);
    }
    const partners = [];
    for (let i = 0; i < 64; i++) {
      const r = await nodes[i % 3].req('POST', '/v1/accounts', { body: { email: `p${i}@example.com`, role: 'partner', name: `P${i}`, password: 'partner-pass-1' } });
      assert.equal(r.status, 201, r.text);
    }
    for (let i = 0; i < 64; i++) {
      const node = nodes[(i + 1) % 3]; // logged in on another node than made
      partners.push({ node, token: (await login(node, `p${i}@example.com`, 'partner-pass-1')).token });
    }
    const admins = await Promise.all(nodes.map((n) => subscriber(n, 'orders')));
    const placed = [];
    let refused = 0;
    await Promise.all(partners.map(async (p, i) => {
      for (let k = 0; k < 6; k++) {
        const items = [{ product_id: products[(i * 7 + k) % 10], qty: 1 + ((i + k) % 3) }];
        const r = await req('POST', `${p.node.url}/v1/fn/place_order`, { body: { items }, headers: { Authorization: `Bearer ${p.token}` } });
        if (r.status === 200) placed.push(r.json.order);
        else { assert.equal(r.status, 422, r.text); assert.equal(r.json.error.code, 'insufficient_stock'); refused++; }
      }
    }));
    assert.ok(refused > 0, 'the products ran out');
    for (const [i, pid] of products.entries()) {
      const sold = placed.flatMap((o) => o.items).filter((it) => it.product_id === pid).reduce((s, it) => s + it.qty, 0);
      const now = (await nodes[(i + 2) % 3].req('GET', `/v1/c/products/${pid}`)).json.stock;
      assert.ok(now >= 0, `product ${i} oversold: stock ${now}`);
      assert.equal(now, STOCK - sold, `product ${i}: stock ${now}, sold ${sold}`);
    }
    const ids = new Set(placed.map((o) => o.id));
    await until(() => admins.every((s) => s.got.length >= ids.size),
      () => `admins saw ${admins.map((s) => s.got.length).join(', ')} of ${ids.size}`);
    await sleep(200);
    for (const [i, s] of admins.entries()) {
      assert.equal(s.got.length, ids.size, `the admin on node ${i} saw each order once`);
      assert.deepEqual(new Set(s.got.map((m) => m.id)), ids);
    }
    for (const s of admins) await s.c.close();
    await stopAll(nodes);
  });
});
