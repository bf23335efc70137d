// Shared helpers for the black-box API tests: start a real livedb server on a
// fresh data directory, talk to it with fetch or with raw TCP bytes, and
// compare stored state before and after a bad request.
//
// The binary is $LIVEDB_BIN, or build/livedb relative to the repository root
// (LIVEDB_BIN=build/asan/livedb runs the suite against the sanitizer build).
// LIVEDB_TEST_VERBOSE=1 copies every server's stderr to ours.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { before, after } from 'node:test';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = path.resolve(ROOT, process.env.LIVEDB_BIN || 'build/livedb');
const VERBOSE = !!process.env.LIVEDB_TEST_VERBOSE;
// LIVEDB_TEST_STORE=postgres (with LIVEDB_TEST_PG, the conninfo that
// scripts/with-pg sets) runs every server of the suite over PostgreSQL,
// each data directory with a schema of its own: the second pass of
// `make test-api`. Tests of what only SQLite has (its files, backups,
// restore) say so with sqliteOnly.
export const PG = process.env.LIVEDB_TEST_STORE === 'postgres' ? process.env.LIVEDB_TEST_PG : null;
export const PG_DIR = process.env.LIVEDB_TEST_PG_DIR;
if (process.env.LIVEDB_TEST_STORE === 'postgres' && !PG) throw new Error('LIVEDB_TEST_STORE=postgres needs LIVEDB_TEST_PG (scripts/with-pg)');
export const sqliteOnly = PG ? { skip: 'SQLite only (PostgreSQL pass)' } : {};
const schemas = new Map(); // data dir -> its schema
// Runs SQL in the schema of a data directory (the PostgreSQL pass), as an
// intruder with psql would: {status, stdout, stderr}.
export function pgExec(dataDir, sql) {
  const schema = storeArgs(dataDir)[3];
  return spawnSync('psql', [PG, '-v', 'ON_ERROR_STOP=1', '-Atc', `SET search_path TO ${schema}; ${sql}`],
    { encoding: 'utf8' });
}

// The store arguments for a data directory: none on SQLite.
export function storeArgs(dataDir) {
  if (!PG) return [];
  if (!schemas.has(dataDir)) schemas.set(dataDir, 't_' + randomBytes(6).toString('hex'));
  return ['--postgres', PG, '--pg-schema', schemas.get(dataDir)];
}
const STDERR_KEEP = 64 * 1024;

// Data directories made here are removed when the test process ends, and
// servers still running are killed, so that an interrupted run (Ctrl-C, a
// runner timeout) leaves no orphan server behind.
const tmpDirs = new Set();
const liveProcs = new Set();
process.on('exit', () => {
  for (const p of liveProcs) {
    try { p.kill('SIGKILL'); } catch { /* ignore */ }
  }
  for (const d of tmpDirs) {
    try { rmSync(d, { recursive: true, force: true }); } catch { /* ignore */ }
  }
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1)));
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Polls check() every `every` ms until it is truthy and returns its value;
// fails with what() after ms.
export async function until(check, what, ms = 20_000, every = 20) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) assert.fail(`timed out: ${what()}`);
    await sleep(every);
  }
}

// ---------------------------------------------------------------------------
// Server process

