// Concurrency: 50 clients x 200 creates at once; every document is listed
// exactly once and the change feed holds seq 1..10000 exactly once, in
// order. Also concurrent writes to one document (versions never repeat) and
// optimistic read-modify-write with If-Match (no lost update).

import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { serverForTests, listAll, lastSeq, workers, sleep } from './lib.mjs';

let srv;
const r = (...a) => srv.req(...a);
serverForTests((s) => { srv = s; }, { args: ['--no-access-log'] });

const CLIENTS = 50;
const PER_CLIENT = 200;
const TOTAL = CLIENTS * PER_CLIENT;

describe('50 clients x 200 creates', () => {
  const created = new Map(); // id -> {w, i}

  // Followers that run during the load: an event stream and a long-poll
  // loop, each must see seq 1..10000 exactly once, in order.
  const sseSeqs = [];
  const pollSeqs = [];
  let sseDone;
  let pollDone;

  before(async () => {
    const ac = new AbortController();
    const sseRes = await fetch(`${srv.url}/v1/changes?since=0`, { headers: { Accept: 'text/event-stream', Authorization: `Bearer ${srv.token}` }, signal: ac.signal });
    assert.equal(sseRes.status, 200);
    sseDone = (async () => {
      const dec = new TextDecoder();
      let buf = '';
      try {
        for await (const chunk of sseRes.body) {
          buf += dec.decode(chunk, { stream: true });
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const m = /^id: ?(\d+)$/m.exec(block);
            if (m) sseSeqs.push(Number(m[1]));
          }
          if (sseSeqs.length >= TOTAL) break;
        }
      } catch { /* aborted */ }
      ac.abort();
    })();
    pollDone = (async () => {
      let since = 0;
      for (let g = 0; g < 100000 && since < TOTAL; g++) {
        const res = await r('GET', `/v1/changes?since=${since}&limit=1000&wait=20`, { timeout: 40000 });
        assert.equal(res.status, 200, res.text);
        pollSeqs.push(...res.json.changes.map((c) => c.seq));
        since = res.json.seq;
      }
    })();
    await sleep(100);

    const failures = [];
    await workers(CLIENTS, async (w) => {
      for (let i = 0; i < PER_CLIENT; i++) {
        const res = await r('POST', '/v1/c/load', { body: { w, i, tag: `w${w}-i${i}` } });
        if (res.status !== 201) { failures.push(`${res.status} ${res.text}`); continue; }
        created.set(res.json.id, { w, i });
      }
    });
    assert.deepEqual(failures.slice(0, 5), [], `${failures.length} creates failed`);
  });

  test('every create succeeded with a distinct id', () => {
    assert.equal(created.size, TOTAL);
  });

  test('list pages (limit 1000) show all 10,000 documents exactly once, by id', async () => {
    const docs = await listAll(srv, 'load');
    assert.equal(docs.length, TOTAL);
    const ids = docs.map((d) => d.id);
    assert.equal(new Set(ids).size, TOTAL, 'no duplicates');
    const sorted = [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    assert.deepEqual(ids, sorted, 'default order is by id');
    for (const d of docs) {
      const c = created.get(d.id);
      assert.ok(c, `unknown id ${d.id}`);
      assert.equal(d.w, c.w);
      assert.equal(d.i, c.i);
      assert.equal(d.version, 1);
    }
  });

  test('the change feed holds seq 1..10000 exactly once, in order', async () => {
    const seen = [];
    let since = 0;
    for (let page = 0; page < 100; page++) {
      const res = await r('GET', `/v1/changes?since=${since}&limit=1000`);
      assert.equal(res.status, 200, res.text);
      if (res.json.changes.length === 0) break;
      for (const c of res.json.changes) seen.push(c);
      since = res.json.seq;
    }
    assert.equal(seen.length, TOTAL);
    seen.forEach((c, k) => {
      assert.equal(c.seq, k + 1, 'gapless and in order');
      assert.equal(c.op, 'create');
      assert.equal(c.col, 'load');
    });
    assert.equal(new Set(seen.map((c) => c.id)).size, TOTAL);
    for (const c of seen) assert.ok(created.has(c.id));
    assert.equal(await lastSeq(srv), TOTAL);
  });

  test('an event stream open during the load saw seq 1..10000 once each, in order', async () => {
    let t;
    await Promise.race([sseDone, new Promise((resolve) => { t = setTimeout(resolve, 30000); })]);
    clearTimeout(t);
    assert.equal(sseSeqs.length, TOTAL, `events received: ${sseSeqs.length}`);
    sseSeqs.forEach((q, k) => assert.equal(q, k + 1));
  });

  test('a long-poll follower during the load saw seq 1..10000 once each, in order', async () => {
    await pollDone;
    assert.equal(pollSeqs.length, TOTAL);
    pollSeqs.forEach((q, k) => assert.equal(q, k + 1));
  });

  test('a filtered, ordered query over the load sees exactly the matching docs', async () => {
    const docs = await listAll(srv, 'load', `where=${encodeURIComponent('w:eq:7')}&order=-i`);
    assert.deepEqual(docs.map((d) => d.i), Array.from({ length: PER_CLIENT }, (_, k) => PER_CLIENT - 1 - k));
  });
});

