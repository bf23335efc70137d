// Corruption: random bytes flipped in the database and in a backup are
// detected, never served silently; recovery from the newest good backup.
//
// One template data directory is made once: documents (some big enough for
// overflow pages), backup B1, more writes, backup B2, more writes and
// deletes with a short feed retention (pruning leaves free pages), then
// SIGTERM (the WAL is checkpointed into livedb.db). Each case works on a
// copy of it.
//
//   (a) CORRUPT_SEEDS seeds (default 20): 1-3 random bytes past the 100-byte
//       header of livedb.db flipped (every fifth seed: on free pages only).
//       The server either starts with exactly the documents written, and
//       takes writes (when every flip hit a free page), or says RECOVERED,
//       logs a `recovered` activity entry naming B2 and the lost seqs, keeps
//       the damaged files untouched in DATA/corrupt-*/ and serves exactly
//       B2's documents. It never serves a document that differs.
//   (b) --no-auto-recover: exit 1, naming `livedb restore`; nothing moved.
//   (c) no backup, or only damaged ones: exit 1, saying so; nothing moved.
//   (d) a flipped byte in B2: `livedb verify DIR B2` exits 1 and says why,
//       `livedb backups` shows it BAD, recovery skips it for B1. The same
//       with the manifest's hash "fixed" (damage before the hash was taken):
//       the page checksums must catch it, or the backup must be exactly
//       right.
//   (e) `livedb restore` refuses while the server runs; stopped (even after a
//       kill -9 left a WAL), restores B1 and moves the replaced files,
//       intact, to DATA/replaced-*/.
//   A byte flipped in the WAL: found at start, the sound part kept (SQLite alone drops every commit from the
//   bad frame on, silently (see the test).
//
// CORRUPT_SEED (random; printed) and CORRUPT_SEEDS.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  mkdtempSync, rmSync, readdirSync, readFileSync, writeFileSync, existsSync, statSync, cpSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BIN, ADMIN, startServer, listAll, req, assertError, mulberry32 } from '../api/lib.mjs';

const SEEDS = Number(process.env.CORRUPT_SEEDS || 20);
const SEED = Number(process.env.CORRUPT_SEED || (Date.now() % 2 ** 31));
const COLS = ['ca', 'cb', 'cc'];
const ARGS = ['--backup-interval', '0', '--no-access-log', '--apps', 'none'];

const dirs = [];
function tmp(prefix = 'livedb-corrupt-') {
  const d = mkdtempSync(path.join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}
let failed = false;
after(() => {
  if (failed) { console.error(`corruption tests failed; seed ${SEED}; data directories kept: ${dirs.join(' ')}`); return; }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const run = (args) => spawnSync(BIN, args, { encoding: 'utf8', timeout: 120_000 });
const sha = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');

// XORs bytes of a file at the given offsets (x: what to XOR with, 1-255).
function flip(file, flips) {
  const buf = readFileSync(file);
  for (const { off, x } of flips) buf[off] ^= x;
  writeFileSync(file, buf);
}

function randomFlips(rng, size, n, from = 100) {
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push({ off: from + Math.floor(rng() * (size - from)), x: 1 + Math.floor(rng() * 255) });
  }
  return out;
}

// The free pages of a database file (its freelist: trunk pages and leaves).
function freePages(buf) {
  const ps = buf.readUInt16BE(16) === 1 ? 65536 : buf.readUInt16BE(16);
  const free = new Map(); // pgno -> 'trunk' | 'leaf'
  for (let trunk = buf.readUInt32BE(32); trunk && !free.has(trunk);) {
    free.set(trunk, 'trunk');
    const p = (trunk - 1) * ps;
    const n = buf.readUInt32BE(p + 4);
    for (let i = 0; i < n; i++) free.set(buf.readUInt32BE(p + 8 + 4 * i), 'leaf');
    trunk = buf.readUInt32BE(p);
  }
  return free;
}

const fmtFlips = (f) => f.map(({ off, x }) => `${off} (page ${Math.floor(off / 4096) + 1}) ^0x${x.toString(16)}`).join(', ');

// Starts `livedb serve` on dir; resolves once it listens or exits:
// {listening, url, code, stderr(), stop(), kill()}.
function launch(dir, extra = []) {
  const proc = spawn(BIN, ['serve', '--data', dir, '--listen', '127.0.0.1:0', ...ARGS, ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  const exited = new Promise((r) => proc.on('exit', (code, sig) => r(code ?? 128 + (sig === 'SIGKILL' ? 9 : 15))));
  const h = {
    proc, listening: false, url: null, code: null, token: null,
    stderr: () => err,
    async stop() { proc.kill('SIGTERM'); return exited; },
    async kill() { proc.kill('SIGKILL'); return exited; },
    req(method, p, opts = {}) {
      return req(method, this.url + p, { ...opts, headers: { Authorization: `Bearer ${this.token}`, ...(opts.headers || {}) } });
    },
  };
  proc.stderr.on('data', (c) => { err += c; });
  return new Promise((resolve) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); }, 30_000);
    proc.stdout.on('data', (c) => {
      out += c;
      const m = /livedb: listening on (http:\/\/\S+)/.exec(out);
      if (m && !h.listening) { h.listening = true; h.url = m[1]; clearTimeout(timer); resolve(h); }
    });
    exited.then((code) => { h.code = code; clearTimeout(timer); if (!h.listening) resolve(h); });
  });
}

