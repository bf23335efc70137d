// `livedb simulate`: the real binary against a real --demo server (every
// scenario, stress with and without sell-out, what it leaves behind), bad
// usage, bad credentials, an unreachable server, and servers that answer
// nonsense: each must end with a clear message and the right exit status,
// quickly, never a crash or a hang.

import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WebSocketServer } from 'ws';
import { startServer, BIN, ADMIN, listAll, login, sleep } from './lib.mjs';

const servers = [];
const dirs = [];
after(async () => {
  for (const s of servers) if (!s.exited) await s.kill();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// Runs `livedb simulate ARGS`; resolves {code, stdout, stderr, ms}. A run
// that outlives `timeout` is killed and fails the test (a hang).
function simulate(args, { input, env, timeout = 120_000 } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const p = spawn(BIN, ['simulate', ...args], {
      env: { ...process.env, LIVEDB_EMAIL: '', LIVEDB_PASSWORD: '', ...(env || {}) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c) => { stdout += c; });
    p.stderr.on('data', (c) => { stderr += c; });
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`simulate ${args.join(' ')} did not end within ${timeout} ms\n${stdout}\n${stderr}`));
    }, timeout);
    p.on('error', reject);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
    p.stdin.on('error', () => {}); // a run that ends before reading its input
    p.stdin.end(input ?? '');
  });
}

async function demoServer() {
  const srv = await startServer({ args: ['--apps', 'wholesale', '--demo'] });
  servers.push(srv);
  // The demo loads (and writes demo-accounts.json) just after the server
  // starts listening.
  const file = path.join(srv.dataDir, 'demo-accounts.json');
  for (let i = 0; i < 200 && !existsSync(file); i++) await sleep(50);
  assert.ok(existsSync(file), `${file} was written`);
  return srv;
}

function result(stdout) {
  const m = /result: (.*)/.exec(stdout);
  assert.ok(m, `a result line in:\n${stdout}`);
  return Object.fromEntries(m[1].split(' ').map((kv) => kv.split('=')).map(([k, v]) => [k, Number(v)]));
}

const shown = (r) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

