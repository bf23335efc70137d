// Durability: a write that was answered survives kill -9 (SIGKILL right in
// the middle of a burst), and a clean SIGTERM exits 0 with everything intact.

import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, listAll, lastSeq, workers, userFields } from './lib.mjs';

const servers = [];
after(async () => {
  for (const s of servers) if (!s.exited) await s.kill();
});

// Runs `n` workers that create documents and patch them, recording every
// acknowledged write, until `stopWhen(acked)` says so or requests fail.
async function writeBurst(srv, n, { stopAfter, onAck }) {
  const acked = new Map(); // "col/id" -> {version, body}
  let count = 0;
  let stopped = false;
  await workers(n, async (w) => {
    let mine = [];
    for (let i = 0; !stopped; i++) {
      let res;
      try {
        if (i % 4 === 3 && mine.length) {
          const id = mine[(i * 7) % mine.length];
          res = await srv.req('PATCH', `/v1/c/dur/${id}`, { body: { patched: i } });
        } else if (i % 10 === 5) {
          res = await srv.req('PUT', `/v1/c/dur2/w${w}-${i}`, { body: { w, i, put: true } });
        } else {
          res = await srv.req('POST', '/v1/c/dur', { body: { w, i, pad: 'p'.repeat(i % 50) } });
        }
      } catch {
        return; // the server went away
      }
      if (res.status !== 200 && res.status !== 201) {
        if (res.status === 503) return;
        throw new Error(`unexpected ${res.status}: ${res.text}`);
      }
      const d = res.json;
      const col = res.json.put ? 'dur2' : 'dur';
      const key = `${col}/${d.id}`;
      const prev = acked.get(key);
      if (!prev || prev.version < d.version) acked.set(key, { version: d.version, doc: d });
      if (col === 'dur' && d.version === 1) mine.push(d.id);
      count++;
      onAck?.(count);
      if (count >= stopAfter) stopped = true;
    }
  });
  return { acked, count };
}

async function verifyAcked(srv, acked) {
  const missing = [];
  const older = [];
  for (const [key, { version, doc }] of acked) {
    const g = await srv.req('GET', `/v1/c/${key}`);
    if (g.status !== 200) { missing.push(`${key} v${version}: ${g.status}`); continue; }
    if (g.json.version < version) older.push(`${key}: acked v${version}, found v${g.json.version}`);
    else if (g.json.version === version) assert.deepEqual(g.json, doc, `${key} content`);
  }
  assert.deepEqual(missing.slice(0, 10), [], `${missing.length} acknowledged docs missing`);
  assert.deepEqual(older.slice(0, 10), [], `${older.length} acknowledged versions lost`);
}

async function verifyFeedGapless(srv, minCount) {
  let since = 0;
  let expect = 1;
  for (let page = 0; page < 1000; page++) {
    const res = await srv.req('GET', `/v1/changes?since=${since}&limit=1000`);
    assert.equal(res.status, 200, res.text);
    if (res.json.changes.length === 0) break;
    for (const c of res.json.changes) {
      assert.equal(c.seq, expect, 'feed is gapless after recovery');
      expect++;
    }
    since = res.json.seq;
  }
  assert.ok(expect - 1 >= minCount, `feed has ${expect - 1} changes, at least ${minCount} acknowledged`);
  assert.equal(await lastSeq(srv), expect - 1);
}

