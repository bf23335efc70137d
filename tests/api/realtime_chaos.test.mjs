// Exactness under chaos: 20 subscribers with different filters, 5,000
// writes from concurrent writers, every subscriber's connection cut at
// random moments (at least 3 times each) and resumed with `since`. Each
// subscriber must end with exactly the changes that concern it, in seq
// order, no gap and no duplicate, and a view equal to a fresh list query.
//
// The expected changes come from a model: the whole change feed
// (GET /v1/changes) replayed in order, with each subscriber's filter applied
// to the document before and after every change.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sleep, listAll, workers } from './lib.mjs';
import { connect, View } from './rt.mjs';

const COLORS = ['red', 'green', 'blue', 'cyan', 'black'];
const WRITES = 5000;
const WRITERS = 10;
const IDS = 300;

// [name, where (realtime form), extra sub fields]
const SUBS = [
  ['all', null],
  ...COLORS.map((c) => [`color-${c}`, [['color', 'eq', c]]]),
  ['n-lt-20', [['n', 'lt', 20]]],
  ['n-ge-80', [['n', 'ge', 80]]],
  ['warm', [['color', 'in', ['red', 'black']]]],
  ['tag-a', [['tags', 'contains', 'a']]],
  ['not-blue', [['color', 'ne', 'blue']]],
  ['red-small', [['color', 'eq', 'red'], ['n', 'lt', 50]]],
  ['green-big', [['n', 'gt', 50], ['color', 'eq', 'green']]],
  ['name-has-7', [['name', 'contains', '7']]],
  ['flag-true', [['flag', 'eq', true]]],
  ['flag-false', [['flag', 'eq', false]]],
  ['doc-5', null, { doc: 'k5' }],
  ['doc-77', null, { doc: 'k77' }],
  ['n-eq-0', [['n', 'eq', 0]]],
  ['nested', [['meta.level', 'ge', 2]]],
];

function field(doc, path) {
  let v = doc;
  for (const k of path.split('.')) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !(k in v)) return undefined;
    v = v[k];
  }
  return v;
}
const same = (a, b) => typeof a === typeof b && a === b;
function condMatch([f, op, val], doc) {
  const v = field(doc, f);
  if (v === undefined) return false;
  switch (op) {
    case 'eq': return same(v, val);
    case 'ne': return !same(v, val);
    case 'lt': return typeof v === typeof val && v < val;
    case 'le': return typeof v === typeof val && v <= val;
    case 'gt': return typeof v === typeof val && v > val;
    case 'ge': return typeof v === typeof val && v >= val;
    case 'in': return val.some((x) => same(v, x));
    case 'contains':
      if (Array.isArray(v)) return v.some((x) => same(x, val));
      return typeof v === 'string' && typeof val === 'string' && v.includes(val);
    default: throw new Error(op);
  }
}
function matches(sub, doc) {
  if (!doc) return false;
  if (sub.doc && doc.id !== sub.doc) return false;
  return !sub.where || sub.where.every((c) => condMatch(c, doc));
}
function whereQuery(sub) {
  const parts = (sub.where || []).map(([f, op, v]) => `where=${encodeURIComponent(`${f}:${op}:${JSON.stringify(v)}`)}`);
  if (sub.doc) parts.push(`where=${encodeURIComponent(`id:eq:${JSON.stringify(sub.doc)}`)}`);
  return parts.join('&');
}

function rand(n) { return Math.floor(Math.random() * n); }
function randomDoc(i) {
  const d = { color: COLORS[rand(COLORS.length)], n: rand(100), name: `item ${rand(1000)}`,
    tags: ['a', 'b', 'c'].filter(() => Math.random() < 0.4), flag: Math.random() < 0.5 };
  if (Math.random() < 0.7) d.meta = { level: rand(4) };
  if (i % 11 === 0) delete d.n;
  return d;
}

// One subscriber that cuts its own connection and resumes.
class Subscriber {
  constructor(srv, spec) {
    const [name, where, extra] = spec;
    this.srv = srv;
    this.sub = { id: name, col: 'chaos', ...(where ? { where } : {}), ...(extra || {}) };
    this.view = new View();
    this.log = []; // [seq, op, id] of every change applied
    this.cuts = 0;
    this.startSeq = null;
    this.done = false;
  }
  async start() {
    await this.connect(null);
  }
  async connect(since) {
    const c = connect(this.srv);
    this.c = c;
    await c.opened;
    c.send({ t: 'sub', ...this.sub, ...(since === null ? {} : { since }) });
    c.ws.on('message', () => this.drain());
    if (since === null) {
      const docs = [];
      for (;;) {
        const m = await c.next((x) => x.t === 'snapshot' || x.t === 'error', 10_000);
        assert.equal(m.t, 'snapshot', JSON.stringify(m));
        docs.push(...m.docs);
        if (!m.more) { this.view.snapshot(docs, m.seq); this.startSeq = m.seq; break; }
      }
    }
    this.drain();
  }
  drain() {
    for (;;) {
      const m = this.c.take((x) => x.t === 'change' || x.t === 'synced' || x.t === 'error');
      if (!m) return;
      assert.notEqual(m.t, 'error', `${this.sub.id}: ${JSON.stringify(m)}`);
      if (m.t === 'synced') {
        // Caught up to m.seq: changes up to there that concern it were sent.
        assert.ok(m.seq >= this.view.seq, `${this.sub.id}: synced ${m.seq} before ${this.view.seq}`);
        this.view.seq = m.seq;
        continue;
      }
      this.view.apply(m);
      this.log.push([m.seq, m.op, m.id]);
    }
  }
  async cut() {
    this.cuts++;
    await this.c.terminate();
    this.drain();
    await this.connect(this.view.seq);
  }
}

