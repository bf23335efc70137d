// Accounts: `livedb account add`, login, logout, me, tokens (tampered,
// expired, logged out), login throttling (429 with Retry-After), the admin's
// accounts API, and what happens to open connections when an account is
// disabled, changes role or logs out. CORS with an exact allowlist.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServer, addAccount, login, sleep, BIN, raw, PG, pgExec } from './lib.mjs';
import { connect, open, subscribe } from './rt.mjs';

const PW = 'correct horse battery';

describe('account add on the command line', () => {
  test('adds; refuses a duplicate email, an unknown role, a short or missing password', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'livedb-acct-'));
    const add = (args, input) => spawnSync(BIN, ['account', 'add', '--data', dir, ...args],
      { input, encoding: 'utf8' });
    let r = add(['--email', 'Kim@Example.com', '--role', 'partner', '--name', 'Kim', '--password-stdin'], `${PW}\n`);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /account \S+ \(kim@example\.com, partner\) added/);
    r = add(['--email', 'kim@example.com', '--role', 'admin', '--password-stdin'], `${PW}\n`);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /exists/);
    r = add(['--email', 'x@example.com', '--role', 'wizard', '--password-stdin'], `${PW}\n`);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /role/);
    r = add(['--email', 'x@example.com', '--role', 'admin', '--password-stdin'], 'short\n');
    assert.equal(r.status, 2);
    r = add(['--email', 'x@example.com', '--role', 'admin'], '');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /password-stdin/);
    r = add(['--email', 'no-at-sign', '--role', 'admin', '--password-stdin'], `${PW}\n`);
    assert.equal(r.status, 2);
  });
});

describe('login, tokens, logout', () => {
  let srv, dir, kimId;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'livedb-auth-'));
    kimId = addAccount(dir, { email: 'kim@example.com', role: 'partner', password: PW, name: 'Kim' });
    addAccount(dir, { email: 'lou@example.com', role: 'partner', password: PW });
    srv = await startServer({ dataDir: dir, args: ['--apps', 'wholesale', '--session-hours', '0.0005'] });
  });
  after(async () => { assert.equal(await srv.stop(), 0, srv.stderrTail()); });
  const me = (token) => srv.req('GET', '/v1/auth/me', { headers: { Authorization: token === null ? null : `Bearer ${token}` } });

  test('login answers a token and the account; me says who; emails are case-blind', async () => {
    const r = await srv.req('POST', '/v1/auth/login', { headers: { Authorization: null }, body: { email: 'KIM@example.com', password: PW } });
    assert.equal(r.status, 200, r.text);
    assert.match(r.json.token, /^[A-Za-z0-9_-]{43}$/, '256 random bits, base64url');
    assert.deepEqual(r.json.account, { id: kimId, email: 'kim@example.com', role: 'partner', name: 'Kim', disabled: false });
    assert.equal(r.headers.get('cache-control'), 'no-store');
    const m = await me(r.json.token);
    assert.equal(m.status, 200);
    assert.equal(m.json.account.id, kimId);
    assert.ok(!JSON.stringify(m.json).includes('hash'));
  });

  test('a wrong password, an unknown email, a bad body: 401 / 400, the same message', async () => {
    const a = await srv.req('POST', '/v1/auth/login', { body: { email: 'kim@example.com', password: 'nope-nope' } });
    const b = await srv.req('POST', '/v1/auth/login', { body: { email: 'nobody@example.com', password: 'nope-nope' } });
    assert.equal(a.status, 401);
    assert.equal(b.status, 401);
    assert.equal(a.json.error.message, b.json.error.message);
    for (const body of [{}, { email: 'a' }, { email: 1, password: 'x' }, '[]', 'x']) {
      const r = await srv.req('POST', '/v1/auth/login', { body });
      assert.equal(r.status, 400, JSON.stringify(body));
    }
    assert.equal((await srv.req('GET', '/v1/auth/login')).status, 405);
  });

  test('tampered, malformed and missing tokens: 401', async () => {
    const { token } = await login(srv, 'lou@example.com', PW);
    const flip = token.slice(0, -1) + (token.at(-1) === 'A' ? 'B' : 'A');
    for (const t of [flip, token + 'x', token.slice(1), 'x', 'a'.repeat(500)]) assert.equal((await me(t)).status, 401);
    assert.equal((await srv.req('GET', '/v1/auth/me', { headers: { Authorization: `Basic ${token}` } })).status, 401);
    assert.equal((await srv.req('GET', '/v1/auth/me', { headers: { Authorization: 'Bearer' } })).status, 401);
    assert.equal((await me(null)).status, 401);
    assert.equal((await me(token)).status, 200);
  });

  test('a session expires (--session-hours 0.0005: 1.8 s)', async () => {
    const { token } = await login(srv, 'lou@example.com', PW);
    assert.equal((await me(token)).status, 200);
    await sleep(2200);
    const r = await me(token);
    assert.equal(r.status, 401);
    assert.match(r.json.error.message, /expired/);
  });

  test('logout ends the session (and only it); its realtime connection is closed', async () => {
    const one = await login(srv, 'lou@example.com', PW);
    const two = await login(srv, 'lou@example.com', PW);
    const c = await open(srv, { token: one.token });
    const other = await open(srv, { token: two.token });
    const r = await srv.req('POST', '/v1/auth/logout', { headers: { Authorization: `Bearer ${one.token}` } });
    assert.equal(r.status, 204);
    assert.equal((await me(one.token)).status, 401);
    assert.equal((await me(two.token)).status, 200);
    const closed = await c.closed;
    assert.equal(closed.code, 4003);
    other.send({ t: 'ping' });
    await other.next((m) => m.t === 'pong');
    await other.close();
    assert.equal((await srv.req('POST', '/v1/auth/logout', { headers: { Authorization: `Bearer ${one.token}` } })).status, 401);
  });

  test('sessions survive a restart; tokens are stored only as hashes', async () => {
    const { token } = await login(srv, 'kim@example.com', PW);
    assert.equal(await srv.stop(), 0);
    await srv.restart();
    srv.token = (await login(srv, 'admin@test.livedb', 'admin-password-1')).token;
    assert.equal((await me(token)).status, 200);
    if (PG) {
      const all = pgExec(dir, 'SELECT * FROM sessions; SELECT * FROM activity; SELECT * FROM docs');
      assert.equal(all.status, 0, all.stderr);
      assert.ok(!all.stdout.includes(token), 'the token is not in the database');
    } else {
      const { readFileSync } = await import('node:fs');
      const db = readFileSync(path.join(dir, 'livedb.db'));
      assert.ok(!db.includes(Buffer.from(token)), 'the token is not in the database');
    }
    assert.ok(!srv.stderr.includes(token), 'the token is not in the log');
  });
});