async function loginAs(h) {
  const r = await req('POST', `${h.url}/v1/auth/login`, { body: { email: ADMIN.email, password: ADMIN.password } });
  assert.equal(r.status, 200, `login: ${r.status} ${r.text}`);
  h.token = r.json.token;
  return h;
}

async function readFeed(h, since = 0) {
  const out = [];
  for (;;) {
    const r = await h.req('GET', `/v1/changes?since=${since}&limit=1000`);
    assert.equal(r.status, 200, `feed since ${since}: ${r.status} ${r.text}`);
    out.push(...r.json.changes);
    if (r.json.changes.length === 0) return out;
    since = r.json.seq;
  }
}

async function state(h) {
  const s = {};
  for (const c of COLS) s[c] = await listAll(h, c);
  return s;
}

// Every document of `want` read one by one and in lists, every id of `ids`
// not in `want` answers 404: what is served equals what was written.
async function assertServes(h, want, ids, label) {
  const got = await state(h);
  for (const c of COLS) {
    if (JSON.stringify(got[c]) === JSON.stringify(want[c])) continue;
    const g = new Map(got[c].map((d) => [d.id, d]));
    const bad = [];
    for (const d of want[c]) if (JSON.stringify(g.get(d.id)) !== JSON.stringify(d)) bad.push(`${c}/${d.id}: want v${d.version}, served ${g.has(d.id) ? `v${g.get(d.id).version} ${JSON.stringify(g.get(d.id)).slice(0, 120)}` : 'nothing'}`);
    const w = new Set(want[c].map((d) => d.id));
    for (const d of got[c]) if (!w.has(d.id)) bad.push(`${c}/${d.id}: served v${d.version}, which should not exist`);
    assert.fail(`${label}: the list of ${c} differs from what was written:\n  ${bad.slice(0, 10).join('\n  ')}`);
  }
  const jobs = [];
  for (const c of COLS) {
    const byId = new Map(want[c].map((d) => [d.id, d]));
    for (const id of ids[c]) jobs.push([c, id, byId.get(id)]);
  }
  const bad = [];
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < jobs.length) {
      const [c, id, d] = jobs[next++];
      const r = await h.req('GET', `/v1/c/${c}/${id}`);
      if (d ? r.status !== 200 || JSON.stringify(r.json) !== JSON.stringify(d) : r.status !== 404) {
        bad.push(`${c}/${id}: want ${d ? `v${d.version}` : '404'}, GET answered ${r.status} ${r.text.slice(0, 160)}`);
      }
    }
  }));
  assert.deepEqual(bad, [], `${label}: single reads differ from what was written`);
}

// The feed (from `since`: the template's oldest changes are pruned) is
// gapless, equals the template's up to seq `upTo`, and replaying it gives
// the documents served.
async function assertFeed(h, tplFeed, upTo, label, since = 0) {
  const served = await readFeed(h, since);
  served.forEach((c, i) => assert.equal(c.seq, since + i + 1, `${label}: the feed is not gapless at ${since + i + 1}`));
  const feed = [...tplFeed.slice(0, since), ...served];
  assert.ok(feed.length >= upTo, `${label}: the feed ends at ${feed.length}, before ${upTo}`);
  assert.deepEqual(feed.slice(since, upTo), tplFeed.slice(since, upTo), `${label}: the feed up to seq ${upTo} differs from the one written`);
  const replay = Object.fromEntries(COLS.map((c) => [c, new Map()]));
  for (const c of feed) {
    if (!replay[c.col]) continue;
    if (c.op === 'delete') replay[c.col].delete(c.id); else replay[c.col].set(c.id, c.doc);
  }
  const docs = await state(h);
  for (const c of COLS) {
    const want = [...replay[c].values()].sort((a, b) => (a.id < b.id ? -1 : 1));
    assert.deepEqual(docs[c], want, `${label}: replaying the feed does not give the documents of ${c}`);
  }
  return feed;
}

