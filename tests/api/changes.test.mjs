// Change feed: gapless seqs in commit order, change shape, col filter and
// covered seq, limit, since bounds (410), long poll, Server-Sent Events with
// Last-Event-ID, pruning with --retain-changes, and feeds ending on SIGTERM.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { serverForTests, startServer, assertError, lastSeq, sleep, TIME_RE } from './lib.mjs';

let srv;
const r = (...a) => srv.req(...a);
serverForTests((s) => { srv = s; });

// Opens an SSE stream with fetch. take(n) resolves with the next n events
// ({id, data, event}); comments (": ping") are counted in `comments`.
async function openSSE(server, p, headers = {}) {
  const url = server.url + p;
  headers = { Authorization: `Bearer ${server.token}`, ...headers };
  const ac = new AbortController();
  const headTimer = setTimeout(() => ac.abort(), 15000);
  let res;
  try {
    res = await fetch(url, { headers: { Accept: 'text/event-stream', ...headers }, signal: ac.signal });
  } finally {
    clearTimeout(headTimer);
  }
  const s = {
    status: res.status, headers: res.headers, events: [], comments: 0, ended: false, buf: '',
    waiters: [],
    close() { ac.abort(); },
    async take(n, timeoutMs = 15000) {
      const deadline = Date.now() + timeoutMs;
      while (s.events.length < n) {
        if (s.ended) throw new Error(`SSE stream ended after ${s.events.length} events, wanted ${n}`);
        if (Date.now() > deadline) throw new Error(`SSE: timed out with ${s.events.length} events, wanted ${n}`);
        await new Promise((resolve) => { s.waiters.push(resolve); setTimeout(resolve, 100); });
      }
      return s.events.splice(0, n);
    },
  };
  if (res.status !== 200) {
    s.text = await res.text();
    return s;
  }
  s.done = (async () => {
    const dec = new TextDecoder();
    try {
      for await (const chunk of res.body) {
        s.buf += dec.decode(chunk, { stream: true });
        s.buf = s.buf.replace(/\r\n/g, '\n');
        let i;
        while ((i = s.buf.indexOf('\n\n')) >= 0) {
          const block = s.buf.slice(0, i);
          s.buf = s.buf.slice(i + 2);
          const ev = { id: undefined, data: undefined, event: undefined };
          const data = [];
          let any = false;
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) { s.comments++; continue; }
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            let value = c < 0 ? '' : line.slice(c + 1);
            if (value.startsWith(' ')) value = value.slice(1);
            if (field === 'id') { ev.id = value; any = true; }
            else if (field === 'data') { data.push(value); any = true; }
            else if (field === 'event') { ev.event = value; any = true; }
          }
          if (any) {
            ev.data = data.join('\n');
            s.events.push(ev);
          }
        }
        for (const w of s.waiters.splice(0)) w();
      }
    } catch { /* aborted or reset */ }
    s.ended = true;
    for (const w of s.waiters.splice(0)) w();
  })();
  return s;
}

const writes = []; // [{col, id, op, answer}]
async function write(method, col, id, body) {
  const path = id ? `/v1/c/${col}/${id}` : `/v1/c/${col}`;
  const res = await r(method, path, body !== undefined ? { body } : {});
  assert.ok([200, 201].includes(res.status), `${method} ${path}: ${res.status} ${res.text}`);
  const op = method === 'DELETE' ? 'delete' : (method === 'POST' || res.status === 201) ? 'create' : 'update';
  writes.push({ col, id: res.json.id, op, answer: res.json });
  return res.json;
}