function spawnServer(handle) {
  // Tests serve no app unless they ask (--apps): their collections are
  // their own, without the apps' schemas and rules.
  const apps = handle.args.includes('--apps') ? [] : ['--apps', 'none'];
  const argv = ['serve', '--data', handle.dataDir, '--listen', '127.0.0.1:0', ...apps,
    ...storeArgs(handle.dataDir), ...handle.args];
  const proc = spawn(BIN, argv, {
    cwd: ROOT,
    env: { ...process.env, ...(handle.env || {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  handle.proc = proc;
  liveProcs.add(proc);
  proc.on('exit', () => liveProcs.delete(proc));
  handle.exited = false;
  handle.expectExit = false;
  const exitPromise = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      handle.exited = true;
      handle.exitCode = code;
      handle.exitSignal = signal;
      if (!handle.expectExit) {
        process.stderr.write(
          `\n[livedb test] server pid ${proc.pid} exited unexpectedly ` +
          `(code ${code}, signal ${signal}). stderr tail:\n${handle.stderrTail()}\n`);
      }
      resolve(code === null ? 128 + (os_signal_number(signal)) : code);
    });
  });
  handle.exitPromise = exitPromise;
  proc.stderr.on('data', (chunk) => {
    handle.stderr += chunk.toString('utf8');
    if (handle.stderr.length > 2 * STDERR_KEEP) handle.stderr = handle.stderr.slice(-STDERR_KEEP);
    if (VERBOSE) process.stderr.write(chunk);
  });

  return new Promise((resolve, reject) => {
    let out = '';
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) reject(err); else resolve(handle);
    };
    const timer = setTimeout(() => {
      finish(new Error(`livedb did not print its listening line within 10 s\n` +
        `argv: ${BIN} ${argv.join(' ')}\nstdout: ${out}\nstderr: ${handle.stderrTail()}`));
      handle.expectExit = true;
      proc.kill('SIGKILL');
    }, 10_000);
    proc.on('error', (e) => finish(new Error(`cannot start ${BIN}: ${e.message}`)));
    proc.on('exit', (code, signal) => finish(new Error(
      `livedb exited (code ${code}, signal ${signal}) before listening\n` +
      `argv: ${BIN} ${argv.join(' ')}\nstdout: ${out}\nstderr: ${handle.stderrTail()}`)));
    proc.stdout.on('data', (chunk) => {
      if (done) return;
      out += chunk.toString('utf8');
      for (const line of out.split('\n').slice(0, -1)) {
        const m = /^livedb: listening on (http:\/\/([^:\s]+):(\d+))$/.exec(line);
        if (m) {
          handle.url = m[1];
          handle.host = m[2];
          handle.port = Number(m[3]);
          finish();
          return;
        }
      }
    });
  });
}

function os_signal_number(signal) {
  const map = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGTERM: 15 };
  return map[signal] || 0;
}

// runBin(args, opts) runs the binary to its end (60 s at most unless
// opts.timeout says otherwise): {code, stdout, stderr, signal}.
// A command naming a data directory (--data DIR) works on that
// directory's store: on the PostgreSQL pass, its schema.
export function runBin(args, opts = {}) {
  const i = args.indexOf('--data');
  if (PG && i >= 0 && ['export', 'import', 'account', 'activity', 'verify'].includes(args[0])) {
    args = [...args, ...storeArgs(args[i + 1])];
  }
  const r = spawnSync(BIN, args, { encoding: 'utf8', timeout: 60_000, ...opts });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, signal: r.signal };
}