// After a recovery or a restore the feed goes on from a floor past every
// seq a client may have seen of what was lost: resuming from before it is
// resync_required (never a silent skip), and new changes follow the floor.
async function assertFeedAfter(h, kept, label) {
  const seq = (await h.req('GET', '/v1/health')).json.seq;
  assert.ok(seq > kept, `${label}: the feed position ${seq} is past the kept seq ${kept}`);
  for (const since of [0, kept, seq - 1]) {
    const r = await h.req('GET', `/v1/changes?since=${since}`);
    assert.equal(r.status, 410, `${label}: resuming from ${since} after a recovery: ${r.status}`);
  }
  assert.equal((await h.req('GET', `/v1/changes?since=${seq}`)).status, 200, label);
  const w = await h.req('PUT', '/v1/c/ca/after-recovery', { body: { kept } });
  assert.ok(w.status === 201 || w.status === 200, `${label}: writes work after a recovery: ${w.text}`);
  const next = await h.req('GET', `/v1/changes?since=${seq}`);
  assert.deepEqual(next.json.changes.map((c) => c.seq), [seq + 1], `${label}: the next change follows the floor`);
}

const corruptDirs = (dir) => readdirSync(dir).filter((f) => f.startsWith('corrupt-'));

// ------------------------------------------------------------------ the template

const T = {}; // dir, b1, b2, s1, s2, sF (states), feed, ids, size

before(async () => {
  const dir = tmp('livedb-corrupt-tpl-');
  const rng = mulberry32(SEED ^ 0x5eed);
  const srv = await startServer({ dataDir: dir, args: ARGS });
  const ids = Object.fromEntries(COLS.map((c) => [c, new Set()]));
  const put = async (c, id, extra = {}) => {
    const big = rng() < 0.15;
    const body = { n: Math.floor(rng() * 1e6), name: `${c}-${id}`, tags: [id, c], f: rng(), ...extra };
    if (big) body.text = 'lorem ipsum '.repeat(300 + Math.floor(rng() * 600)); // 3.6-11 KB: overflow pages
    const r = await srv.req('PUT', `/v1/c/${c}/${id}`, { body });
    assert.ok(r.status === 200 || r.status === 201, r.text);
    ids[c].add(id);
  };
  const phase = async (from, to, { deletes = 0, patches = 0 }) => {
    for (const c of COLS) for (let i = from; i < to; i++) await put(c, `d${i}`);
    for (let k = 0; k < patches; k++) {
      const c = COLS[k % 3];
      const r = await srv.req('PATCH', `/v1/c/${c}/d${Math.floor(rng() * to)}`, { body: { patched: k, f: null } });
      assert.ok(r.status === 200 || r.status === 404, r.text);
    }
    for (let k = 0; k < deletes; k++) {
      const c = COLS[k % 3];
      const r = await srv.req('DELETE', `/v1/c/${c}/d${Math.floor(rng() * to)}`);
      assert.ok(r.status === 200 || r.status === 404, r.text);
    }
  };
  const backup = async () => {
    const r = await srv.req('POST', '/v1/admin/backups');
    assert.equal(r.status, 201, r.text);
    return r.json.backup;
  };
  await phase(0, 120, { patches: 60, deletes: 20 });
  T.b1 = await backup();
  T.s1 = await state(srv);
  await phase(120, 200, { patches: 60, deletes: 30 });
  T.b2 = await backup();
  T.s2 = await state(srv);
  await phase(200, 260, { patches: 40, deletes: 20 });
  T.feed = await readFeed(srv);
  // Free pages: a restart with a short feed retention prunes the oldest
  // changes as soon as something commits (the deletes here).
  assert.equal(await srv.stop(), 0, srv.stderrTail());
  srv.args = [...ARGS, '--retain-changes', '300'];
  await srv.restart();
  for (const c of COLS) {
    for (const d of await listAll(srv, c)) {
      if (d.text && rng() < 0.5) assert.equal((await srv.req('DELETE', `/v1/c/${c}/${d.id}`)).status, 200);
    }
  }
  T.sF = await state(srv);
  const tail = await srv.req('GET', `/v1/changes?since=${T.feed.length}&limit=1000`);
  assert.equal(tail.status, 200, tail.text);
  T.feed.push(...tail.json.changes);
  T.seqF = T.feed.length;
  assert.equal((await srv.req('GET', '/v1/changes?since=0')).status, 410, 'the oldest changes are pruned');
  assert.equal(await srv.stop(), 0, srv.stderrTail());
  T.dir = dir;
  T.ids = Object.fromEntries(COLS.map((c) => [c, [...ids[c]]]));
  const db = path.join(dir, 'livedb.db');
  T.size = statSync(db).size;
  assert.ok(!existsSync(`${db}-wal`) || statSync(`${db}-wal`).size === 0, 'SIGTERM leaves the WAL checkpointed');
  T.free = freePages(readFileSync(db));
  console.log(`corruption: seed ${SEED}; template ${T.size} bytes (${T.size / 4096} pages, ${T.free.size} free), ` +
    `B1 seq ${T.b1.seq}, B2 seq ${T.b2.seq}, last seq ${T.seqF}`);
});