describe('concurrent batches', () => {
  test('20 concurrent batches of 10: each batch is contiguous in the feed and ends at its seq', async () => {
    const s0 = await lastSeq(srv);
    const answers = await Promise.all(Array.from({ length: 20 }, (_, b) => r('POST', '/v1/batch', {
      body: { ops: Array.from({ length: 10 }, (_, k) => ({ op: 'create', col: 'cb', id: `b${b}-${k}`, doc: { b, k } })) },
    })));
    const res = await r('GET', `/v1/changes?since=${s0}&limit=1000`);
    const bySeq = new Map(res.json.changes.map((c) => [c.seq, c]));
    assert.equal(res.json.changes.length, 200);
    answers.forEach((a, b) => {
      assert.equal(a.status, 200, a.text);
      for (let k = 0; k < 10; k++) {
        const c = bySeq.get(a.json.seq - 9 + k);
        assert.equal(c?.id, `b${b}-${k}`, `batch ${b} op ${k} at seq ${a.json.seq - 9 + k}`);
      }
    });
  });
});

describe('automatic indexes built while writes go on', () => {
  test('queries match the data after concurrent writes to the indexed fields', async () => {
    const N = 3000;
    const model = new Map();
    for (let b = 0; b < N / 1000; b++) {
      const ops = [];
      for (let k = 0; k < 1000; k++) {
        const i = b * 1000 + k;
        const doc = { score: i % 100, grp: `g${i % 7}` };
        ops.push({ op: 'put', col: 'idx', id: `d${String(i).padStart(5, '0')}`, doc });
        model.set(`d${String(i).padStart(5, '0')}`, doc);
      }
      const res = await r('POST', '/v1/batch', { body: { ops } });
      assert.equal(res.status, 200, res.text.slice(0, 300));
    }
    const ids = [...model.keys()];
    const q1 = `where=${encodeURIComponent('score:gt:50')}`;
    const q2 = `where=${encodeURIComponent('grp:eq:"g3"')}&order=-score`;
    // Writers (each owns a slice of ids, so its last answer is the final state)
    // race with the first queries, which start the index builds.
    const writers = workers(10, async (w) => {
      for (let j = 0; j < 60; j++) {
        const id = ids[w * 300 + ((j * 37) % 300)];
        if (j % 15 === 14) {
          const d = await r('DELETE', `/v1/c/idx/${id}`);
          if (d.status === 200) model.delete(id);
          else assert.equal(d.status, 404);
          continue;
        }
        const patch = { score: (j * 13 + w) % 100, grp: `g${(j + w) % 7}` };
        const res = await r('PUT', `/v1/c/idx/${id}`, { body: patch });
        assert.ok(res.status === 200 || res.status === 201, res.text);
        model.set(id, patch);
      }
    });
    const readers = workers(2, async () => {
      for (let j = 0; j < 10; j++) {
        assert.equal((await r('GET', `/v1/c/idx?${q1}&limit=1000`)).status, 200);
        assert.equal((await r('GET', `/v1/c/idx?${q2}&limit=1000`)).status, 200);
      }
    });
    await Promise.all([writers, readers]);
    const exp1 = [...model.entries()].filter(([, d]) => d.score > 50).map(([id]) => id).sort();
    const exp2 = [...model.entries()].filter(([, d]) => d.grp === 'g3')
      .sort((a, b) => b[1].score - a[1].score || (a[0] < b[0] ? 1 : -1)).map(([id]) => id);
    for (let round = 0; round < 3; round++) {
      const got1 = (await listAll(srv, 'idx', q1)).map((d) => d.id);
      assert.deepEqual(got1, exp1, `score:gt:50, round ${round}`);
      const got2 = (await listAll(srv, 'idx', q2)).map((d) => d.id);
      assert.deepEqual(got2, exp2, `grp:eq:"g3" order -score, round ${round}`);
      await sleep(500);
    }
  });

  test('the writer queue is empty once the load is over', async () => {
    const m = await r('GET', '/metrics');
    assert.match(m.text, /^livedb_writer_queue_depth 0$/m);
  });
});