// addAccount(dataDir, {email, role, password, name, apps}) runs
// `livedb account add` (the server must not run on dataDir).
export function addAccount(dataDir, { email, role, password, name, apps = 'wholesale,studio' }) {
  const args = ['account', 'add', '--data', dataDir, ...storeArgs(dataDir), '--email', email,
    '--role', role, '--password-stdin', '--apps', apps];
  if (name) args.push('--name', name);
  const r = spawnSync(BIN, args, { input: password + '\n', encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`account add ${email}: exit ${r.status}: ${r.stderr}`);
  return /account (\S+) /.exec(r.stdout)[1];
}

// Logs in; returns {token, account}.
export async function login(srv, email, password) {
  const r = await req('POST', `${srv.url}/v1/auth/login`, { body: { email, password } });
  if (r.status !== 200) throw new Error(`login ${email}: ${r.status} ${r.text}`);
  return r.json;
}

export const ADMIN = { email: 'admin@test.livedb', password: 'admin-password-1' };

// startServer({args, env, auth}) -> handle with
//   url, port, dataDir, proc,
//   token      an admin's token (unless auth: false); req() sends it
//   adminId    that admin's account id
//   stop()     SIGTERM, wait for exit, resolve with the exit code
//   kill()     SIGKILL, wait for exit
//   restart()  start again on the same data dir (after stop/kill); same handle
//   req(method, path, opts)  request against this server (see req below)
//   stderrTail()
// schema (PostgreSQL): the schema to serve instead of the data directory's
// own: nodes of one database (tests/nodes).
export async function startServer({ args = [], env, dataDir, auth = true, schema } = {}) {
  let fresh = false;
  if (!dataDir) {
    dataDir = mkdtempSync(path.join(tmpdir(), 'livedb-test-'));
    tmpDirs.add(dataDir);
    fresh = true;
  }
  if (schema) schemas.set(dataDir, schema);
  let adminId = null;
  if (auth) {
    try {
      adminId = addAccount(dataDir, { ...ADMIN, role: 'admin' });
    } catch (e) {
      if ((fresh && !schema) || !/exists/.test(e.message)) throw e; // a data dir with its admin already
    }
  }
  const handle = {
    args, env, dataDir, stderr: '', url: null, port: null, proc: null,
    stderrTail(n = 4000) { return this.stderr.slice(-n); },
    async stop(timeoutMs = 30_000) {
      if (this.exited) return this.exitPromise;
      this.expectExit = true;
      this.proc.kill('SIGTERM');
      let t;
      const timeout = new Promise((_, rej) => {
        t = setTimeout(() => rej(new Error(
          `livedb did not exit within ${timeoutMs} ms of SIGTERM; stderr:\n${this.stderrTail()}`)), timeoutMs);
      });
      try {
        return await Promise.race([this.exitPromise, timeout]);
      } catch (e) {
        this.proc.kill('SIGKILL');
        await this.exitPromise;
        throw e;
      } finally {
        clearTimeout(t);
      }
    },
    async kill() {
      if (this.exited) return this.exitPromise;
      this.expectExit = true;
      this.proc.kill('SIGKILL');
      return this.exitPromise;
    },
    async restart() {
      if (!this.exited) throw new Error('restart() needs the previous process stopped or killed');
      await spawnServer(this);
      return this;
    },
    // Sends the admin's token unless opts.headers.Authorization is given
    // (null: none).
    req(method, p, opts = {}) {
      const headers = { ...(opts.headers || {}) };
      if (!('Authorization' in headers) && this.token) headers.Authorization = `Bearer ${this.token}`;
      if (headers.Authorization === null) delete headers.Authorization;
      return req(method, this.url + p, { ...opts, headers });
    },
    // The admin's Authorization header line, for raw requests.
    authLine() { return this.token ? `Authorization: Bearer ${this.token}\r\n` : ''; },
    adminId,
  };
  await spawnServer(handle);
  if (auth) handle.token = (await login(handle, ADMIN.email, ADMIN.password)).token;
  return handle;
}

// One server for the tests of a file (or of a describe block, when called
// inside one): started before them with startServer(opts) and handed to
// set; after them stopped, and its exit code must be 0.
export function serverForTests(set, opts) {
  let srv;
  before(async () => { srv = await startServer(opts); set(srv); });
  after(async () => {
    if (!srv) return;
    assert.equal(await srv.stop(), 0, srv.stderrTail());
  });
}

// The temporary directories and servers of a test file, gone after its
// tests: tmp() makes a directory named prefix + random; a server pushed on
// servers is killed (when still running) before the directories go.
export function scratch(prefix) {
  const dirs = [];
  const servers = [];
  after(async () => {
    for (const s of servers) if (!s.exited) await s.kill();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  function tmp() {
    const d = mkdtempSync(path.join(tmpdir(), prefix));
    dirs.push(d);
    return d;
  }
  return { tmp, servers };
}

// A seeded random number generator (mulberry32): mulberry32(seed)() gives
// the next number in [0, 1), the same sequence for the same seed, so that a
// failing random run can be replayed from the seed it printed.
export function mulberry32(a) {
  return () => {
    a |= 0; a = (a + 0x6D2B79F5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------
// HTTP helpers

// req(method, url, {body, headers, signal, timeout}) -> {status, headers, json, text}
// body: a plain value is sent as JSON; a string or Buffer is sent as is.
// timeout (ms, default 20000) bounds the whole exchange so that a server that
// never answers fails the test instead of hanging it.
export async function req(method, url, { body, headers = {}, signal, timeout = 20_000 } = {}) {
  const h = { ...headers };
  let payload;
  if (body !== undefined) {
    if (typeof body === 'string' || Buffer.isBuffer(body) || body instanceof Uint8Array) {
      payload = body;
    } else {
      payload = JSON.stringify(body);
    }
    if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) {
      h['Content-Type'] = 'application/json';
    }
  }
  const tsig = AbortSignal.timeout(timeout);
  const sig = signal ? AbortSignal.any([signal, tsig]) : tsig;
  let res, text;
  try {
    res = await fetch(url, { method, headers: h, body: payload, signal: sig });
    text = await res.text();
  } catch (e) {
    if (tsig.aborted) throw new Error(`${method} ${url}: no answer within ${timeout} ms`);
    throw e;
  }
  let json;
  try { json = text.length ? JSON.parse(text) : undefined; } catch { json = undefined; }
  return { status: res.status, headers: res.headers, json, text };
}

// Asserts an error answer: status, and the {"error":{"code","message"}} shape.
export function assertError(r, status, code) {
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.text}`);
  assert.ok(r.json && typeof r.json.error === 'object' && r.json.error !== null,
    `error body must be {"error":{...}}, got: ${r.text}`);
  if (code) assert.equal(r.json.error.code, code, `error code; body: ${r.text}`);
  assert.equal(typeof r.json.error.message, 'string', `error.message; body: ${r.text}`);
}

// raw(port, bytes, {timeout, untilResponses, host})
// Writes bytes (string or Buffer, or an array of them written one after the
// other) on a fresh TCP connection, then resolves with
//   {text, buf, closed, timedOut, responses}
// once the server closes the connection, `timeout` ms pass (default 5000), or
// `untilResponses` complete HTTP responses have arrived.
export function raw(port, bytes, { timeout = 5000, untilResponses = 0, host = '127.0.0.1' } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host });
    const chunks = [];
    let settled = false;
    let closed = false;
    const done = (timedOut) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const buf = Buffer.concat(chunks);
      const text = buf.toString('latin1');
      resolve({ text, buf, closed, timedOut, responses: parseResponses(buf) });
      sock.destroy();
    };
    const timer = setTimeout(() => done(true), timeout);
    sock.on('data', (c) => {
      chunks.push(c);
      if (untilResponses > 0) {
        const rs = parseResponses(Buffer.concat(chunks));
        if (rs.length >= untilResponses && rs[untilResponses - 1].complete) done(false);
      }
    });
    sock.on('error', () => { closed = true; done(false); });
    sock.on('end', () => { closed = true; done(false); });
    sock.on('close', () => { closed = true; done(false); });
    sock.on('connect', () => {
      const parts = Array.isArray(bytes) ? bytes : [bytes];
      for (const p of parts) sock.write(p);
    });
  });
}

// Opens a TCP connection and returns a small controller for tests that send
// bytes over time (slow clients): {write(bytes), closed (bool), received(), end()}.
export function openSocket(port, host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host });
    const chunks = [];
    const ctl = {
      sock,
      closed: false,
      closedPromise: null,
      write(b) { if (!ctl.closed) sock.write(b); },
      received() { return Buffer.concat(chunks).toString('latin1'); },
      end() { sock.destroy(); },
    };
    ctl.closedPromise = new Promise((r) => {
      const mark = () => { ctl.closed = true; r(); };
      sock.on('end', mark);
      sock.on('close', mark);
      sock.on('error', mark);
    });
    sock.on('data', (c) => chunks.push(c));
    sock.once('connect', () => resolve(ctl));
    sock.once('error', reject);
  });
}

// Splits bytes received on one connection into HTTP/1.1 responses.
// Each: {status, reason, headers (lower-case keys; repeated ones joined by ", "),
// body (string), complete}.
export function parseResponses(buf) {
  const out = [];
  let pos = 0;
  while (pos < buf.length) {
    const headEnd = buf.indexOf('\r\n\r\n', pos, 'latin1');
    if (headEnd < 0) {
      out.push({ status: parseStatus(buf.toString('latin1', pos, Math.min(buf.length, pos + 200))), headers: {}, body: '', complete: false });
      break;
    }
    const head = buf.toString('latin1', pos, headEnd).split('\r\n');
    const status = parseStatus(head[0]);
    const reason = head[0].split(' ').slice(2).join(' ');
    const headers = {};
    for (const line of head.slice(1)) {
      const i = line.indexOf(':');
      if (i < 0) continue;
      const k = line.slice(0, i).trim().toLowerCase();
      const v = line.slice(i + 1).trim();
      headers[k] = headers[k] !== undefined ? `${headers[k]}, ${v}` : v;
    }
    let bodyStart = headEnd + 4;
    let body = '';
    let complete = true;
    if (headers['transfer-encoding'] && /chunked/i.test(headers['transfer-encoding'])) {
      let p = bodyStart;
      const parts = [];
      complete = false;
      for (;;) {
        const le = buf.indexOf('\r\n', p, 'latin1');
        if (le < 0) break;
        const size = parseInt(buf.toString('latin1', p, le), 16);
        if (Number.isNaN(size)) break;
        if (size === 0) {
          const end = buf.indexOf('\r\n', le + 2, 'latin1');
          if (end < 0) break;
          p = end + 2;
          complete = true;
          break;
        }
        if (le + 2 + size + 2 > buf.length) break;
        parts.push(buf.subarray(le + 2, le + 2 + size));
        p = le + 2 + size + 2;
      }
      body = Buffer.concat(parts).toString('utf8');
      pos = complete ? p : buf.length;
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (bodyStart + n > buf.length) {
        complete = false;
        body = buf.toString('utf8', bodyStart);
        pos = buf.length;
      } else {
        body = buf.toString('utf8', bodyStart, bodyStart + n);
        pos = bodyStart + n;
      }
    } else if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
      pos = bodyStart;
    } else {
      // Body delimited by close.
      body = buf.toString('utf8', bodyStart);
      pos = buf.length;
    }
    let json;
    try { json = JSON.parse(body); } catch { json = undefined; }
    out.push({ status, reason, headers, body, json, complete });
  }
  return out;
}

function parseStatus(line) {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(line || '');
  return m ? Number(m[1]) : null;
}

// ---------------------------------------------------------------------------
// State helpers

// Every document of a collection, paged with limit 1000 (default order).
export async function listAll(srv, col, query = '') {
  const docs = [];
  let after = null;
  for (let i = 0; i < 10_000; i++) {
    let q = `/v1/c/${col}?limit=1000${query ? '&' + query : ''}`;
    if (after) q += `&after=${encodeURIComponent(after)}`;
    const r = await srv.req('GET', q);
    assert.equal(r.status, 200, `list ${q}: ${r.status} ${r.text}`);
    docs.push(...r.json.docs);
    if (r.json.next === null || r.json.next === undefined) return docs;
    after = r.json.next;
    if (r.json.docs.length === 0) return docs;
  }
  throw new Error('listAll: too many pages');
}

// The last committed change-feed seq, as a list answer reports it.
export async function lastSeq(srv) {
  const r = await srv.req('GET', '/v1/c/zz_seq_probe?limit=1');
  assert.equal(r.status, 200, `seq probe: ${r.status} ${r.text}`);
  assert.equal(typeof r.json.seq, 'number', `list answer has a numeric seq: ${r.text}`);
  return r.json.seq;
}

// A snapshot of stored state: the documents of the given collections and the
// feed position. Compare two snapshots with assert.deepEqual.
export async function snapshot(srv, cols) {
  const state = { seq: await lastSeq(srv) };
  for (const c of cols) state[c] = await listAll(srv, c);
  return state;
}

// Runs `n` async workers; worker(i) is called with its index.
export async function workers(n, fn) {
  await Promise.all(Array.from({ length: n }, (_, i) => fn(i)));
}

export const DOC_ID_RE = /^[A-Za-z0-9]{20}$/;
export const TIME_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
export const SERVER_FIELDS = ['id', 'version', 'created_at', 'updated_at'];

// Strips the four server-owned fields.
export function userFields(doc) {
  const o = { ...doc };
  for (const k of SERVER_FIELDS) delete o[k];
  return o;
}
