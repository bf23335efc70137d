// Realtime over WebSocket (GET /v1/realtime): the handshake and its checks,
// subscriptions (snapshot, live changes relative to the filter, one
// document), resume with since, unsub, ping, call, presence, errors,
// heartbeats and slow readers. Clients: the `ws` npm package, and Debian's
// python3-websockets for interoperability.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startServer, raw, sleep, listAll } from './lib.mjs';
import { connect, open, subscribe, View } from './rt.mjs';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
let AUTH = ''; // the admin's Authorization line of the server in use
const upgradeReq = (extra = '', host = 't') =>
  `GET /v1/realtime HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
  `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${KEY}\r\n${AUTH}${extra}\r\n`;

// Runs body on a server of the test's own (opts as startServer's; AUTH set
// for raw requests); after body the server must stop with exit code 0.
async function onOwnServer(opts, body) {
  const srv = await startServer(opts);
  AUTH = srv.authLine();
  await body(srv);
  assert.equal(await srv.stop(), 0, srv.stderrTail());
}

describe('handshake', () => {
  let srv;
  before(async () => { srv = await startServer({ args: ['--allow-origin', 'https://portal.example'] }); AUTH = srv.authLine(); });
  after(async () => { assert.equal(await srv.stop(), 0, srv.stderrTail()); });

  test('101 with the RFC 6455 accept key', async () => {
    const r = await raw(srv.port, upgradeReq(), { timeout: 1000 });
    assert.match(r.text, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.match(r.text, /\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/i);
    assert.match(r.text, /\r\nUpgrade: websocket\r\n/i);
  });

  test('a plain GET is 400 and says to upgrade', async () => {
    const r = await srv.req('GET', '/v1/realtime');
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'bad_request');
  });

  test('POST is 405', async () => {
    const r = await srv.req('POST', '/v1/realtime', { body: {} });
    assert.equal(r.status, 405);
  });

  for (const [name, extra, want] of [
    ['version 8', upgradeReq().replace('Version: 13', 'Version: 8'), 400],
    ['no key', upgradeReq().replace(`Sec-WebSocket-Key: ${KEY}\r\n`, ''), 400],
    ['a key of 15 bytes', upgradeReq().replace(KEY, 'dGhlIHNhbXBsZSBub25jZQ'), 400],
    ['a key that is not base64', upgradeReq().replace(KEY, '!!!!!!!!!!!!!!!!!!!!!!=='), 400],
    ['Connection without upgrade', upgradeReq().replace('Connection: Upgrade', 'Connection: keep-alive'), 400],
  ]) {
    test(`${name} -> ${want}`, async () => {
      const r = await raw(srv.port, extra, { timeout: 2000, untilResponses: 1 });
      assert.equal(r.responses[0]?.status, want, r.text.slice(0, 300));
    });
  }

  test('Origin of another site -> 403; same origin and --allow-origin -> 101', async () => {
    let r = await raw(srv.port, upgradeReq('Origin: https://evil.example\r\n'), { timeout: 2000, untilResponses: 1 });
    assert.equal(r.responses[0]?.status, 403, r.text.slice(0, 300));
    assert.equal(r.responses[0].json?.error?.code, 'forbidden');
    r = await raw(srv.port, upgradeReq('Origin: http://t\r\n'), { timeout: 500 });
    assert.match(r.text, /^HTTP\/1\.1 101 /);
    r = await raw(srv.port, upgradeReq('Origin: https://portal.example\r\n'), { timeout: 500 });
    assert.match(r.text, /^HTTP\/1\.1 101 /);
    r = await raw(srv.port, upgradeReq('Origin: https://portal.example.evil\r\n'), { timeout: 2000, untilResponses: 1 });
    assert.equal(r.responses[0]?.status, 403);
    r = await raw(srv.port, upgradeReq('Origin: null\r\n'), { timeout: 2000, untilResponses: 1 });
    assert.equal(r.responses[0]?.status, 403);
  });

  test('frames sent right behind the upgrade request are read', async () => {
    // A masked text frame {"t":"ping"} in the same packet as the request.
    const payload = Buffer.from('{"t":"ping"}');
    const mask = Buffer.from([1, 2, 3, 4]);
    const frame = Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask,
      Buffer.from(payload.map((b, i) => b ^ mask[i % 4]))]);
    const r = await raw(srv.port, [Buffer.concat([Buffer.from(upgradeReq()), frame])], { timeout: 800 });
    assert.ok(r.buf.includes(Buffer.from('{"t":"pong"}')), r.text);
  });
});

describe('subscriptions', () => {
  let srv;
  before(async () => { srv = await startServer(); AUTH = srv.authLine(); });
  after(async () => { assert.equal(await srv.stop(), 0, srv.stderrTail()); });

  test('snapshot, then added/modified/removed relative to the filter', async () => {
    await srv.req('PUT', '/v1/c/orders/o1', { body: { status: 'pending', n: 1 } });
    await srv.req('PUT', '/v1/c/orders/o2', { body: { status: 'shipped', n: 2 } });
    const c = await open(srv);
    const all = await subscribe(c, { id: 'all', col: 'orders' });
    const pend = await subscribe(c, { id: 'p', col: 'orders', where: [['status', 'eq', 'pending']] });
    assert.deepEqual(all.docs.map((d) => d.id), ['o1', 'o2']);
    assert.deepEqual(pend.docs.map((d) => d.id), ['o1']);
    assert.equal(pend.seq, all.seq);

    await srv.req('PATCH', '/v1/c/orders/o2', { body: { status: 'pending' } }); // enters the filter
    await srv.req('PATCH', '/v1/c/orders/o1', { body: { status: 'shipped' } }); // leaves it
    await srv.req('PATCH', '/v1/c/orders/o2', { body: { n: 3 } });              // stays in
    await srv.req('DELETE', '/v1/c/orders/o2');                                 // deleted
    await srv.req('PUT', '/v1/c/other/x', { body: { status: 'pending' } });     // another collection

    const got = [];
    for (let i = 0; i < 4; i++) got.push(await c.next((m) => m.t === 'change' && m.sub === 'p'));
    assert.deepEqual(got.map((m) => [m.op, m.id]), [
      ['added', 'o2'], ['removed', 'o1'], ['modified', 'o2'], ['removed', 'o2']]);
    assert.equal(got[0].doc.status, 'pending');
    assert.equal(got[1].doc, undefined);
    assert.equal(got[3].doc, undefined);
    const seqs = got.map((m) => m.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
    assert.ok(seqs[0] > pend.seq);

    const allGot = [];
    for (let i = 0; i < 4; i++) allGot.push(await c.next((m) => m.t === 'change' && m.sub === 'all'));
    assert.deepEqual(allGot.map((m) => m.op), ['modified', 'modified', 'modified', 'removed']);
    await sleep(100);
    assert.equal(c.msgs.filter((m) => m.t === 'change' && m.sub !== 'all' && m.sub !== 'p').length, 0);
    await c.close();
  });

  test('one document', async () => {
    await srv.req('PUT', '/v1/c/items/a', { body: { v: 1 } });
    const c = await open(srv);
    const s = await subscribe(c, { id: 'd', col: 'items', doc: 'a' });
    assert.deepEqual(s.docs.map((d) => d.v), [1]);
    const missing = await subscribe(c, { id: 'm', col: 'items', doc: 'nope' });
    assert.deepEqual(missing.docs, []);
    await srv.req('PUT', '/v1/c/items/b', { body: { v: 9 } });
    await srv.req('PATCH', '/v1/c/items/a', { body: { v: 2 } });
    await srv.req('PUT', '/v1/c/items/nope', { body: { v: 5 } });
    const m1 = await c.next((m) => m.t === 'change' && m.sub === 'd');
    assert.deepEqual([m1.op, m1.id, m1.doc.v], ['modified', 'a', 2]);
    const m2 = await c.next((m) => m.t === 'change' && m.sub === 'm');
    assert.deepEqual([m2.op, m2.id], ['added', 'nope']);
    await sleep(100);
    assert.equal(c.msgs.filter((m) => m.t === 'change' && m.id === 'b').length, 0);
    await c.close();
  });

  test('operators in where: in, gt, contains, ne; pinned and unpinned together', async () => {
    const c = await open(srv);
    await subscribe(c, { id: 'in', col: 'w', where: [['k', 'in', ['a', 'b']]] });
    await subscribe(c, { id: 'gt', col: 'w', where: [['n', 'gt', 5]] });
    await subscribe(c, { id: 'has', col: 'w', where: [['tags', 'contains', 'red']] });
    await subscribe(c, { id: 'pin', col: 'w', where: [['k', 'eq', 'a'], ['n', 'ge', 1]] });
    await srv.req('PUT', '/v1/c/w/1', { body: { k: 'a', n: 7, tags: ['red'] } });
    await srv.req('PUT', '/v1/c/w/2', { body: { k: 'c', n: 1, tags: [] } });
    await srv.req('PATCH', '/v1/c/w/2', { body: { k: 'a' } });
    const want = { in: [['added', '1'], ['added', '2']], gt: [['added', '1']],
      has: [['added', '1']], pin: [['added', '1'], ['added', '2']] };
    for (const [sub, ops] of Object.entries(want)) {
      for (const [op, id] of ops) {
        const m = await c.next((x) => x.t === 'change' && x.sub === sub);
        assert.deepEqual([m.op, m.id], [op, id], `sub ${sub}`);
      }
    }
    await sleep(100);
    assert.equal(c.msgs.filter((m) => m.t === 'change').length, 6);
    await c.close();
  });

  test('since: every change after it, then synced, then live; seq in order', async () => {
    const c0 = await open(srv);
    const first = await subscribe(c0, { id: 's', col: 'resume' });
    await c0.close();
    for (let i = 0; i < 5; i++) await srv.req('PUT', `/v1/c/resume/r${i}`, { body: { i } });
    await srv.req('DELETE', '/v1/c/resume/r0');
    const c = await open(srv);
    c.send({ t: 'sub', id: 's', col: 'resume', since: first.seq });
    const view = new View();
    view.snapshot(first.docs, first.seq);
    for (;;) {
      const m = await c.next((x) => x.sub === 's');
      if (m.t === 'synced') { assert.equal(m.seq, view.seq); break; }
      assert.equal(m.t, 'change');
      view.apply(m);
    }
    assert.deepEqual(view.seqs.length, 6);
    await srv.req('PUT', '/v1/c/resume/r9', { body: { i: 9 } });
    view.apply(await c.next((x) => x.t === 'change'));
    assert.deepEqual(view.sorted().map((d) => d.id), (await listAll(srv, 'resume')).map((d) => d.id));
    assert.equal(c.msgs.filter((m) => m.t === 'snapshot').length, 0);
    await c.close();
  });

  test('since ahead of the feed, or bad values -> error for that sub only', async () => {
    const c = await open(srv);
    c.send({ t: 'sub', id: 'x', col: 'resume', since: 1e12 });
    let m = await c.next((x) => x.t === 'error');
    assert.equal(m.sub, 'x');
    assert.equal(m.error.code, 'resync_required');
    for (const bad of [{ since: -1 }, { since: 'a' }, { since: 1.5 }, { col: 'Bad' }, { col: '_secret' },
      { where: 'x' }, { where: [['a', 'eq']] }, { where: [['a', 'like', 1]] }, { where: [['a b', 'eq', 1]] },
      { where: [['a', 'in', 5]] }, { doc: 'no/slash' }, { doc: 5 }]) {
      c.send({ t: 'sub', id: 'bad', col: 'resume', ...bad });
      m = await c.next((x) => x.t === 'error');
      assert.equal(m.sub, 'bad', JSON.stringify(bad));
      assert.ok(['bad_request', 'not_found'].includes(m.error.code), JSON.stringify(m));
    }
    // The connection is still good.
    c.send({ t: 'ping' });
    await c.next((x) => x.t === 'pong');
    await c.close();
  });

  test('unsub stops changes; unknown unsub is an error; duplicate ids refused', async () => {
    const c = await open(srv);
    await subscribe(c, { id: 'u', col: 'unsubbed' });
    c.send({ t: 'sub', id: 'u', col: 'unsubbed' });
    let m = await c.next((x) => x.t === 'error');
    assert.equal(m.error.code, 'bad_request');
    c.send({ t: 'unsub', id: 'u' });
    c.send({ t: 'unsub', id: 'u' });
    m = await c.next((x) => x.t === 'error');
    assert.equal(m.error.code, 'not_found');
    await srv.req('PUT', '/v1/c/unsubbed/a', { body: {} });
    c.send({ t: 'ping' });
    await c.next((x) => x.t === 'pong');
    await sleep(100);
    assert.equal(c.msgs.filter((x) => x.t === 'change').length, 0);
    await c.close();
  });

  test('bad messages get errors, the connection stays', async () => {
    const c = await open(srv);
    for (const bad of ['not json', '[]', '{}', '{"t":"nope"}', '{"t":"sub"}', '{"t":"sub","id":"a"}',
      '{"t":"sub","id":"","col":"x"}', `{"t":"sub","id":"${'x'.repeat(65)}","col":"x"}`,
      '{"t":"unsub"}', '{"t":"call","id":"c"}', '{"t":"call","id":"c","fn":"f","args":[1]}',
      '{"t":"presence"}', '{"t":"ping","t":"ping"}', `{"t":"presence","state":"${'x'.repeat(5000)}"}`,
      '{"a":' + '['.repeat(70) + ']'.repeat(70) + '}']) {
      c.send(bad);
      const m = await c.next((x) => x.t === 'error');
      assert.equal(m.error.code, 'bad_request', bad.slice(0, 80));
    }
    c.send({ t: 'ping' });
    await c.next((x) => x.t === 'pong');
    await c.close();
  });

  test('at most 100 subscriptions per connection', async () => {
    const c = await open(srv);
    for (let i = 0; i < 100; i++) c.send({ t: 'sub', id: `s${i}`, col: 'many', doc: `d${i}` });
    for (let i = 0; i < 100; i++) await c.next((x) => x.t === 'snapshot');
    c.send({ t: 'sub', id: 'one-more', col: 'many' });
    const m = await c.next((x) => x.t === 'error');
    assert.equal(m.sub, 'one-more');
    await c.close();
  });

  test('call answers not_found until server functions exist', async () => {
    const c = await open(srv);
    c.send({ t: 'call', id: 'r1', fn: 'place_order', args: {} });
    const m = await c.next((x) => x.t === 'result');
    assert.deepEqual([m.id, m.ok, m.error.code], ['r1', false, 'not_found']);
    await c.close();
  });

  test('a large snapshot comes in pieces, all at one seq', async () => {
    const ops = [];
    for (let i = 0; i < 3000; i++) ops.push({ op: 'put', col: 'big', id: `b${String(i).padStart(5, '0')}`, doc: { i, pad: 'x'.repeat(500) } }); // ~2 MB: more than the 1 MiB a snapshot sends before it waits for the socket to drain
    for (let i = 0; i < ops.length; i += 1000) {
      const r = await srv.req('POST', '/v1/batch', { body: { ops: ops.slice(i, i + 1000) } });
      assert.equal(r.status, 200);
    }
    const c = await open(srv);
    c.send({ t: 'sub', id: 'big', col: 'big' });
    const parts = [];
    for (;;) {
      const m = await c.next((x) => x.t === 'snapshot');
      parts.push(m);
      if (!m.more) break;
    }
    assert.ok(parts.length > 1, `${parts.length} pieces`);
    assert.equal(new Set(parts.map((p) => p.seq)).size, 1);
    const ids = parts.flatMap((p) => p.docs.map((d) => d.id));
    assert.equal(ids.length, 3000);
    assert.deepEqual(ids, [...ids].sort());
    await c.close();
  });

  test('changes made while a snapshot is read are not lost or doubled', async () => {
    const c = await open(srv);
    const writes = (async () => {
      for (let i = 0; i < 200; i++) await srv.req('PUT', `/v1/c/race/k${i % 20}`, { body: { i } });
    })();
    await sleep(5);
    const snap = await subscribe(c, { id: 'r', col: 'race' });
    const view = new View();
    view.snapshot(snap.docs, snap.seq);
    await writes;
    const final = await listAll(srv, 'race');
    const lastVersion = (v) => final.every((d) => v.docs.get(d.id)?.version === d.version);
    while (!(view.docs.size === final.length && lastVersion(view))) {
      view.apply(await c.next((x) => x.t === 'change'));
    }
    assert.deepEqual(view.sorted(), final);
    await c.close();
  });
});

describe('presence', () => {
  let srv;
  before(async () => { srv = await startServer(); AUTH = srv.authLine(); });
  after(async () => { assert.equal(await srv.stop(), 0, srv.stderrTail()); });

  test('one document per connection: added, modified by presence, removed on close', async () => {
    const admin = await open(srv);
    const snap = await subscribe(admin, { id: 'p', col: '_presence' });
    assert.equal(snap.docs.length, 1); // the admin itself
    assert.deepEqual(Object.keys(snap.docs[0]).sort(), ['account', 'id', 'role', 'since', 'state']);
    const other = await open(srv);
    const add = await admin.next((m) => m.t === 'change' && m.op === 'added');
    assert.equal(add.doc.state, null);
    other.send({ t: 'presence', state: { page: '/orders', typing: true } });
    const mod = await admin.next((m) => m.t === 'change' && m.op === 'modified');
    assert.equal(mod.id, add.id);
    assert.deepEqual(mod.doc.state, { page: '/orders', typing: true });
    assert.ok(mod.seq > add.seq);
    await other.close();
    const rem = await admin.next((m) => m.t === 'change' && m.op === 'removed');
    assert.equal(rem.id, add.id);
    await admin.close();
  });
});

describe('heartbeat and slow readers', () => {
  test('the server pings; a client that answers stays; a silent one is closed', () => onOwnServer({ args: ['--ws-ping', '1'] }, async (srv) => {
    const c = await open(srv);
    let pings = 0;
    c.ws.on('ping', () => { pings++; });
    await sleep(3500);
    assert.ok(pings >= 2, `${pings} pings`);
    assert.equal(c.closeInfo, null);
    // A client that never answers anything: raw TCP after the handshake.
    const r = await raw(srv.port, upgradeReq(), { timeout: 8000 });
    assert.ok(r.closed, 'silent connection closed');
    // Ping frames (0x89 0x00) came before the close frame (0x88).
    const body = r.buf.subarray(r.buf.indexOf('\r\n\r\n') + 4);
    assert.ok(body.includes(Buffer.from([0x89, 0x00])), body.toString('hex'));
    assert.ok(body.includes(Buffer.from([0x88])), 'close frame');
    await c.close();
  }));

  test('a ping goes out when its timer fires, not at the next I/O', () => onOwnServer({ args: ['--ws-ping', '2'] }, async (srv) => {
    // Output queued by a timer must not wait for the loop's next event.
    const net = await import('node:net');
    const sock = net.connect({ port: srv.port, host: '127.0.0.1' });
    const t0 = Date.now();
    let buf = Buffer.alloc(0);
    const pingAt = await new Promise((resolve) => {
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        const i = buf.indexOf('\r\n\r\n');
        if (i >= 0 && buf.subarray(i + 4).includes(Buffer.from([0x89, 0x00]))) resolve(Date.now() - t0);
      });
      sock.write(upgradeReq());
    });
    sock.destroy();
    assert.ok(pingAt >= 1500 && pingAt < 3000, `first ping after ${pingAt} ms (interval 2000)`);
  }));

  test('a reader that stops reading is closed with 4008 and resumes losslessly', () => onOwnServer({ args: ['--ws-max-pending', '65536'] }, async (srv) => {
    const slow = await open(srv);
    const snap = await subscribe(slow, { id: 's', col: 'flood' });
    slow.ws._socket.pause(); // stop reading: the server's output piles up
    const pad = 'y'.repeat(2000);
    for (let b = 0; b < 20; b++) {
      const ops = [];
      for (let i = 0; i < 500; i++) ops.push({ op: 'put', col: 'flood', id: `f${b}_${i}`, doc: { pad } });
      assert.equal((await srv.req('POST', '/v1/batch', { body: { ops } })).status, 200);
    }
    slow.ws._socket.resume();
    const info = await slow.closed;
    assert.equal(info.code, 4008, JSON.stringify(info));
    // Resume from the last change processed.
    const view = new View();
    view.snapshot(snap.docs, snap.seq);
    for (const m of slow.msgs) if (m.t === 'change') view.apply(m);
    const again = await open(srv);
    again.send({ t: 'sub', id: 's', col: 'flood', since: view.seq });
    for (;;) {
      const m = await again.next((x) => x.sub === 's', 20_000);
      if (m.t === 'synced') break;
      view.apply(m);
    }
    assert.equal(view.docs.size, 10_000);
    const metrics = (await srv.req('GET', '/metrics')).text;
    assert.match(metrics, /livedb_realtime_slow_closed_total [1-9]/);
    await again.close();
  }));
});

describe('feeds agree', () => {
  test('SSE, long poll and WebSocket see the same sequence', () => onOwnServer({}, async (srv) => {
    const c = await open(srv);
    const start = await subscribe(c, { id: 'all', col: 'agree' });
    const ac = new AbortController();
    const sseSeqs = [];
    const sse = (async () => {
      const res = await fetch(`${srv.url}/v1/changes?since=${start.seq}&col=agree`, {
        headers: { Accept: 'text/event-stream', Authorization: `Bearer ${srv.token}` }, signal: ac.signal });
      const dec = new TextDecoder();
      let buf = '';
      try {
        for await (const chunk of res.body) {
          buf += dec.decode(chunk);
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const ev = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const data = ev.split('\n').find((l) => l.startsWith('data: '));
            if (data) sseSeqs.push(JSON.parse(data.slice(6)).seq);
          }
        }
      } catch { /* aborted */ }
    })();
    for (let i = 0; i < 60; i++) {
      if (i % 3 === 2) await srv.req('PUT', `/v1/c/noise/n${i}`, { body: {} });
      else await srv.req('PUT', `/v1/c/agree/a${i % 7}`, { body: { i } });
    }
    const wsSeqs = [];
    while (wsSeqs.length < 40) wsSeqs.push((await c.next((m) => m.t === 'change')).seq);
    const pollSeqs = [];
    let since = start.seq;
    while (pollSeqs.length < 40) {
      const r = await srv.req('GET', `/v1/changes?since=${since}&col=agree&wait=2`);
      pollSeqs.push(...r.json.changes.map((ch) => ch.seq));
      since = r.json.seq;
    }
    for (let t = 0; sseSeqs.length < 40 && t < 100; t++) await sleep(20);
    ac.abort();
    await sse;
    assert.deepEqual(wsSeqs, pollSeqs);
    assert.deepEqual(sseSeqs.slice(0, 40), pollSeqs);
    await c.close();
  }));
});

describe('interoperability', () => {
  test("Debian's python3-websockets client subscribes and sees a change", () => onOwnServer({}, async (srv) => {
    await srv.req('PUT', '/v1/c/py/a', { body: { n: 1 } });
    const script = `