describe('feed contents', () => {
  before(async () => {
    await write('POST', 'fa', null, { n: 1 });
    await write('PUT', 'fa', 'x1', { n: 2 });
    await write('PATCH', 'fa', 'x1', { m: 3 });
    await write('PUT', 'fb', 'y1', { n: 4 });
    await write('PUT', 'fa', 'x1', { n: 5 });
    await write('DELETE', 'fa', 'x1');
    for (let i = 0; i < 24; i++) await write(i % 3 ? 'POST' : 'PUT', i % 2 ? 'fa' : 'fb', i % 3 ? null : `z${i}`, { i });
  });

  test('seqs are 1..N, gapless, in commit order, with the right shape', async () => {
    const res = await r('GET', '/v1/changes?since=0&limit=1000');
    assert.equal(res.status, 200, res.text);
    const { changes, seq } = res.json;
    assert.equal(changes.length, writes.length);
    assert.equal(seq, writes.length);
    changes.forEach((c, i) => {
      const w = writes[i];
      assert.equal(c.seq, i + 1);
      assert.equal(c.col, w.col);
      assert.equal(c.id, w.id);
      assert.equal(c.op, w.op, `change ${i + 1} op`);
      assert.equal(c.version, w.answer.version);
      assert.match(c.at, TIME_RE);
      if (w.op === 'delete') assert.equal(c.doc, null);
      else assert.deepEqual(c.doc, w.answer);
      for (const k of ['seq', 'col', 'id', 'op', 'version', 'doc', 'at']) assert.ok(k in c, `change has ${k}`);
    });
  });

  test('default since is 0 and default limit 100', async () => {
    const res = await r('GET', '/v1/changes');
    assert.equal(res.status, 200);
    assert.equal(res.json.changes.length, Math.min(100, writes.length));
    assert.equal(res.json.changes[0].seq, 1);
  });

  test('limit pages through every change exactly once', async () => {
    for (const limit of [1, 4, 7]) {
      const seen = [];
      let since = 0;
      for (let guard = 0; guard < 100; guard++) {
        const res = await r('GET', `/v1/changes?since=${since}&limit=${limit}`);
        assert.equal(res.status, 200, res.text);
        assert.ok(res.json.changes.length <= limit);
        seen.push(...res.json.changes.map((c) => c.seq));
        if (res.json.changes.length) assert.equal(res.json.seq, res.json.changes.at(-1).seq);
        if (res.json.changes.length === 0) { assert.equal(res.json.seq, since); break; }
        since = res.json.seq;
      }
      assert.deepEqual(seen, writes.map((_, i) => i + 1));
    }
  });

  test('col filter skips other collections; the answer seq covers them', async () => {
    const last = writes.length;
    const want = writes.map((w, i) => ({ ...w, seq: i + 1 })).filter((w) => w.col === 'fa').map((w) => w.seq);
    const all = await r('GET', '/v1/changes?since=0&limit=1000&col=fa');
    assert.equal(all.status, 200);
    assert.deepEqual(all.json.changes.map((c) => c.seq), want);
    assert.ok(all.json.changes.every((c) => c.col === 'fa'));
    assert.equal(all.json.seq, last, 'seq covers the skipped changes after the last fa change');

    // Paged with a small limit: each fa change once; seq always moves on.
    const seen = [];
    let since = 0;
    for (let guard = 0; since < last && guard < 100; guard++) {
      const res = await r('GET', `/v1/changes?since=${since}&limit=2&col=fa`);
      assert.equal(res.status, 200);
      seen.push(...res.json.changes.map((c) => c.seq));
      assert.ok(res.json.seq > since, 'seq moves on');
      assert.ok(res.json.changes.every((c) => c.seq <= res.json.seq));
      since = res.json.seq;
    }
    assert.deepEqual(seen, want);

    // No matching collection: empty, and the seq still covers what was scanned.
    const none = await r('GET', '/v1/changes?since=0&col=nosuchcol');
    assert.equal(none.status, 200);
    assert.deepEqual(none.json.changes, []);
    assert.ok(none.json.seq > 0 && none.json.seq <= last);
  });

  test('since = last -> empty; since in the future -> 410 resync_required', async () => {
    const last = writes.length;
    const res = await r('GET', `/v1/changes?since=${last}`);
    assert.equal(res.status, 200);
    assert.deepEqual(res.json.changes, []);
    assert.equal(res.json.seq, last);
    assertError(await r('GET', `/v1/changes?since=${last + 1}`), 410, 'resync_required');
    assertError(await r('GET', '/v1/changes?since=999999999'), 410, 'resync_required');
  });

  for (const q of ['since=-1', 'since=x', 'since=1.5', 'limit=0', 'limit=1001', 'limit=x', 'wait=61', 'wait=-1',
    'wait=x', 'col=Bad', 'col=1x', 'since=99999999999999999999999']) {
    test(`bad parameter ${q} -> 400`, async () => {
      assertError(await r('GET', `/v1/changes?${q}`), 400, 'bad_request');
    });
  }

  test('POST /v1/changes -> 405', async () => {
    const res = await r('POST', '/v1/changes', { body: {} });
    assertError(res, 405, 'method_not_allowed');
    assert.match(res.headers.get('allow') || '', /GET/);
  });
});