function copyTemplate() {
  const d = tmp();
  cpSync(T.dir, d, { recursive: true });
  return d;
}

// ------------------------------------------------------------------ (a)

describe('random bytes flipped in livedb.db', () => {
  const outcomes = { clean: 0, recovered: 0 };
  after(() => console.log(`corruption (a): ${SEEDS} seeds: ${outcomes.recovered} detected and recovered from B2, ` +
    `${outcomes.clean} not detected (every flip on a free page) and served exactly what was written`));

  for (let i = 0; i < SEEDS; i++) {
    const seed = (SEED + i * 7919) % 2 ** 31;
    test(`seed ${seed}`, async (t) => {
      try {
        const rng = mulberry32(seed);
        const dir = copyTemplate();
        const db = path.join(dir, 'livedb.db');
        let flips = randomFlips(rng, T.size, 1 + Math.floor(rng() * 3));
        if (i % 5 === 4) {
          // Every fifth seed aims at free pages only: the case the start-up
          // check cannot see, and must not need to.
          const leaves = [...T.free].filter(([, k]) => k === 'leaf').map(([p]) => p);
          flips = flips.map(({ x }) => ({ off: (leaves[Math.floor(rng() * leaves.length)] - 1) * 4096 + Math.floor(rng() * 4096), x }));
        }
        flip(db, flips);
        const damaged = sha(db);
        const free = T.free;
        const onFree = flips.map(({ off }) => free.get(Math.floor(off / 4096) + 1) || 'used');
        const label = `seed ${seed}, flips at ${fmtFlips(flips)} (${onFree.join(', ')} pages)`;
        const h = await launch(dir);
        assert.ok(h.listening, `${label}: the server did not start (exit ${h.code}), though B2 is good:\n${h.stderr().slice(-3000)}`);
        try {
          await loginAs(h);
          const recovered = /RECOVERED/.test(h.stderr());
          t.diagnostic(`${label}: ${recovered ? 'detected, recovered' : 'not detected'}`);
          if (onFree.every((x) => x === 'leaf')) assert.ok(!recovered, `${label}: only free leaf pages were hit, yet it recovered:\n${h.stderr().slice(-1500)}`);
          else assert.ok(recovered, `${label}: a page in use was damaged, yet the server started without noticing`);
          const act = await h.req('GET', '/v1/activity?action=recovered');
          assert.equal(act.status, 200, act.text);
          if (!recovered) {
            outcomes.clean++;
            assert.deepEqual(corruptDirs(dir), [], `${label}: no recovery, yet files were moved aside`);
            assert.equal(act.json.entries.length, 0, `${label}: a recovered entry without RECOVERED on stderr`);
            await assertServes(h, T.sF, T.ids, `${label} (started without recovery)`);
            await assertFeed(h, T.feed, T.seqF, label, T.seqF - 250);
            // Writes go on, reusing free pages (one of which is damaged).
            for (let k = 0; k < 40; k++) {
              const r = await h.req('PUT', `/v1/c/ca/new${k}`, { body: { k, text: 'z'.repeat(6000) } });
              assert.equal(r.status, 201, `${label}: a write after the start: ${r.status} ${r.text}`);
            }
          } else {
            outcomes.recovered++;
            assert.match(h.stderr(), new RegExp(`RECOVERED.*${T.b2.name.replace(/\./g, '\\.')}`), `${label}: stderr names the backup`);
            assert.equal(act.json.entries.length, 1, `${label}: one recovered entry: ${act.text}`);
            const data = act.json.entries[0].data;
            assert.equal(data.backup, T.b2.name, label);
            assert.equal(data.kept_to_seq, T.b2.seq, label);
            assert.ok(data.lost_to_seq === T.seqF || data.lost_to_seq === -1,
              `${label}: lost_to_seq ${data.lost_to_seq}, the damaged database held ${T.seqF}`);
            assert.ok(typeof data.problem === 'string' && data.problem.length > 0, label);
            const moved = corruptDirs(dir);
            assert.equal(moved.length, 1, `${label}: one corrupt-* dir: ${moved}`);
            assert.equal(path.resolve(data.moved_to), path.resolve(dir, moved[0]), label);
            assert.equal(sha(path.join(dir, moved[0], 'livedb.db')), damaged, `${label}: the damaged database is kept as it was`);
            await assertServes(h, T.s2, T.ids, `${label} (recovered from ${T.b2.name})`);
            await assertFeedAfter(h, T.b2.seq, label);
          }
        } finally {
          assert.equal(await h.stop(), 0, `exit after SIGTERM:\n${h.stderr().slice(-2000)}`);
        }
        const v = run(['verify', '--data', dir]);
        assert.equal(v.status, 0, `${label}: livedb verify after the run: ${v.stderr}`);
      } catch (e) { failed = true; throw e; }
    });
  }
});