describe('kill -9', () => {
  test('every acknowledged write survives SIGKILL in the middle of a burst', async () => {
    const srv = await startServer({ args: ['--no-access-log'] });
    servers.push(srv);
    let killed = false;
    const { acked, count } = await writeBurst(srv, 20, {
      stopAfter: 100000,
      onAck: (n) => {
        if (n >= 2000 && !killed) {
          killed = true;
          srv.proc.kill('SIGKILL'); // synchronously, with other writes in flight
          srv.expectExit = true;
        }
      },
    });
    assert.ok(killed);
    assert.ok(count >= 2000);
    const code = await srv.kill();
    assert.equal(srv.exitSignal, 'SIGKILL', `exit ${code}`);

    await srv.restart();
    await verifyAcked(srv, acked);
    await verifyFeedGapless(srv, count);
    const creates = [...acked.keys()].filter((k) => k.startsWith('dur/')).length;
    const docs = await listAll(srv, 'dur');
    assert.ok(docs.length >= creates);

    // The recovered server takes writes and goes on numbering.
    const s0 = await lastSeq(srv);
    const w = await srv.req('POST', '/v1/c/dur', { body: { after: true } });
    assert.equal(w.status, 201, w.text);
    assert.equal(await lastSeq(srv), s0 + 1);
    assert.equal(await srv.stop(), 0, srv.stderrTail());
  });

  test('kill -9 twice in a row, then restart: still intact', async () => {
    const srv = await startServer({ args: ['--no-access-log'] });
    servers.push(srv);
    const { acked } = await writeBurst(srv, 10, { stopAfter: 300 });
    await srv.kill();
    await srv.restart();
    const more = await writeBurst(srv, 10, { stopAfter: 300 });
    await srv.kill();
    await srv.restart();
    for (const [k, v] of more.acked) {
      const p = acked.get(k);
      if (!p || p.version < v.version) acked.set(k, v);
    }
    await verifyAcked(srv, acked);
    await verifyFeedGapless(srv, 600);
    assert.equal(await srv.stop(), 0, srv.stderrTail());
  });
});

describe('SIGTERM', () => {
  test('exit code 0 and every write intact after restart', async () => {
    const srv = await startServer();
    servers.push(srv);
    const expected = new Map();
    for (let i = 0; i < 50; i++) {
      const res = await srv.req('PUT', `/v1/c/term/d${i}`, { body: { i, s: `v${i}` } });
      assert.equal(res.status, 201);
      expected.set(`d${i}`, res.json);
    }
    for (let i = 0; i < 50; i += 5) {
      const res = await srv.req('PATCH', `/v1/c/term/d${i}`, { body: { patched: true } });
      expected.set(`d${i}`, res.json);
    }
    for (let i = 1; i < 50; i += 7) {
      assert.equal((await srv.req('DELETE', `/v1/c/term/d${i}`)).status, 200);
      expected.delete(`d${i}`);
    }
    const seqBefore = await lastSeq(srv);
    const feedBefore = (await srv.req('GET', '/v1/changes?since=0&limit=1000')).json;

    assert.equal(await srv.stop(), 0, srv.stderrTail());
    await srv.restart();

    const docs = await listAll(srv, 'term');
    assert.equal(docs.length, expected.size);
    for (const d of docs) assert.deepEqual(d, expected.get(d.id));
    assert.equal(await lastSeq(srv), seqBefore);
    const feedAfter = (await srv.req('GET', '/v1/changes?since=0&limit=1000')).json;
    assert.deepEqual(feedAfter, feedBefore, 'the change feed survives a restart unchanged');
    assert.deepEqual(userFields(docs[0]), userFields(expected.get(docs[0].id)));
    assert.equal(await srv.stop(), 0, srv.stderrTail());
  });

  test('an Idempotency-Key answer survives a restart', async () => {
    const srv = await startServer();
    servers.push(srv);
    const headers = { 'Idempotency-Key': 'survives-restart' };
    const a = await srv.req('POST', '/v1/c/idem', { body: { n: 1 }, headers });
    assert.equal(a.status, 201);
    const b1 = await srv.req('POST', '/v1/batch', { body: { ops: [{ op: 'create', col: 'idem', doc: { n: 2 } }] }, headers: { 'Idempotency-Key': 'batch-survives' } });
    assert.equal(b1.status, 200);
    assert.equal(await srv.stop(), 0);
    await srv.restart();
    const b = await srv.req('POST', '/v1/c/idem', { body: { n: 1 }, headers });
    assert.equal(b.status, 201);
    assert.deepEqual(b.json, a.json);
    const b2 = await srv.req('POST', '/v1/batch', { body: { ops: [{ op: 'create', col: 'idem', doc: { n: 2 } }] }, headers: { 'Idempotency-Key': 'batch-survives' } });
    assert.deepEqual(b2.json, b1.json);
    assert.equal((await listAll(srv, 'idem')).length, 2);
    assert.equal(await srv.stop(), 0);
  });

  test('a second server on the same data dir is refused while the first runs', async () => {
    const srv = await startServer();
    servers.push(srv);
    await assert.rejects(startServer({ dataDir: srv.dataDir, auth: false }), /exited/);
    const res = await srv.req('GET', '/v1/health');
    assert.equal(res.status, 200);
    assert.equal(await srv.stop(), 0, srv.stderrTail());
  });
});