describe('contention on one document', () => {
  test('20 clients x 25 PATCHes: every answer has a distinct version, final version 501', async () => {
    const c = await r('PUT', '/v1/c/hot/one', { body: { n: 0 } });
    assert.equal(c.status, 201);
    const versions = [];
    await workers(20, async (w) => {
      for (let i = 0; i < 25; i++) {
        const res = await r('PATCH', '/v1/c/hot/one', { body: { [`w${w}`]: i } });
        assert.equal(res.status, 200, res.text);
        versions.push(res.json.version);
        assert.equal(res.json[`w${w}`], i, 'the answer holds this write');
      }
    });
    assert.equal(new Set(versions).size, 500);
    assert.deepEqual([...versions].sort((a, b) => a - b), Array.from({ length: 500 }, (_, k) => k + 2));
    const g = await r('GET', '/v1/c/hot/one');
    assert.equal(g.json.version, 501);
    for (let w = 0; w < 20; w++) assert.equal(g.json[`w${w}`], 24, 'every client\'s last write is kept');
  });

  test('If-Match read-modify-write loses no increment', async () => {
    await r('PUT', '/v1/c/hot/counter', { body: { n: 0 } });
    const CL = 10;
    const EACH = 10;
    let conflicts = 0;
    await workers(CL, async () => {
      for (let i = 0; i < EACH; i++) {
        for (let attempt = 0; ; attempt++) {
          assert.ok(attempt < 1000, 'too many retries');
          const g = await r('GET', '/v1/c/hot/counter');
          const p = await r('PUT', '/v1/c/hot/counter', { body: { n: g.json.n + 1 }, headers: { 'If-Match': g.headers.get('etag') } });
          if (p.status === 200) break;
          assert.equal(p.status, 412, p.text);
          conflicts++;
        }
      }
    });
    const g = await r('GET', '/v1/c/hot/counter');
    assert.equal(g.json.n, CL * EACH);
    assert.equal(g.json.version, CL * EACH + 1);
  });

  test('concurrent POSTs with the same id: exactly one 201, the rest 409', async () => {
    const rs = await Promise.all(Array.from({ length: 30 }, (_, k) => r('POST', '/v1/c/hot', { body: { id: 'race', k } })));
    const st = rs.map((x) => x.status).sort();
    assert.equal(st.filter((s) => s === 201).length, 1, st.join(','));
    assert.equal(st.filter((s) => s === 409).length, 29, st.join(','));
  });

  test('concurrent PUT-creates of one new id: exactly one 201, the rest 200, versions 1..N', async () => {
    const rs = await Promise.all(Array.from({ length: 30 }, (_, k) => r('PUT', '/v1/c/hot/putrace', { body: { k } })));
    assert.equal(rs.filter((x) => x.status === 201).length, 1);
    assert.equal(rs.filter((x) => x.status === 200).length, 29);
    assert.deepEqual(rs.map((x) => x.json.version).sort((a, b) => a - b), Array.from({ length: 30 }, (_, k) => k + 1));
  });
});