import asyncio, json, sys, urllib.request
import websockets
async def main():
    async with websockets.connect("ws://127.0.0.1:${srv.port}/v1/realtime?token=${srv.token}") as ws:
        await ws.send(json.dumps({"t": "sub", "id": "s", "col": "py"}))
        snap = json.loads(await ws.recv())
        assert snap["t"] == "snapshot" and [d["id"] for d in snap["docs"]] == ["a"], snap
        req = urllib.request.Request("http://127.0.0.1:${srv.port}/v1/c/py/b", method="PUT",
                                     data=b'{"n":2}', headers={"Content-Type": "application/json",
                                                               "Authorization": "Bearer ${srv.token}"})
        await asyncio.get_running_loop().run_in_executor(None, urllib.request.urlopen, req)
        ch = json.loads(await ws.recv())
        assert ch["t"] == "change" and ch["op"] == "added" and ch["id"] == "b", ch
        await ws.send(json.dumps({"t": "ping"}))
        assert json.loads(await ws.recv()) == {"t": "pong"}
        pong = await ws.ping()
        await asyncio.wait_for(pong, 2)
    print("ok")
asyncio.run(main())
`;
    const r = spawnSync('/usr/bin/python3', ['-c', script], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.equal(r.stdout.trim(), 'ok');
  }));
});