describe('long poll', () => {
  test('returns as soon as a write commits', async () => {
    const last = await lastSeq(srv);
    const poll = r('GET', `/v1/changes?since=${last}&wait=30`, { timeout: 45000 });
    await sleep(300);
    const doc = await write('PUT', 'lp', 'w1', { hello: 1 });
    const res = await poll;
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.changes.length, 1);
    assert.equal(res.json.changes[0].seq, last + 1);
    assert.equal(res.json.changes[0].id, 'w1');
    assert.deepEqual(res.json.changes[0].doc, doc);
    assert.equal(res.json.seq, last + 1);
  });

  test('with col, only a matching change ends the wait', async () => {
    const last = await lastSeq(srv);
    const poll = r('GET', `/v1/changes?since=${last}&wait=30&col=lp_a`, { timeout: 45000 });
    await sleep(200);
    await write('PUT', 'lp_b', 'other', { x: 1 });
    await sleep(200);
    await write('PUT', 'lp_a', 'mine', { x: 2 });
    const res = await poll;
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json.changes.map((c) => [c.col, c.id]), [['lp_a', 'mine']]);
    assert.equal(res.json.changes[0].seq, last + 2);
    assert.equal(res.json.seq, last + 2);
  });

  test('many waiters all wake', async () => {
    const last = await lastSeq(srv);
    const polls = Array.from({ length: 20 }, () => r('GET', `/v1/changes?since=${last}&wait=30`, { timeout: 45000 }));
    await sleep(300);
    await write('POST', 'lp', null, { n: 1 });
    for (const res of await Promise.all(polls)) {
      assert.equal(res.status, 200);
      assert.equal(res.json.changes[0].seq, last + 1);
    }
  });

  test('a change already there answers at once', async () => {
    const last = await lastSeq(srv);
    const res = await r('GET', `/v1/changes?since=${last - 1}&wait=60`, { timeout: 70000 });
    assert.equal(res.status, 200);
    assert.equal(res.json.changes.length, 1);
  });

  test('no change within wait -> empty answer with seq = since', async () => {
    const last = await lastSeq(srv);
    const res = await r('GET', `/v1/changes?since=${last}&wait=1`);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json.changes, []);
    assert.equal(res.json.seq, last);
  });

  test('wait=0 answers at once', async () => {
    const last = await lastSeq(srv);
    const res = await r('GET', `/v1/changes?since=${last}&wait=0`);
    assert.equal(res.status, 200);
    assert.deepEqual(res.json.changes, []);
  });
});

describe('server-sent events', () => {
  test('streams history then live changes, id: is the seq', async () => {
    const last = await lastSeq(srv);
    const feed = (await r('GET', `/v1/changes?since=0&limit=1000`)).json.changes;
    const s = await openSSE(srv, `/v1/changes?since=0`);
    try {
      assert.equal(s.status, 200, s.text);
      assert.match(s.headers.get('content-type') || '', /^text\/event-stream/);
      const evs = await s.take(last);
      evs.forEach((e, i) => {
        assert.equal(e.id, String(i + 1));
        assert.deepEqual(JSON.parse(e.data), feed[i]);
      });
      const doc = await write('PUT', 'sse', 'live1', { live: true });
      const [ev] = await s.take(1);
      assert.equal(ev.id, String(last + 1));
      const ch = JSON.parse(ev.data);
      assert.equal(ch.seq, last + 1);
      assert.equal(ch.op, 'create');
      assert.deepEqual(ch.doc, doc);
      await write('DELETE', 'sse', 'live1');
      const [ev2] = await s.take(1);
      assert.equal(JSON.parse(ev2.data).op, 'delete');
      assert.equal(JSON.parse(ev2.data).doc, null);
    } finally {
      s.close();
    }
  });

  test('Last-Event-ID resumes after that seq (and overrides since)', async () => {
    const last = await lastSeq(srv);
    const s = await openSSE(srv, `/v1/changes?since=0`, { 'Last-Event-ID': String(last - 2) });
    try {
      assert.equal(s.status, 200, s.text);
      const evs = await s.take(2);
      assert.deepEqual(evs.map((e) => e.id), [String(last - 1), String(last)]);
      await write('PUT', 'sse', 'live2', { n: 2 });
      const [ev] = await s.take(1);
      assert.equal(ev.id, String(last + 1));
      assert.equal(s.events.length, 0, 'nothing extra');
    } finally {
      s.close();
    }
  });

  test('col filter applies to the stream', async () => {
    const last = await lastSeq(srv);
    const s = await openSSE(srv, `/v1/changes?since=${last}&col=sse_only`);
    try {
      assert.equal(s.status, 200);
      await write('PUT', 'sse_other', 'a', { n: 1 });
      await write('PUT', 'sse_only', 'b', { n: 2 });
      const [ev] = await s.take(1);
      const ch = JSON.parse(ev.data);
      assert.equal(ch.col, 'sse_only');
      assert.equal(ch.seq, last + 2);
    } finally {
      s.close();
    }
  });

  test('since in the future on a stream -> 410', async () => {
    const last = await lastSeq(srv);
    const s = await openSSE(srv, `/v1/changes?since=${last + 10}`);
    s.close();
    assert.equal(s.status, 410);
  });

  test('closing streams does not disturb the server', async () => {
    for (let i = 0; i < 20; i++) {
      const s = await openSSE(srv, `/v1/changes?since=0`);
      s.close();
    }
    await write('POST', 'sse', null, { n: 3 });
    const res = await r('GET', '/v1/health');
    assert.equal(res.status, 200);
  });
});