test('20 subscribers, 5000 writes, connections cut and resumed: exact views', async () => {
  const srv = await startServer();
  const subs = SUBS.map((s) => new Subscriber(srv, s));
  // Some data before anyone subscribes.
  const ops = [];
  for (let i = 0; i < IDS; i += 2) ops.push({ op: 'put', col: 'chaos', id: `k${i}`, doc: randomDoc(i) });
  assert.equal((await srv.req('POST', '/v1/batch', { body: { ops } })).status, 200);
  await Promise.all(subs.map((s) => s.start()));

  let written = 0;
  const writing = workers(WRITERS, async (w) => {
    for (let j = 0; j < WRITES / WRITERS; j++) {
      const i = rand(IDS);
      const id = `k${i}`;
      const kind = rand(10);
      let r;
      if (kind < 4) r = await srv.req('PUT', `/v1/c/chaos/${id}`, { body: randomDoc(i) });
      else if (kind < 8) {
        const patch = [{ color: COLORS[rand(5)] }, { n: rand(100) }, { tags: ['a'] }, { flag: Math.random() < 0.5 },
          { meta: { level: rand(4) } }, { n: null }][rand(6)];
        r = await srv.req('PATCH', `/v1/c/chaos/${id}`, { body: patch });
        if (r.status === 404) r = await srv.req('PUT', `/v1/c/chaos/${id}`, { body: randomDoc(i) });
      } else if (kind < 9) {
        r = await srv.req('DELETE', `/v1/c/chaos/${id}`);
        if (r.status === 404) r = await srv.req('PUT', `/v1/c/chaos/${id}`, { body: randomDoc(i) });
      } else {
        r = await srv.req('POST', '/v1/batch', { body: { ops: [
          { op: 'put', col: 'chaos', id, doc: randomDoc(i) },
          { op: 'put', col: 'chaos', id: `k${(i + 1) % IDS}`, doc: randomDoc(i + 1) }] } });
      }
      assert.ok([200, 201].includes(r.status), `${r.status} ${r.text}`);
      written++;
    }
  });
  // Cut every subscriber at least 3 times, at random moments, while writes go on.
  const cutting = Promise.all(subs.map(async (s) => {
    for (let k = 0; k < 3; k++) {
      await sleep(50 + rand(400));
      await s.cut();
    }
    while (written < WRITES) {
      await sleep(100 + rand(600));
      if (written < WRITES && Math.random() < 0.5) await s.cut();
    }
  }));
  await writing;
  await cutting;

  // The model: the whole feed replayed in order.
  const feed = [];
  for (let since = 0; ;) {
    const r = await srv.req('GET', `/v1/changes?since=${since}&limit=1000`);
    feed.push(...r.json.changes);
    if (r.json.changes.length === 0) break;
    since = r.json.seq;
  }
  for (let i = 0; i < feed.length; i++) assert.equal(feed[i].seq, i + 1, 'the feed is gapless');
  const lastSeq = feed.length;

  for (const s of subs) {
    const state = new Map();
    const expected = [];
    for (const ch of feed) {
      if (ch.col !== 'chaos') continue;
      const before = state.get(ch.id);
      const after = ch.doc;
      if (after) state.set(ch.id, after); else state.delete(ch.id);
      if (ch.seq <= s.startSeq) continue;
      const was = matches(s.sub, before), is = matches(s.sub, after);
      if (is) expected.push([ch.seq, was ? 'modified' : 'added', ch.id]);
      else if (was) expected.push([ch.seq, 'removed', ch.id]);
    }
    // Wait until the subscriber has heard everything that concerns it.
    const t0 = Date.now();
    while (s.log.length < expected.length && Date.now() - t0 < 20_000) await sleep(20);
    assert.ok(s.cuts >= 3, `${s.sub.id} cut ${s.cuts} times`);
    assert.deepEqual(s.log, expected, `${s.sub.id}: changes heard`);
    const fresh = await listAll(srv, 'chaos', whereQuery(s.sub));
    assert.deepEqual(s.view.sorted(), fresh, `${s.sub.id}: view equals a fresh list`);
    assert.ok(s.view.seq <= lastSeq);
  }
  await Promise.all(subs.map((s) => s.c.close()));
  assert.equal(await srv.stop(), 0, srv.stderrTail());
});
