// HTTP framing and limits over raw sockets: malformed requests (400 and
// close), request smuggling shapes, header and body limits (431, 413),
// keep-alive pipelining, the header timeout against a slow client, unknown
// routes (404) and wrong methods (405). None of them may change stored data
// or disturb a well-behaved client working at the same time.

import { test, before, after, beforeEach, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, assertError, snapshot, raw as rawRequest, openSocket, sleep } from './lib.mjs';

let srv;
// Requests carry the admin's token: each "Host: t" line is followed by it.
const withAuth = (b) => (Array.isArray(b) ? b.map(withAuth)
  : typeof b === 'string' ? b.replaceAll('Host: t\r\n', `Host: t\r\n${srv.authLine()}`) : b);
const raw = (port, bytes, opts) => rawRequest(port, withAuth(bytes), opts);
const r = (...a) => srv.req(...a);

// A well-behaved client that keeps writing and reading while the bad ones
// run; every one of its requests must succeed.
let bg = null;
function startBackground() {
  const state = { stop: false, ok: 0, failures: [] };
  state.done = (async () => {
    let i = 0;
    while (!state.stop) {
      i++;
      try {
        const w = await r('PUT', `/v1/c/bg/d${i % 20}`, { body: { i } });
        if (w.status !== 200 && w.status !== 201) state.failures.push(`PUT ${w.status} ${w.text}`);
        const g = await r('GET', `/v1/c/bg/d${i % 20}`);
        if (g.status !== 200 || g.json.i !== i) state.failures.push(`GET ${g.status} ${g.text}`);
        else state.ok++;
      } catch (e) {
        state.failures.push(String(e));
      }
      await sleep(5);
    }
  })();
  return state;
}

before(async () => {
  srv = await startServer();
  for (let i = 0; i < 5; i++) await r('PUT', `/v1/c/h/d${i}`, { body: { i } });
  bg = startBackground();
});
after(async () => {
  if (bg) {
    bg.stop = true;
    await bg.done;
  }
  if (!srv) return;
  assert.equal(await srv.stop(), 0, srv.stderrTail());
});

// Stored state other than the background client's collection: the docs of
// `h`, plus every change to anything but `bg` (a bad request that slips
// through shows up there, whatever collection it wrote to).
async function state() {
  const snap = await snapshot(srv, ['h']);
  delete snap.seq;
  const feed = [];
  let since = 0;
  for (;;) {
    const res = await r('GET', `/v1/changes?since=${since}&limit=1000`);
    assert.equal(res.status, 200, res.text);
    for (const c of res.json.changes) if (c.col !== 'bg') feed.push(`${c.seq} ${c.op} ${c.col}/${c.id}`);
    if (res.json.changes.length === 0) break;
    since = res.json.seq;
  }
  snap.feed = feed;
  return snap;
}

// Each test records the state first; checkUnchanged compares with it.
let baseline;
beforeEach(async () => { baseline = await state(); });
async function checkUnchanged() {
  assert.deepEqual(await state(), baseline, 'stored data unchanged');
}

// Sends bytes, expects `status` and (when mustClose) that the server closes.
async function expectRaw(bytes, status, { mustClose = true, timeout = 3000 } = {}) {
  const res = await raw(srv.port, bytes, { timeout });
  assert.ok(res.responses.length >= 1, `no response; got ${JSON.stringify(res.text.slice(0, 200))}`);
  assert.equal(res.responses[0].status, status, `got ${JSON.stringify(res.text.slice(0, 300))}`);
  if (mustClose) assert.ok(res.closed && !res.timedOut, 'connection closed by the server');
  if (mustClose) assert.equal(res.responses.length, 1, 'nothing answered after the bad request');
  await checkUnchanged();
  return res;
}