// ------------------------------------------------------------------ (b), (c)

describe('a damaged database that is not recovered', () => {
  const damage = (dir) => {
    const db = path.join(dir, 'livedb.db');
    flip(db, [{ off: 2048, x: 0x40 }, { off: 5 * 4096 + 1234, x: 0x01 }]); // page 1 is always read
    return db;
  };
  // Damages dir's database and starts the server on it (with args): it must
  // not start, and exit 1. Returns the handle, the database and its hash
  // once damaged.
  const damagedStart = async (dir, args, notStarted) => {
    const db = damage(dir);
    const before = sha(db);
    const h = await launch(dir, args);
    assert.equal(h.listening, false, notStarted);
    assert.equal(h.code, 1, h.stderr());
    return { h, db, before };
  };

  test('--no-auto-recover: exit 1 naming livedb restore; nothing moved; then a plain start recovers', async () => {
    try {
      const dir = copyTemplate();
      const manifest = readFileSync(path.join(dir, 'backups', 'manifest.json'), 'utf8');
      const { h, db, before } = await damagedStart(dir, ['--no-auto-recover'], 'it must not start');
      assert.match(h.stderr(), /livedb restore --data/);
      assert.match(h.stderr(), /--no-auto-recover/);
      assert.equal(sha(db), before, 'the damaged database is left exactly as it was');
      assert.deepEqual(corruptDirs(dir), []);
      assert.equal(readFileSync(path.join(dir, 'backups', 'manifest.json'), 'utf8'), manifest);
      const h2 = await launch(dir);
      assert.ok(h2.listening, h2.stderr());
      await loginAs(h2);
      assert.match(h2.stderr(), /RECOVERED/);
      await assertServes(h2, T.s2, T.ids, 'recovered after --no-auto-recover');
      assert.equal(await h2.stop(), 0);
    } catch (e) { failed = true; throw e; }
  });

  test('no backup at all: exit 1, says so, files left in place', async () => {
    try {
      const dir = copyTemplate();
      rmSync(path.join(dir, 'backups'), { recursive: true });
      const { h, db, before } = await damagedStart(dir);
      assert.match(h.stderr(), /no backup that passes its check/);
      assert.match(h.stderr(), /left as it is/);
      assert.equal(sha(db), before);
      assert.deepEqual(readdirSync(dir).filter((f) => /^(corrupt|replaced)-/.test(f)), []);
    } catch (e) { failed = true; throw e; }
  });

  test('only damaged backups: exit 1, says so; each is marked BAD', async () => {
    try {
      const dir = copyTemplate();
      const rng = mulberry32(SEED ^ 0xbad);
      for (const b of [T.b1, T.b2]) {
        const f = path.join(dir, 'backups', b.name);
        flip(f, randomFlips(rng, statSync(f).size, 1, 0));
      }
      const { h, db, before } = await damagedStart(dir);
      assert.match(h.stderr(), /no backup that passes its check/);
      assert.equal(sha(db), before);
      assert.deepEqual(corruptDirs(dir), []);
      const l = run(['backups', '--data', dir]);
      assert.equal(l.status, 0, l.stderr);
      for (const b of [T.b1, T.b2]) assert.match(l.stdout, new RegExp(`${b.name.replace(/\./g, '\\.')} .* BAD: its checksum differs`), l.stdout);
    } catch (e) { failed = true; throw e; }
  });
});