describe('throttling', () => {
  let srv;
  before(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'livedb-thr-'));
    addAccount(dir, { email: 'kim@example.com', role: 'partner', password: PW, apps: 'wholesale' });
    srv = await startServer({ dataDir: dir, args: ['--apps', 'wholesale'] });
  });
  after(async () => { assert.equal(await srv.stop(), 0, srv.stderrTail()); });

  test('5 wrong passwords for an email: the next tries get 429 with Retry-After, even the right one', async () => {
    for (let i = 0; i < 5; i++) {
      const r = await srv.req('POST', '/v1/auth/login', { body: { email: 'kim@example.com', password: `wrong-${i}` } });
      assert.equal(r.status, 401);
    }
    const r = await srv.req('POST', '/v1/auth/login', { body: { email: 'kim@example.com', password: PW } });
    assert.equal(r.status, 429, r.text);
    assert.equal(r.json.error.code, 'rate_limited');
    const after_ = Number(r.headers.get('retry-after'));
    assert.ok(after_ > 0 && after_ <= 900, `Retry-After ${after_}`);
    // Another email from the same address is not blocked yet.
    const o = await srv.req('POST', '/v1/auth/login', { body: { email: 'other@example.com', password: 'x-x-x-x' } });
    assert.equal(o.status, 401);
  });

  test('20 failures from one address block it for every email', async () => {
    for (let i = 0; i < 20; i++) {
      await srv.req('POST', '/v1/auth/login', { body: { email: `n${i}@example.com`, password: 'wrong-pass' } });
    }
    const r = await srv.req('POST', '/v1/auth/login', { body: { email: 'fresh@example.com', password: 'wrong-pass' } });
    assert.equal(r.status, 429);
  });
});