describe('against a --demo server', () => {
  let srv;
  test('the demo writes its accounts to DATA/demo-accounts.json, readable by its owner only', async () => {
    srv = await demoServer();
    const file = path.join(srv.dataDir, 'demo-accounts.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const accounts = JSON.parse(readFileSync(file, 'utf8'));
    const admin = accounts.find((a) => a.role === 'admin');
    assert.ok(admin && admin.email && admin.password, JSON.stringify(accounts));
    assert.ok(accounts.some((a) => a.role === 'partner'));
    const { account } = await login(srv, admin.email, admin.password);
    assert.equal(account.role, 'admin');
  });

  test('all: every scenario behaves, then PASS; exit 0', async () => {
    const before = await listAll(srv, 'products');
    const r = await simulate(['all', '--url', srv.url, '--data', srv.dataDir,
      '--partners', '4', '--seconds', '1']);
    assert.equal(r.code, 0, shown(r));
    for (const name of ['partner-order', 'inventory-update', 'price-update', 'order-status', 'stress'])
      assert.match(r.stdout, new RegExp(`^  ok    ${name}$`, 'm'), shown(r));
    assert.match(r.stdout, /summary: 5 of 5 scenarios behaved/);
    assert.match(r.stdout, /\nPASS\n/);
    assert.doesNotMatch(r.stdout, /FAIL/);
    // What each scenario checks, in its own words.
    assert.match(r.stdout, /the admin saw the order added [\d.]+ ms after the request/);
    assert.match(r.stdout, /the partner saw the stock of .* become \d+ [\d.]+ ms after/);
    assert.match(r.stdout, /the partner saw the new price/);
    assert.match(r.stdout, /still costs/);
    for (const s of ['confirmed', 'packed', 'shipped'])
      assert.match(r.stdout, new RegExp(`the partner saw its order ${s} [\\d.]+ ms`));
    assert.match(r.stdout, /no oversell/);
    assert.match(r.stdout, /saw each of the \d+ orders exactly once/);
    const res = result(r.stdout);
    assert.ok(res.orders > 0, shown(r));
    assert.equal(res.oversold, 0);
    assert.equal(res.missed, 0);
    assert.equal(res.duplicates, 0);

    // It put back what it used: the catalogue is as it was (stock, prices),
    // its own products are gone, its partners cannot log in.
    const now = await listAll(srv, 'products');
    const strip = (ps) => ps.map(({ id, stock, price_cents, active }) => ({ id, stock, price_cents, active }));
    assert.deepEqual(strip(now), strip(before));
    const accounts = (await srv.req('GET', '/v1/accounts')).json.accounts;
    const sims = accounts.filter((a) => a.email.endsWith('@sim.livedb'));
    assert.equal(sims.length, 4);
    assert.ok(sims.every((a) => a.disabled), JSON.stringify(sims));
    // Its orders are marked as its own.
    const orders = await listAll(srv, 'orders');
    const mine = orders.filter((o) => sims.some((a) => a.id === o.partner_id));
    assert.ok(mine.length >= res.orders);
    assert.ok(mine.every((o) => /livedb simulate/.test(o.notes)));
  });

  test('a second run reuses its partners (new passwords) and behaves again', async () => {
    const r = await simulate(['partner-order', '--url', srv.url, '--data', srv.dataDir]);
    assert.equal(r.code, 0, shown(r));
    assert.match(r.stdout, /partner-order: PASS/);
  });

  test('stress that sells out: refusals are insufficient_stock, never an oversell', async () => {
    const r = await simulate(['stress', '--url', srv.url, '--data', srv.dataDir,
      '--partners', '6', '--seconds', '1.5', '--products', '2', '--stock', '40']);
    assert.equal(r.code, 0, shown(r));
    assert.match(r.stdout, /insufficient_stock +\d+/);
    assert.match(r.stdout, /lowest stock left [0-2]\)/, shown(r));
    const res = result(r.stdout);
    assert.equal(res.oversold, 0);
    assert.equal(res.missed, 0);
    assert.equal(res.duplicates, 0);
    assert.ok(res.orders >= 26 && res.orders <= 80, shown(r)); // 1-3 units each, 80 units in all
  });

  test('stress at a rate: about that many orders', async () => {
    const r = await simulate(['stress', '--url', srv.url, '--data', srv.dataDir,
      '--partners', '4', '--rate', '100', '--seconds', '2']);
    assert.equal(r.code, 0, shown(r));
    const res = result(r.stdout);
    assert.ok(res.orders >= 150 && res.orders <= 210, shown(r));
    assert.match(r.stdout, /latency +p50 [\d.]+ ms, p95 [\d.]+ ms, p99 [\d.]+ ms, max [\d.]+ ms/);
  });

  test('credentials from the environment, or --email with --password-stdin', async () => {
    const a = await simulate(['inventory-update', '--url', srv.url],
      { env: { LIVEDB_EMAIL: ADMIN.email, LIVEDB_PASSWORD: ADMIN.password } });
    assert.equal(a.code, 0, shown(a));
    const b = await simulate(['order-status', '--url', srv.url, '--email', ADMIN.email,
      '--password-stdin'], { input: `${ADMIN.password}\n` });
    assert.equal(b.code, 0, shown(b));
    assert.match(b.stdout, /as admin@test\.livedb/);
  });

  test('a wrong password: a clear message, exit 1', async () => {
    const r = await simulate(['partner-order', '--url', srv.url, '--email', ADMIN.email,
      '--password-stdin'], { input: 'not-the-password\n' });
    assert.equal(r.code, 1, shown(r));
    assert.match(r.stdout + r.stderr, /cannot log in as admin@test\.livedb: wrong email or password/);
  });

  test('a partner is not an admin', async () => {
    const accounts = JSON.parse(readFileSync(path.join(srv.dataDir, 'demo-accounts.json'), 'utf8'));
    const p = accounts.find((a) => a.role === 'partner');
    const r = await simulate(['partner-order', '--url', srv.url],
      { env: { LIVEDB_EMAIL: p.email, LIVEDB_PASSWORD: p.password } });
    assert.equal(r.code, 1, shown(r));
    assert.match(r.stdout, /is a partner, not an admin/);
  });
});