// ------------------------------------------------------------------ (d)

describe('random bytes flipped in a backup', () => {
  test('verify names the problem, backups shows it BAD, recovery skips it for the older good one', async () => {
    try {
      const rng = mulberry32(SEED ^ 0xd);
      const dir = copyTemplate();
      const f = path.join(dir, 'backups', T.b2.name);
      const flips = randomFlips(rng, statSync(f).size, 1 + Math.floor(rng() * 3), 0);
      flip(f, flips);
      const label = `B2 flips at ${fmtFlips(flips)}`;
      const v = run(['verify', '--data', dir, T.b2.name]);
      assert.equal(v.status, 1, `${label}: ${v.stdout}${v.stderr}`);
      assert.match(v.stderr, new RegExp(`backup ${T.b2.name.replace(/\./g, '\\.')} FAILED its check: its checksum differs from the one recorded`), label);
      const ok1 = run(['verify', '--data', dir, T.b1.name]);
      assert.equal(ok1.status, 0, ok1.stderr);
      assert.match(ok1.stdout, /is sound/);
      const l = run(['backups', '--data', dir]);
      const lines = l.stdout.trim().split('\n');
      assert.equal(lines.length, 2, l.stdout);
      assert.match(lines[0], new RegExp(`^${T.b2.name.replace(/\./g, '\\.')} .* BAD: its checksum differs`), 'newest first, BAD');
      assert.match(lines[1], new RegExp(`^${T.b1.name.replace(/\./g, '\\.')} .* ok$`));

      flip(path.join(dir, 'livedb.db'), [{ off: 2048, x: 0x10 }]);
      const h = await launch(dir);
      assert.ok(h.listening, h.stderr());
      try {
        await loginAs(h);
        assert.match(h.stderr(), new RegExp(`RECOVERED.*${T.b1.name.replace(/\./g, '\\.')}`));
        const data = (await h.req('GET', '/v1/activity?action=recovered')).json.entries[0].data;
        assert.equal(data.backup, T.b1.name);
        assert.equal(data.kept_to_seq, T.b1.seq);
        await assertServes(h, T.s1, T.ids, `${label}: recovered from B1`);
        await assertFeedAfter(h, T.b1.seq, label);
      } finally {
        assert.equal(await h.stop(), 0);
      }
    } catch (e) { failed = true; throw e; }
  });

  // Damage the whole-file hash cannot see (the file was bad before it was
  // hashed): the page checksums and integrity check must, or the backup
  // must restore to exactly what it held.
  const N = Math.max(3, Math.ceil(SEEDS / 4));
  for (let i = 0; i < N; i++) {
    const seed = (SEED + 104729 * (i + 1)) % 2 ** 31;
    test(`page damage with the manifest hash matching, seed ${seed}`, async () => {
      try {
        const rng = mulberry32(seed);
        const dir = copyTemplate();
        const f = path.join(dir, 'backups', T.b2.name);
        const flips = randomFlips(rng, statSync(f).size, 1 + Math.floor(rng() * 2));
        flip(f, flips);
        const mf = path.join(dir, 'backups', 'manifest.json');
        const m = JSON.parse(readFileSync(mf, 'utf8'));
        const e = m.backups.find((b) => b.name === T.b2.name);
        e.blake2b = blake2b256(readFileSync(f));
        writeFileSync(mf, JSON.stringify(m));
        const label = `B2 flips at ${fmtFlips(flips)}, hash rewritten`;
        const v = run(['verify', '--data', dir, T.b2.name]);
        if (v.status === 1) {
          assert.match(v.stderr, /FAILED its check: (fails its integrity check|cannot be read|will not open)/, `${label}: ${v.stderr}`);
          return;
        }
        // Not detected: the flips hit free pages; B2 must be exactly right.
        assert.equal(v.status, 0, `${label}: ${v.stdout}${v.stderr}`);
        const r = run(['restore', '--data', dir, T.b2.name]);
        assert.equal(r.status, 0, `${label}: ${r.stderr}`);
        const h = await launch(dir);
        assert.ok(h.listening, h.stderr());
        try {
          await loginAs(h);
          await assertServes(h, T.s2, T.ids, `${label} (undetected, restored)`);
          await assertFeedAfter(h, T.b2.seq, label);
        } finally {
          assert.equal(await h.stop(), 0);
        }
      } catch (e) { failed = true; throw e; }
    });
  }
});