describe('the admin\'s accounts API', () => {
  let srv;
  before(async () => { srv = await startServer({ args: ['--apps', 'wholesale,studio'] }); });
  after(async () => { assert.equal(await srv.stop(), 0, srv.stderrTail()); });

  test('create, list, get, change role, disable; checks every field', async () => {
    const c = await srv.req('POST', '/v1/accounts', { body: { email: 'Pat@Example.com', role: 'partner', name: 'Pat', password: PW } });
    assert.equal(c.status, 201, c.text);
    const id = c.json.id;
    assert.deepEqual(c.json, { id, email: 'pat@example.com', role: 'partner', name: 'Pat', disabled: false });
    assert.equal((await srv.req('POST', '/v1/accounts', { body: { email: 'pat@example.com', role: 'partner', password: PW } })).status, 409);
    for (const body of [{ email: 'x@y.z', role: 'wizard', password: PW }, { email: 'x@y.z', role: 'partner' },
      { email: 'nope', role: 'partner', password: PW }, { email: 'x@y.z', role: 'partner', password: 'short' },
      { email: 'x@y.z', role: 'partner', password: PW, extra: 1 }]) {
      assert.equal((await srv.req('POST', '/v1/accounts', { body })).status, 400, JSON.stringify(body));
    }
    const list = await srv.req('GET', '/v1/accounts');
    assert.ok(list.json.accounts.some((a) => a.id === id));
    assert.doesNotMatch(list.text, /argon2|hash/);
    assert.equal((await srv.req('GET', `/v1/accounts/${id}`)).json.email, 'pat@example.com');
    assert.equal((await srv.req('GET', '/v1/accounts/nobody')).status, 404);

    const { token } = await login(srv, 'pat@example.com', PW);
    const ws = await open(srv, { token });
    await subscribe(ws, { id: 'p', col: 'products' });
    // Role change: its connections close (4003) and its token carries the new role.
    const p = await srv.req('PATCH', `/v1/accounts/${id}`, { body: { role: 'staff' } });
    assert.equal(p.status, 200, p.text);
    assert.equal(p.json.role, 'staff');
    assert.equal((await ws.closed).code, 4003);
    assert.equal((await srv.req('GET', '/v1/auth/me', { headers: { Authorization: `Bearer ${token}` } })).json.account.role, 'staff');
    // A new password works; the old one does not.
    assert.equal((await srv.req('PATCH', `/v1/accounts/${id}`, { body: { password: 'new-password-9' } })).status, 200);
    assert.equal((await srv.req('POST', '/v1/auth/login', { body: { email: 'pat@example.com', password: PW } })).status, 401);
    const fresh = await login(srv, 'pat@example.com', 'new-password-9');
    // Disabled: every session ends at once, login is refused.
    const ws2 = await open(srv, { token: fresh.token });
    const d = await srv.req('PATCH', `/v1/accounts/${id}`, { body: { disabled: true } });
    assert.equal(d.status, 200);
    assert.equal((await ws2.closed).code, 4003);
    for (const t of [token, fresh.token]) {
      assert.equal((await srv.req('GET', '/v1/auth/me', { headers: { Authorization: `Bearer ${t}` } })).status, 401);
    }
    assert.equal((await srv.req('POST', '/v1/auth/login', { body: { email: 'pat@example.com', password: 'new-password-9' } })).status, 401);
    // Only an admin manages accounts.
    await srv.req('PATCH', `/v1/accounts/${id}`, { body: { disabled: false } });
    const pt = (await login(srv, 'pat@example.com', 'new-password-9')).token;
    assert.equal((await srv.req('GET', '/v1/accounts', { headers: { Authorization: `Bearer ${pt}` } })).status, 403);
    assert.equal((await srv.req('PATCH', `/v1/accounts/${id}`, { headers: { Authorization: `Bearer ${pt}` }, body: { role: 'admin' } })).status, 403);
  });

  test('accounts are not documents of the API', async () => {
    for (const p of ['/v1/c/_accounts', '/v1/c/_accounts/x']) assert.equal((await srv.req('GET', p)).status, 400);
    const ch = await srv.req('GET', '/v1/changes?since=0&limit=1000');
    assert.doesNotMatch(ch.text, /_accounts|@example\.com/);
  });
});

describe('CORS', () => {
  let srv;
  before(async () => { srv = await startServer({ args: ['--allow-origin', 'https://portal.example'] }); });
  after(async () => { assert.equal(await srv.stop(), 0, srv.stderrTail()); });

  test('an allowed origin is named back exactly; others get no CORS headers; preflight', async () => {
    const ok = await srv.req('GET', '/v1/health', { headers: { Origin: 'https://portal.example' } });
    assert.equal(ok.headers.get('access-control-allow-origin'), 'https://portal.example');
    assert.match(ok.headers.get('vary') || '', /Origin/);
    for (const o of ['https://evil.example', 'null', 'https://portal.example.evil', 'http://portal.example']) {
      const r = await srv.req('GET', '/v1/health', { headers: { Origin: o } });
      assert.equal(r.headers.get('access-control-allow-origin'), null, o);
    }
    const pre = await raw(srv.port, 'OPTIONS /v1/c/items HTTP/1.1\r\nHost: t\r\nOrigin: https://portal.example\r\n' +
      'Access-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: authorization, content-type\r\nConnection: close\r\n\r\n');
    assert.equal(pre.responses[0].status, 204);
    assert.match(pre.text, /Access-Control-Allow-Origin: https:\/\/portal\.example\r\n/);
    assert.match(pre.text, /Access-Control-Allow-Headers: [^\r]*Authorization/);
    assert.doesNotMatch(pre.text, /Allow-Origin: \*|Allow-Credentials/);
    const bad = await raw(srv.port, 'OPTIONS /v1/c/items HTTP/1.1\r\nHost: t\r\nOrigin: https://evil.example\r\n' +
      'Access-Control-Request-Method: PUT\r\nConnection: close\r\n\r\n');
    assert.equal(bad.responses[0].status, 403);
    assert.doesNotMatch(bad.text, /Access-Control-Allow-Origin/);
  });
});
