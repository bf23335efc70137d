// Shutdown: SIGTERM while writes are in flight. Every answered write is
// present after a restart, the exit code is 0, and the server stops
// promptly even with idle keep-alive and half-sent requests open.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, workers, openSocket, lastSeq, sleep } from './lib.mjs';

const servers = [];
after(async () => {
  for (const s of servers) if (!s.exited) await s.kill();
});

test('SIGTERM with writes in flight: exit 0, every acknowledged write kept', async () => {
  const srv = await startServer({ args: ['--no-access-log'] });
  servers.push(srv);
  const acked = new Map();
  let count = 0;
  let stopPromise = null;
  const statuses = new Map();
  await workers(20, async (w) => {
    for (let i = 0; ; i++) {
      let res;
      try {
        res = await srv.req('PUT', `/v1/c/sd/w${w}-${i % 40}`, { body: { w, i } });
      } catch {
        return; // refused or reset after the listener closed
      }
      statuses.set(res.status, (statuses.get(res.status) || 0) + 1);
      if (res.status === 200 || res.status === 201) {
        const prev = acked.get(res.json.id);
        if (!prev || prev.version < res.json.version) acked.set(res.json.id, res.json);
        count++;
        if (count === 1000) stopPromise = srv.stop(30000);
      } else if (res.status === 503) {
        assert.equal(res.json?.error?.code, 'unavailable', res.text);
        return;
      } else {
        throw new Error(`unexpected ${res.status}: ${res.text}`);
      }
      if (i > 100000) return;
    }
  });
  assert.ok(stopPromise, 'SIGTERM was sent');
  const code = await stopPromise;
  assert.equal(code, 0, `exit code; stderr:\n${srv.stderrTail()}`);

  await srv.restart();
  const lost = [];
  for (const [id, doc] of acked) {
    const g = await srv.req('GET', `/v1/c/sd/${id}`);
    if (g.status !== 200 || g.json.version < doc.version) lost.push(`${id} v${doc.version}: ${g.status} v${g.json?.version}`);
    else if (g.json.version === doc.version) assert.deepEqual(g.json, doc);
  }
  assert.deepEqual(lost.slice(0, 10), [], `${lost.length} acknowledged writes lost`);
  assert.ok(await lastSeq(srv) >= count);
  assert.equal(await srv.stop(), 0, srv.stderrTail());
});

test('SIGTERM with idle keep-alive and half-sent requests open: exits 0 promptly', async () => {
  const srv = await startServer();
  servers.push(srv);
  await srv.req('PUT', '/v1/c/sd2/a', { body: { a: 1 } });
  const idle = await openSocket(srv.port);
  idle.write('GET /v1/c/sd2/a HTTP/1.1\r\nHost: t\r\n\r\n');
  const half = await openSocket(srv.port);
  half.write('POST /v1/c/sd2 HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n{"a":');
  const silent = await openSocket(srv.port);
  await sleep(200);
  const code = await srv.stop(15000);
  assert.equal(code, 0, srv.stderrTail());
  for (const s of [idle, half, silent]) s.end();
  await srv.restart();
  const list = await srv.req('GET', '/v1/c/sd2');
  assert.equal(list.json.docs.length, 1, 'the half-sent create was not written');
  assert.equal(await srv.stop(), 0, srv.stderrTail());
});

test('SIGINT also stops cleanly', async () => {
  const srv = await startServer();
  servers.push(srv);
  await srv.req('PUT', '/v1/c/sd3/a', { body: { a: 1 } });
  srv.expectExit = true;
  srv.proc.kill('SIGINT');
  assert.equal(await srv.exitPromise, 0, srv.stderrTail());
  await srv.restart();
  assert.equal((await srv.req('GET', '/v1/c/sd3/a')).status, 200);
  assert.equal(await srv.stop(), 0, srv.stderrTail());
});