// ------------------------------------------------------------------ the WAL

// SQLite ends the WAL at the first frame whose checksum fails, so a flipped
// byte there would drop that commit and every one after it, acknowledged or
// not, with no error. The start-up check reads the WAL itself: whole
// commits after a bad frame are damage (only the last, unsynced commit may
// be torn by a crash). It moves the files aside and keeps the database with
// the sound part of its WAL (newer than any backup), says RECOVERED, logs
// what it kept, and starts the feed past anything a client may have seen.
describe('random bytes flipped in the WAL', () => {
  // Anywhere in a frame (its page, or its header: page number, commit
  // size, checksums), then the two places no checksum of a frame covers: a
  // frame's salt and the WAL's own header.
  // A flip lands among the frames SQLite still needs (lo..hi, byte offsets
  // from liveFrames): those of the header's salts and not yet copied to the
  // database. A frame left from before a WAL reset or already checkpointed
  // holds nothing the database lacks; damage there loses nothing.
  const where = [
    ...[0, 1, 2, 3].map((t) => ({ name: `seed ${t}`, t, pick: (rng, lo, hi) => lo + Math.floor((0.1 + 0.6 * rng()) * (hi - lo)) })),
    { name: "a frame's salt", t: 4, pick: (rng, lo, hi, fsz) => lo + fsz * Math.floor((0.1 + 0.6 * rng()) * ((hi - lo) / fsz)) + 8 + Math.floor(rng() * 8) },
    { name: "the WAL's header", t: 5, pick: (rng) => Math.floor(rng() * 32) },
  ];
  for (const { name, t, pick } of where) {
    test(`a flipped byte in the WAL is found, said, and only sound data is kept (${name})`, async () => {
      const rng = mulberry32(SEED ^ (0x3a1 + t));
      const dir = copyTemplate();
      const h = await launch(dir);
      assert.ok(h.listening, h.stderr());
      await loginAs(h);
      const acked = [];
      for (let k = 0; k < 150; k++) {
        const r = await h.req('PUT', `/v1/c/ca/w${k}`, { body: { k } });
        assert.equal(r.status, 201, r.text);
        acked.push(r.json);
      }
      const lastSeq = (await h.req('GET', '/v1/health')).json.seq;
      await h.kill();
      const wal = path.join(dir, 'livedb.db-wal');
      const size = statSync(wal).size;
      const { fsz, lo, hi } = liveFrames(wal);
      assert.ok(hi - lo >= 20 * fsz, `at least 20 frames still needed in the WAL (${(hi - lo) / fsz})`);
      const off = pick(rng, lo, hi, fsz);
      flip(wal, [{ off, x: 0x20 }]);
      const h2 = await launch(dir);
      assert.ok(h2.listening, h2.stderr());
      try {
        await loginAs(h2);
        assert.match(h2.stderr(), /RECOVERED/, `a byte flipped at WAL offset ${off} of ${size} went unnoticed`);
        const got = new Map((await listAll(h2, 'ca')).map((d) => [d.id, d]));
        // What is kept is exactly what was written, up to where the damage begins.
        let gone = 0;
        for (const d of acked) {
          const g = got.get(d.id);
          if (!g) gone++;
          else assert.deepEqual(g, d, `${d.id} kept, and exactly as written`);
        }
        assert.ok(gone > 0, 'the damaged commit and those after it are not in the database');
        for (let k = acked.length - gone; k < acked.length; k++) assert.ok(!got.has(`w${k}`), 'a prefix is kept');
        const act = await h2.req('GET', '/v1/activity?action=recovered&limit=1');
        const data = act.json.entries[0].data;
        assert.equal(data.salvaged, true);
        assert.match(data.problem, /write-ahead log/);
        assert.ok(data.feed_from > lastSeq + 1, `the feed goes on past ${lastSeq}: ${data.feed_from}`);
        assertError(await h2.req('GET', `/v1/changes?since=${lastSeq}`), 410, 'resync_required');
        assert.ok(existsSync(path.join(data.moved_to, 'livedb.db-wal')), 'the damaged WAL is kept aside');
      } finally {
        await h2.stop();
      }
    });
  }
});