describe('bad usage: exit 2 with a message', () => {
  const cases = [
    [],
    ['dance'],
    ['all', 'stress'],
    ['stress', '--partners', '0'],
    ['stress', '--partners', '2.5'],
    ['stress', '--rate', 'fast'],
    ['stress', '--seconds', '-1'],
    ['stress', '--stock'],
    ['stress', '--bogus', '1'],
    ['all', '--email', 'a@b.c'],
    ['all', '--url', 'ftp://x'],
  ];
  for (const args of cases) {
    test(`simulate ${args.join(' ') || '(nothing)'}`, async () => {
      const d = mkdtempSync(path.join(tmpdir(), 'livedb-sim-'));
      dirs.push(d);
      const r = await simulate([...args, '--data', d], { timeout: 10_000 });
      assert.equal(r.code, 2, shown(r));
      assert.match(r.stderr, /livedb simulate: .+/);
    });
  }
  test('no admin anywhere: says how to give one', async () => {
    const d = mkdtempSync(path.join(tmpdir(), 'livedb-sim-'));
    dirs.push(d);
    const r = await simulate(['all', '--data', d], { timeout: 10_000 });
    assert.equal(r.code, 2, shown(r));
    assert.match(r.stderr, /--password-stdin.*LIVEDB_EMAIL.*demo-accounts\.json/s);
  });
  test('--help prints the scenarios, exit 0', async () => {
    const r = await simulate(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /partner-order.*inventory-update.*price-update.*order-status.*stress/s);
  });
});