const post = (body, extra = '') =>
  `POST /v1/c/h HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n${extra}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

describe('malformed requests -> 400 and close', () => {
  const cases = [
    ['garbage request line', 'GARBAGE\r\n\r\n'],
    ['missing version', 'GET /v1/health\r\nHost: t\r\n\r\n'],
    ['bad version', 'GET /v1/health HTTP/9.9x\r\nHost: t\r\n\r\n'],
    ['lowercase method with spaces', 'get  /v1/health  HTTP/1.1\r\nHost: t\r\n\r\n'],
    ['NUL in request line', 'GET /v1/he\0alth HTTP/1.1\r\nHost: t\r\n\r\n'],
    ['space in target', 'GET /v1/c/h/d 1 HTTP/1.1\r\nHost: t\r\n\r\n'],
    ['header without colon', 'GET /v1/health HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n'],
    ['space before colon', 'GET /v1/health HTTP/1.1\r\nHost : t\r\n\r\n'],
    ['bare LF line endings', 'GET /v1/health HTTP/1.1\nHost: t\n\n'],
    ['bare LF inside headers', 'GET /v1/health HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n'],
    ['bare CR', 'GET /v1/health HTTP/1.1\rHost: t\r\n\r\n'],
    ['Content-Length and Transfer-Encoding', post('{"a":1}', 'Transfer-Encoding: chunked\r\n')],
    ['two Content-Lengths (different)', 'POST /v1/c/h HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n{"a":1}x'],
    ['two Content-Lengths (equal)', 'POST /v1/c/h HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n{"a":1}'],
    ['negative Content-Length', 'POST /v1/c/h HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n'],
    ['non-numeric Content-Length', 'POST /v1/c/h HTTP/1.1\r\nHost: t\r\nContent-Length: 7x\r\n\r\n{"a":1}'],
    ['bad chunk size', 'POST /v1/c/h HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{"a":1}\r\n0\r\n\r\n'],
    ['chunk size overflow', 'POST /v1/c/h HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n{"a":1}\r\n0\r\n\r\n'],
    ['chunk without CRLF after data', 'POST /v1/c/h HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{"a":1}XX0\r\n\r\n'],
    ['Transfer-Encoding not chunked last', 'POST /v1/c/h HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n'],
  ];
  for (const [name, bytes] of cases) {
    test(name, async () => {
      await expectRaw(bytes, 400);
    });
  }

  test('a bad request after a good one on the same connection: first answered, then 400 and close', async () => {
    const res = await raw(srv.port, 'GET /v1/c/h/d1 HTTP/1.1\r\nHost: t\r\n\r\nBROKEN LINE\r\n\r\n', { timeout: 5000 });
    assert.equal(res.responses[0]?.status, 200, res.text.slice(0, 200));
    assert.equal(res.responses[1]?.status, 400, res.text.slice(0, 400));
    assert.ok(res.closed && !res.timedOut);
    await checkUnchanged();
  });

  test('smuggling: a second request hidden in a CL+TE body is never executed', async () => {
    const hidden = 'PUT /v1/c/h/smuggled HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}';
    const body = `0\r\n\r\n${hidden}`;
    const bytes = `POST /v1/c/h HTTP/1.1\r\nHost: t\r\nContent-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${body}`;
    await expectRaw(bytes, 400);
    assertError(await r('GET', '/v1/c/h/smuggled'), 404);
  });
});

describe('limits', () => {
  test('header section over 16 KiB -> 431', async () => {
    const big = 'x'.repeat(17 * 1024);
    const res = await raw(srv.port, `GET /v1/health HTTP/1.1\r\nHost: t\r\nX-Big: ${big}\r\n\r\n`, { timeout: 5000, untilResponses: 1 });
    assert.equal(res.responses[0]?.status, 431, res.text.slice(0, 300));
    assert.equal(res.responses[0].json?.error?.code, 'headers_too_large');
    await checkUnchanged();
  });

  test('many small headers adding up to over 16 KiB -> 431', async () => {
    const hs = Array.from({ length: 400 }, (_, i) => `X-H${i}: ${'v'.repeat(40)}\r\n`).join('');
    const res = await raw(srv.port, `GET /v1/health HTTP/1.1\r\nHost: t\r\n${hs}\r\n`, { timeout: 5000, untilResponses: 1 });
    assert.equal(res.responses[0]?.status, 431, res.text.slice(0, 300));
  });

  test('header section that never ends, sent past 16 KiB -> 431 without waiting for the end', async () => {
    const res = await raw(srv.port, `GET /v1/health HTTP/1.1\r\nHost: t\r\nX-Big: ${'y'.repeat(40 * 1024)}`, { timeout: 8000, untilResponses: 1 });
    assert.equal(res.responses[0]?.status, 431, res.text.slice(0, 300));
  });

  test('header section just under 16 KiB is fine', async () => {
    const res = await raw(srv.port, `GET /v1/c/h/d0 HTTP/1.1\r\nHost: t\r\nX-Big: ${'z'.repeat(15 * 1024)}\r\nConnection: close\r\n\r\n`, { timeout: 5000 });
    assert.equal(res.responses[0]?.status, 200, res.text.slice(0, 300));
  });

  test('Content-Length over 1 MiB -> 413 without sending the body', async () => {
    const res = await raw(srv.port, `POST /v1/c/h HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: ${1024 * 1024 + 1}\r\n\r\n`, { timeout: 5000, untilResponses: 1 });
    assert.equal(res.responses[0]?.status, 413, res.text.slice(0, 300));
    assert.equal(res.responses[0].json?.error?.code, 'payload_too_large');
    await checkUnchanged();
  });

  test('huge Content-Length -> 413 (or 400), never a hang', async () => {
    const res = await raw(srv.port, 'PUT /v1/c/h/x HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999\r\n\r\n', { timeout: 5000, untilResponses: 1 });
    assert.ok([413, 400].includes(res.responses[0]?.status), res.text.slice(0, 300));
    await checkUnchanged();
  });

  test('chunked body adding up to over 1 MiB -> 413', async () => {
    const chunk = 'a'.repeat(64 * 1024);
    const parts = ['POST /v1/c/h HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n', '{"x":"'.length.toString(16) + '\r\n{"x":"\r\n'];
    for (let i = 0; i < 17; i++) parts.push(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
    parts.push('2\r\n"}\r\n0\r\n\r\n');
    const res = await raw(srv.port, parts, { timeout: 8000, untilResponses: 1 });
    assert.equal(res.responses[0]?.status, 413, res.text.slice(0, 300));
    await checkUnchanged();
  });

  test('request line over 16 KiB -> 431', async () => {
    const res = await raw(srv.port, `GET /v1/c/h/${'a'.repeat(17 * 1024)} HTTP/1.1\r\nHost: t\r\n\r\n`, { timeout: 5000, untilResponses: 1 });
    assert.equal(res.responses[0]?.status, 431, res.text.slice(0, 300));
    await checkUnchanged();
  });

  test('Expect: 100-continue gets an interim answer, then the body is read', async () => {
    const body = '{"cont":1}';
    const sock = await openSocket(srv.port);
    sock.write(withAuth(`PUT /v1/c/cont/c1 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`));
    for (let i = 0; i < 100 && !/^HTTP\/1\.1 100/.test(sock.received()); i++) await sleep(50);
    assert.match(sock.received(), /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
    sock.write(body);
    await sock.closedPromise;
    assert.match(sock.received(), /HTTP\/1\.1 201/);
    assert.equal((await r('GET', '/v1/c/cont/c1')).json.cont, 1);
  });

  test('Expect: 100-continue with an oversized Content-Length -> 413, no 100', async () => {
    const res = await raw(srv.port, `PUT /v1/c/cont/c2 HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: ${2 * 1024 * 1024}\r\n\r\n`, { timeout: 5000, untilResponses: 1 });
    assert.equal(res.responses[0]?.status, 413, res.text.slice(0, 200));
    await checkUnchanged();
  });

  test('a valid chunked body is accepted', async () => {
    const body = '{"chunked":true}';
    const bytes = `PUT /v1/c/chunk/c1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n${body.slice(0, 5)}\r\n${(body.length - 5).toString(16)}\r\n${body.slice(5)}\r\n0\r\n\r\n`;
    const res = await raw(srv.port, bytes, { timeout: 5000 });
    assert.equal(res.responses[0]?.status, 201, res.text.slice(0, 300));
    const g = await r('GET', '/v1/c/chunk/c1');
    assert.equal(g.json.chunked, true);
  });

  test('a request split into single bytes is parsed', async () => {
    const bytes = withAuth('GET /v1/c/h/d2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    const sock = await openSocket(srv.port);
    for (const ch of bytes) { sock.write(ch); await sleep(1); }
    await sock.closedPromise;
    const text = sock.received();
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.match(text, /"id"\s*:\s*"d2"/);
  });
});

describe('keep-alive and pipelining', () => {
  test('pipelined requests on one connection are answered in order', async () => {
    const reqs = [
      'GET /v1/c/h/d0 HTTP/1.1\r\nHost: t\r\n\r\n',
      'PUT /v1/c/pipe/p1 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"n":1}',
      'GET /v1/c/pipe/p1 HTTP/1.1\r\nHost: t\r\n\r\n',
      'GET /v1/nope HTTP/1.1\r\nHost: t\r\n\r\n',
      'PATCH /v1/c/pipe/p1 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"n":2}',
      'GET /v1/c/pipe/p1 HTTP/1.1\r\nHost: t\r\n\r\n',
      'DELETE /v1/c/pipe/p1 HTTP/1.1\r\nHost: t\r\n\r\n',
      'GET /v1/c/pipe/p1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n',
    ];
    const res = await raw(srv.port, reqs.join(''), { timeout: 10000 });
    assert.ok(res.closed && !res.timedOut, 'closed after Connection: close');
    const rs = res.responses;
    assert.deepEqual(rs.map((x) => x.status), [200, 201, 200, 404, 200, 200, 200, 404], res.text.slice(0, 2000));
    assert.equal(rs[0].json.id, 'd0');
    assert.equal(rs[1].json.version, 1);
    assert.equal(rs[2].json.n, 1);
    assert.equal(rs[4].json.n, 2);
    assert.equal(rs[5].json.version, 2);
    assert.deepEqual(rs[6].json, { id: 'p1', version: 2 });
    assert.ok(rs.every((x) => x.complete));
  });

  test('pipelined requests sent in two halves split mid-request', async () => {
    const all = withAuth('GET /v1/c/h/d1 HTTP/1.1\r\nHost: t\r\n\r\nGET /v1/c/h/d2 HTTP/1.1\r\nHost: t\r\n\r\nGET /v1/c/h/d3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    const sock = await openSocket(srv.port);
    sock.write(all.slice(0, 50));
    await sleep(100);
    sock.write(all.slice(50));
    await sock.closedPromise;
    const { parseResponses } = await import('./lib.mjs');
    const rs = parseResponses(Buffer.from(sock.received(), 'latin1'));
    assert.deepEqual(rs.map((x) => x.json?.id), ['d1', 'd2', 'd3']);
  });

  test('a GET with a body: the body is skipped and the next request parsed', async () => {
    const hidden = 'GET /v1/c/h/d2 HTTP/1.1'; // looks like a request, but is the body
    const bytes = `GET /v1/c/h/d1 HTTP/1.1\r\nHost: t\r\nContent-Length: ${hidden.length}\r\n\r\n${hidden}` +
      'GET /v1/c/h/d3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n';
    const res = await raw(srv.port, bytes, { timeout: 5000 });
    assert.deepEqual(res.responses.map((x) => x.json?.id), ['d1', 'd3'], res.text.slice(0, 500));
  });

  test('300 idle connections open at once: counted, and others are still served', async () => {
    const socks = [];
    for (let i = 0; i < 300; i++) socks.push(await openSocket(srv.port));
    try {
      const g = await r('GET', '/v1/c/h/d0');
      assert.equal(g.status, 200);
      const m = await r('GET', '/metrics');
      const open = Number(/^livedb_connections_open (\d+)/m.exec(m.text)?.[1]);
      assert.ok(open >= 300, `livedb_connections_open ${open}`);
    } finally {
      for (const s of socks) s.end();
    }
    const g = await r('GET', '/v1/c/h/d0');
    assert.equal(g.status, 200);
  });

  test('HTTP/1.0 request without keep-alive is answered and closed', async () => {
    const res = await raw(srv.port, `GET /v1/c/h/d1 HTTP/1.0\r\n${srv.authLine()}\r\n`, { timeout: 5000 });
    assert.equal(res.responses[0]?.status, 200, res.text.slice(0, 300));
    assert.ok(res.closed && !res.timedOut);
  });

  test('a client that connects and sends nothing, or half a request and hangs up, harms no one', async () => {
    const socks = [];
    for (let i = 0; i < 20; i++) socks.push(await openSocket(srv.port));
    for (let i = 0; i < 10; i++) socks[i].write('POST /v1/c/h HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{"a":');
    await sleep(100);
    for (const s of socks) s.end();
    const g = await r('GET', '/v1/c/h/d0');
    assert.equal(g.status, 200);
    await checkUnchanged();
  });
});

describe('routes', () => {
  for (const [m, p] of [['GET', '/nope'], ['GET', '/v1'], ['GET', '/v1/nope'], ['GET', '/v1/c'],
    ['GET', '/v1/c/h/d0/extra'], ['POST', '/v2/c/h'], ['GET', '/v1/healthz'], ['GET', '/metricsx']]) {
    test(`${m} ${p} -> 404`, async () => {
      assertError(await r(m, p), 404, 'not_found');
      await checkUnchanged();
    });
  }
  for (const [m, p, allow] of [
    ['DELETE', '/v1/c/h', 'GET'], ['PUT', '/v1/c/h', 'POST'], ['PATCH', '/v1/c/h', 'GET'],
    ['POST', '/v1/c/h/d0', 'PUT'], ['POST', '/v1/health', 'GET'], ['DELETE', '/metrics', 'GET'],
    ['PUT', '/v1/changes', 'GET'], ['DELETE', '/v1/batch', 'POST'],
  ]) {
    test(`${m} ${p} -> 405 with Allow`, async () => {
      const res = await r(m, p, m === 'GET' || m === 'DELETE' ? {} : { body: {} });
      assertError(res, 405, 'method_not_allowed');
      assert.match(res.headers.get('allow') || '', new RegExp(`\\b${allow}\\b`), `Allow: ${res.headers.get('allow')}`);
      await checkUnchanged();
    });
  }
  test('unknown method -> 400, 405 or 501, never a write', async () => {
    const res = await raw(srv.port, 'BREW /v1/c/h HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}', { timeout: 5000 });
    assert.ok([400, 405, 501].includes(res.responses[0]?.status), res.text.slice(0, 200));
    await checkUnchanged();
  });
});

describe('header timeout', () => {
  test('a client slower than --header-timeout is dropped while another is served', async () => {
    const s = await startServer({ args: ['--header-timeout', '1'] });
    try {
      const slow = await openSocket(s.port);
      slow.write(withAuth('GET /v1/health HTTP/1.1\r\nHost: t\r\n'));
      let sent = 0;
      let served = 0;
      // Keep trickling header bytes (one every 100 ms, for up to 10 s); a
      // fast client keeps working meanwhile.
      const deadline = Date.now() + 10_000;
      while (!slow.closed && Date.now() < deadline) {
        slow.write(withAuth(`X-${sent}: a\r\n`));
        sent++;
        const g = await s.req('GET', '/v1/health');
        assert.equal(g.status, 200);
        served++;
        await sleep(100);
      }
      assert.ok(slow.closed, 'the slow client was dropped');
      assert.ok(served > 0);
      assert.doesNotMatch(slow.received(), /^HTTP\/1\.1 200/, 'the slow request was not served');
      // The server is still fine.
      const w = await s.req('PUT', '/v1/c/x/after', { body: { ok: 1 } });
      assert.equal(w.status, 201);
    } finally {
      assert.equal(await s.stop(), 0, s.stderrTail());
    }
  });

  test('--idle-timeout closes an idle keep-alive connection after its answer', async () => {
    const s = await startServer({ args: ['--idle-timeout', '1'] });
    try {
      const sock = await openSocket(s.port);
      sock.write(withAuth('GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n'));
      const deadline = Date.now() + 10_000;
      while (!sock.closed && Date.now() < deadline) await sleep(100);
      assert.ok(sock.closed, 'closed by the server');
      assert.match(sock.received(), /^HTTP\/1\.1 200/, 'the request was answered first');
    } finally {
      assert.equal(await s.stop(), 0, s.stderrTail());
    }
  });

  test('an idle keep-alive connection within the header timeout is fine between requests', async () => {
    const sock = await openSocket(srv.port);
    sock.write(withAuth('GET /v1/c/h/d0 HTTP/1.1\r\nHost: t\r\n\r\n'));
    await sleep(300);
    sock.write(withAuth('GET /v1/c/h/d1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'));
    await sock.closedPromise;
    const { parseResponses } = await import('./lib.mjs');
    const rs = parseResponses(Buffer.from(sock.received(), 'latin1'));
    assert.deepEqual(rs.map((x) => x.status), [200, 200]);
  });
});

test('the background client saw no failure', async () => {
  bg.stop = true;
  await bg.done;
  assert.deepEqual(bg.failures, []);
  assert.ok(bg.ok > 0);
});