// The frames of a WAL that the database still needs, as byte offsets lo..hi:
// from the first frame a checkpoint has not copied (nBackfill, the first
// word of the checkpoint info at byte 96 of the -shm file, native order)
// to the last frame of the header's salts (SQLite's file format, 4.1).
function liveFrames(wal) {
  const w = readFileSync(wal);
  const fsz = 24 + w.readUInt32BE(8);
  let n = 0;
  while (32 + (n + 1) * fsz <= w.length && w.compare(w, 16, 24, 32 + n * fsz + 8, 32 + n * fsz + 16) === 0) n++;
  let backfilled = 0;
  const shm = `${wal.slice(0, -4)}-shm`;
  if (existsSync(shm) && statSync(shm).size >= 100) backfilled = Math.min(readFileSync(shm).readUInt32LE(96), n);
  return { fsz, lo: 32 + backfilled * fsz, hi: 32 + n * fsz };
}

// BLAKE2b-256, the manifest's hash (Node's crypto has only BLAKE2b-512, a
// different function): coreutils' b2sum.
function blake2b256(buf) {
  const r = spawnSync('b2sum', ['-l', '256'], { input: buf });
  assert.equal(r.status, 0, `b2sum: ${r.stderr}`);
  return r.stdout.toString().split(/\s/)[0];
}

// ------------------------------------------------------------------ (e)

describe('livedb restore', () => {
  test('refused while the server runs; stopped (after a kill -9), restores and keeps the replaced files', async () => {
    try {
      const dir = copyTemplate();
      const h = await launch(dir);
      assert.ok(h.listening, h.stderr());
      await loginAs(h);
      const r1 = run(['restore', '--data', dir, T.b1.name]);
      assert.equal(r1.status, 1, r1.stdout + r1.stderr);
      assert.match(r1.stderr, /a server is running on .*: stop it first/);
      assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('replaced-')), []);
      // Writes after the template, left in the WAL by kill -9.
      for (let k = 0; k < 20; k++) assert.equal((await h.req('PUT', `/v1/c/ca/late${k}`, { body: { k } })).status, 201);
      await h.kill();
      assert.ok(statSync(path.join(dir, 'livedb.db-wal')).size > 0, 'the kill leaves a WAL');

      const r2 = run(['restore', '--data', dir, T.b1.name]);
      assert.equal(r2.status, 0, r2.stderr);
      assert.match(r2.stdout, new RegExp(`restored ${T.b1.name.replace(/\./g, '\\.')} into`));
      const m = /moved to (\S+) \(nothing deleted\)/.exec(r2.stdout);
      assert.ok(m, r2.stdout);
      assert.match(path.basename(m[1]), /^replaced-/);
      assert.ok(existsSync(path.join(m[1], 'livedb.db')));
      assert.ok(existsSync(path.join(m[1], 'livedb.db-wal')), 'the WAL moves with its database');
      assert.ok(!existsSync(path.join(dir, 'livedb.db-wal')) || statSync(path.join(dir, 'livedb.db-wal')).size === 0);

      const h2 = await launch(dir);
      assert.ok(h2.listening, h2.stderr());
      try {
        await loginAs(h2);
        assert.doesNotMatch(h2.stderr(), /RECOVERED/);
        await assertServes(h2, T.s1, T.ids, 'restored B1');
        await assertFeedAfter(h2, T.b1.seq, 'restored B1');
        assert.equal((await h2.req('GET', '/v1/c/ca/late0')).status, 404);
      } finally {
        assert.equal(await h2.stop(), 0);
      }

      // The replaced database is whole: with its WAL, it holds the late writes.
      const old = tmp();
      cpSync(m[1], old, { recursive: true });
      const h3 = await launch(old);
      assert.ok(h3.listening, h3.stderr());
      try {
        await loginAs(h3);
        const late = await listAll(h3, 'ca', 'where=k:ge:0');
        assert.equal(late.length, 20);
      } finally {
        assert.equal(await h3.stop(), 0);
      }
      const v = run(['verify', '--data', old]);
      assert.equal(v.status, 0, v.stderr);
    } catch (e) { failed = true; throw e; }
  });

  test('a damaged backup is not restored', async () => {
    try {
      const dir = copyTemplate();
      flip(path.join(dir, 'backups', T.b1.name), [{ off: 5000, x: 0x20 }]);
      const before = sha(path.join(dir, 'livedb.db'));
      const r = run(['restore', '--data', dir, T.b1.name]);
      assert.equal(r.status, 1, r.stdout);
      assert.match(r.stderr, /failed its check .*not restored/);
      assert.equal(sha(path.join(dir, 'livedb.db')), before);
      assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('replaced-')), []);
    } catch (e) { failed = true; throw e; }
  });
});