describe('a server that is not there, or answers nonsense', () => {
  const env = { LIVEDB_EMAIL: 'admin@x.y', LIVEDB_PASSWORD: 'whatever-1' };

  test('nothing listening: exit 1 at once, and says so', async () => {
    const port = await new Promise((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    });
    const r = await simulate(['all', '--url', `http://127.0.0.1:${port}`], { env, timeout: 10_000 });
    assert.equal(r.code, 1, shown(r));
    assert.match(r.stdout + r.stderr, /cannot connect to http:\/\/127\.0\.0\.1:\d+: connection refused/);
    assert.ok(r.ms < 5000, `took ${r.ms} ms`);
  });

  // A raw TCP server whose every connection gets `reply(socket, request)`.
  async function rawServer(reply) {
    const sockets = new Set();
    const s = net.createServer((c) => {
      sockets.add(c);
      c.on('error', () => {});
      c.on('close', () => sockets.delete(c));
      let buf = '';
      c.on('data', (d) => {
        buf += d;
        if (buf.includes('\r\n\r\n')) reply(c, buf);
      });
    });
    await new Promise((r) => s.listen(0, '127.0.0.1', r));
    return {
      url: `http://127.0.0.1:${s.address().port}`,
      close: () => { for (const c of sockets) c.destroy(); s.close(); },
    };
  }

  const nonsense = [
    ['no answer at all (--timeout 1)', () => {}, /no answer from .* within 1 s/],
    ['closes at once', (c) => c.destroy(), /closed the connection before answering|connection reset/],
    ['not HTTP', (c) => c.end('SSH-2.0-OpenSSH_9.2\r\n\r\n'), /is not HTTP\/1\.1/],
    ['a body that is not JSON', (c) => c.end('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello'), /not JSON/],
    ['JSON of the wrong shape', (c) => c.end('HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{"token":42}\n'),
      /has no token or account/],
    ['a body cut short', (c) => c.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"tok'),
      /closed the connection before answering/],
    ['a huge Content-Length', (c) => {
      c.write('HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n');
      c.end('x'.repeat(1000));
    }, /closed the connection before answering|over \d+ MiB/],
  ];
  for (const [name, reply, message] of nonsense) {
    test(`login answered with ${name}: a clear error, exit 1`, async () => {
      const s = await rawServer(reply);
      try {
        const r = await simulate(['all', '--url', s.url, '--timeout', '1'], { env, timeout: 15_000 });
        assert.equal(r.code, 1, shown(r));
        assert.match(r.stdout + r.stderr, message, shown(r));
        assert.ok(r.ms < 10_000, `took ${r.ms} ms`);
      } finally {
        s.close();
      }
    });
  }

  // A server that plays along (logins, accounts, a product) until the
  // realtime connection, where it sends what it likes.
  async function fakeApp(onSocket) {
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => {
        const send = (status, obj) => {
          const text = JSON.stringify(obj);
          res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
          res.end(text);
        };
        const u = req.url;
        if (u === '/v1/auth/login') {
          const { email } = JSON.parse(body);
          const admin = email === env.LIVEDB_EMAIL;
          return send(200, { token: admin ? 'admintoken' : 'partnertoken',
            account: { id: admin ? 'a1' : 'p1', email, role: admin ? 'admin' : 'partner' } });
        }
        if (u === '/v1/accounts' && req.method === 'GET') return send(200, { accounts: [] });
        if (u.startsWith('/v1/accounts')) return send(req.method === 'POST' ? 201 : 200, { id: 'p1' });
        if (u.startsWith('/v1/c/products?')) {
          return send(200, { docs: [{ id: 'px', name: 'Thing', price_cents: 100, stock: 50 }], seq: 7, next: null });
        }
        if (u === '/v1/c/products/px') return send(200, { id: 'px', name: 'Thing', price_cents: 100, stock: 50 });
        return send(404, { error: { code: 'not_found', message: 'no' } });
      });
    });
    const wss = new WebSocketServer({ server, path: '/v1/realtime' });
    wss.on('connection', onSocket);
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    return {
      url: `http://127.0.0.1:${server.address().port}`,
      close: () => { for (const c of wss.clients) c.terminate(); wss.close(); server.close(); server.closeAllConnections(); },
    };
  }

  const wsNonsense = [
    ['a message that is not JSON', (ws) => ws.send('not json at all'), /not a JSON object/],
    ['a binary message', (ws) => ws.send(Buffer.from([1, 2, 3])), /binary message/],
    ['a close', (ws) => ws.close(4321, 'go away'), /closed the WebSocket \(4321 go away\)/],
    ['nothing (--timeout 1)', () => {}, /did not sync: nothing within 1 s/],
    ['an error for the subscription', (ws) => ws.on('message', (m) => {
      const { id } = JSON.parse(m);
      ws.send(JSON.stringify({ t: 'error', sub: id, error: { code: 'forbidden', message: 'not\u001b[2J you' } }));
    }), /refused subscription o: forbidden: not\?\[2J you/],
  ];
  for (const [name, onSocket, message] of wsNonsense) {
    test(`the realtime connection sends ${name}: a clear failure, exit 1`, async () => {
      const s = await fakeApp(onSocket);
      try {
        const r = await simulate(['partner-order', '--url', s.url, '--timeout', '1'], { env, timeout: 15_000 });
        assert.equal(r.code, 1, shown(r));
        assert.match(r.stdout, message, shown(r));
        assert.match(r.stdout, /partner-order: FAIL/);
        assert.ok(!/[\u0000-\u0008\u000b-\u001f\u007f]/.test(r.stdout), 'no control characters from the server reach the terminal');
      } finally {
        s.close();
      }
    });
  }
});