describe('--retain-changes 5', () => {
  let small;
  before(async () => { small = await startServer({ args: ['--retain-changes', '5'] }); });
  after(async () => { if (small) assert.equal(await small.stop(), 0, small.stderrTail()); });

  test('old since -> 410 resync_required; recent since still works; docs are kept', async () => {
    for (let i = 0; i < 50; i++) {
      const res = await small.req('PUT', `/v1/c/keep/d${i}`, { body: { i } });
      assert.equal(res.status, 201);
    }
    // Pruning may run in the background: allow it a while to catch up.
    let res;
    for (let i = 0; i < 100; i++) {
      res = await small.req('GET', '/v1/changes?since=1');
      if (res.status === 410) break;
      await sleep(100);
    }
    assertError(res, 410, 'resync_required');
    assertError(await small.req('GET', '/v1/changes?since=0'), 410, 'resync_required');
    const s = await openSSE(small, `/v1/changes?since=0`);
    s.close();
    assert.equal(s.status, 410, 'an event stream from a pruned since is refused too');

    const recent = await small.req('GET', '/v1/changes?since=47');
    assert.equal(recent.status, 200, recent.text);
    assert.deepEqual(recent.json.changes.map((c) => c.seq), [48, 49, 50]);
    const list = await small.req('GET', '/v1/c/keep?limit=1000');
    assert.equal(list.json.docs.length, 50, 'pruning the feed keeps the documents');
    assert.equal(list.json.seq, 50);
    assertError(await small.req('GET', '/v1/changes?since=51'), 410, 'resync_required');
  });
});

describe('--feed-memory 10', () => {
  let fm;
  before(async () => { fm = await startServer({ args: ['--feed-memory', '10'] }); });
  after(async () => { if (fm) assert.equal(await fm.stop(), 0, fm.stderrTail()); });

  test('reads from before the in-memory window come from the database, gapless', async () => {
    const docs = [];
    for (let i = 0; i < 60; i++) {
      const res = await fm.req('PUT', `/v1/c/fm${i % 2}/d${i}`, { body: { i } });
      assert.equal(res.status, 201);
      docs.push(res.json);
    }
    for (const since of [0, 5, 45, 49, 50, 51, 59]) {
      const res = await fm.req('GET', `/v1/changes?since=${since}&limit=1000`);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json.changes.map((c) => c.seq), Array.from({ length: 60 - since }, (_, k) => since + k + 1), `since=${since}`);
      res.json.changes.forEach((c) => assert.deepEqual(c.doc, docs[c.seq - 1]));
    }
    // Paging with small limits across the memory boundary.
    const seen = [];
    let since = 0;
    for (let g = 0; g < 100; g++) {
      const res = await fm.req('GET', `/v1/changes?since=${since}&limit=7&col=fm1`);
      assert.equal(res.status, 200);
      seen.push(...res.json.changes.map((c) => c.seq));
      if (res.json.seq >= 60) break;
      assert.ok(res.json.seq > since);
      since = res.json.seq;
    }
    assert.deepEqual(seen, Array.from({ length: 30 }, (_, k) => 2 * k + 2));
    // An event stream from an old position replays from the database, then goes live.
    const s = await openSSE(fm, `/v1/changes?since=3`);
    try {
      assert.equal(s.status, 200);
      const evs = await s.take(57);
      assert.deepEqual(evs.map((e) => Number(e.id)), Array.from({ length: 57 }, (_, k) => k + 4));
      await fm.req('PUT', '/v1/c/fm0/live', { body: {} });
      const [ev] = await s.take(1);
      assert.equal(ev.id, '61');
    } finally {
      s.close();
    }
  });
});

describe('shutdown ends feeds', () => {
  test('SIGTERM ends long polls and event streams, exit 0', async () => {
    const s2 = await startServer();
    await s2.req('PUT', '/v1/c/t/a', { body: {} });
    const poll = s2.req('GET', '/v1/changes?since=1&wait=60', { timeout: 70000 }).then((x) => x.status, () => 'error');
    const sse = await openSSE(s2, `/v1/changes?since=1`);
    assert.equal(sse.status, 200);
    await sleep(300);
    const code = await s2.stop(20000);
    assert.equal(code, 0, s2.stderrTail());
    const pollResult = await poll;
    assert.ok(pollResult === 200 || pollResult === 503 || pollResult === 'error', `long poll ended with ${pollResult}`);
    await sse.done;
    assert.ok(sse.ended);
  });
});
