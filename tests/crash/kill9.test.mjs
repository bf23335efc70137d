// kill -9 at random moments under concurrent writers that log every
// acknowledged write: 0 acknowledged writes lost, integrity ok, seq
// gapless, the feed agrees with the documents.
//
// One data directory for the whole run (the database grows across cycles).
// Each cycle starts the server, checks everything written so far, then runs
// WRITERS concurrent writers (PUT, POST, PATCH, DELETE and batches on a few
// collections whose ids overlap, so writers race on the same documents)
// and SIGKILLs the server after a random delay. Every write carries a unique
// `tag`, so each change in the feed names the request that made it.
//
// What each check proves (after every restart):
//   - the feed is gapless: seqs 1..N, each once, in order;
//   - every change follows from the one before it on that document (create
//     on nothing, update = version + 1, delete of the stored version) and is
//     exactly what its request asked (a PUT's body, a PATCH merged into the
//     document before it);
//   - every acknowledged write (2xx) is in the feed and equals its answer;
//     an acknowledged batch is its ops, in order, ending at its seq;
//   - a write answered 4xx never committed; a batch whose answer was lost
//     committed all its ops or none;
//   - replaying the feed gives exactly the documents the lists return;
//   - health is ok; every 25 cycles `livedb verify` (integrity and the
//     activity chain) while the server runs; at the end, after SIGTERM,
//     `livedb verify`, every backup checked, and two of them opened and
//     compared with the feed replayed to their seq.
// Some cycles kill the server while it starts (its start-up check
// checkpoints the WAL the previous kill left), some run long enough for
// automatic backups (--backup-interval 1), and some ask for a backup at a
// random moment: kills land in checkpoints and backups too.
//
// CRASH_CYCLES (default 200), CRASH_WRITERS (8), CRASH_SEED (random; printed)
// and LIVEDB_BIN (the binary; build/asan/livedb for the sanitizer build).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readdirSync, copyFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BIN, startServer, listAll, sleep, userFields, mulberry32 } from '../api/lib.mjs';

const CYCLES = Number(process.env.CRASH_CYCLES || 200);
const WRITERS = Number(process.env.CRASH_WRITERS || 8);
const SEED = Number(process.env.CRASH_SEED || (Date.now() % 2 ** 31));
const COLS = ['ka', 'kb', 'kc'];
const IDS = 40; // ids per collection: writers collide on them
const LOG = 'log'; // POSTs without an id land here

// ------------------------------------------------------------------ helpers

// RFC 7396.
function mergePatch(target, patch) {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out = (target && typeof target === 'object' && !Array.isArray(target)) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function without(o, keys) {
  const c = { ...o };
  for (const k of keys) delete c[k];
  return c;
}

function deepEq(a, b) {
  try { assert.deepStrictEqual(a, b); return true; } catch { return false; }
}

const short = (v) => {
  const s = JSON.stringify(v);
  return s && s.length > 300 ? s.slice(0, 300) + '…' : s;
};

function run(args, timeout = 120_000) {
  return spawnSync(BIN, args, { encoding: 'utf8', timeout });
}

// ------------------------------------------------------------------ the model

// Everything sent, and the feed as read so far, replayed.
class Model {
  constructor() {
    this.next = 1;                // the next seq the feed must show
    this.state = new Map();       // "col/id" -> the document the feed says is stored
    this.log = [];                // seq-1 -> {col, id, op, version, tag}
    this.tagSeq = new Map();      // tag -> seq of the change it made
    this.feedDeletes = new Map(); // "col/id@v" -> deletes of that version in the feed
    this.ackedDeletes = new Map();
    this.sent = new Map();        // tag -> {rec, i}: the request (and batch op) that carries it
    this.pending = [];            // requests of the last cycle, to check after the restart
    this.acked = 0;
    this.problems = [];
  }

  problem(msg) {
    if (this.problems.length < 40) this.problems.push(msg);
  }

  // One change from the feed.
  apply(c) {
    if (c.seq !== this.next) {
      this.problem(`the feed is not gapless: expected seq ${this.next}, got ${c.seq} (${c.op} ${c.col}/${c.id})`);
      if (c.seq < this.next) return; // a duplicate: do not apply twice
      this.next = c.seq;
      while (this.log.length < c.seq - 1) this.log.push(null); // keep log[seq - 1]
    }
    this.next++;
    const key = `${c.col}/${c.id}`;
    const prev = this.state.get(key);
    let tag = null;
    if (c.op === 'delete') {
      if (!prev) this.problem(`seq ${c.seq}: delete of ${key}, which did not exist`);
      else if (prev.version !== c.version) this.problem(`seq ${c.seq}: delete of ${key} v${c.version}, but v${prev.version} was stored`);
      if (c.doc !== null) this.problem(`seq ${c.seq}: a delete with a doc: ${short(c.doc)}`);
      tag = prev ? prev.tag : null;
      const dk = `${key}@${c.version}`;
      this.feedDeletes.set(dk, (this.feedDeletes.get(dk) || 0) + 1);
      this.state.delete(key);
    } else {
      const d = c.doc;
      if (!d || d.id !== c.id || d.version !== c.version) {
        this.problem(`seq ${c.seq}: the change (${key} v${c.version}) and its doc disagree: ${short(d)}`);
      }
      if (c.op === 'create' && (prev || c.version !== 1)) {
        this.problem(`seq ${c.seq}: create of ${key} v${c.version}${prev ? ` over stored v${prev.version}` : ''}`);
      }
      if (c.op === 'update' && (!prev || c.version !== prev.version + 1)) {
        this.problem(`seq ${c.seq}: update of ${key} to v${c.version}, ${prev ? `stored was v${prev.version}` : 'which did not exist'}`);
      }
      tag = d && d.tag;
      const s = this.sent.get(tag);
      if (!s) {
        this.problem(`seq ${c.seq}: ${c.op} ${key} carries tag ${tag}, which no writer sent: ${short(d)}`);
      } else {
        const op = s.rec.kind === 'batch' ? s.rec.ops[s.i] : s.rec;
        if (this.tagSeq.has(tag)) this.problem(`seq ${c.seq}: tag ${tag} (${op.kind} ${key}) committed twice, first at seq ${this.tagSeq.get(tag)}`);
        if (op.col !== c.col || (op.id !== undefined && op.id !== c.id)) {
          this.problem(`seq ${c.seq}: tag ${tag} was sent to ${op.col}/${op.id}, but changed ${key}`);
        }
        let want;
        if (op.kind === 'patch') {
          if (!prev) this.problem(`seq ${c.seq}: PATCH ${key} (tag ${tag}) committed on a document that did not exist`);
          want = mergePatch(prev ? userFields(prev.doc) : {}, op.body);
        } else {
          if (op.kind === 'create' && prev) this.problem(`seq ${c.seq}: create ${key} (tag ${tag}) committed over v${prev.version}`);
          want = without(op.body, ['id']);
        }
        if (d && !deepEq(userFields(d), want)) {
          this.problem(`seq ${c.seq}: ${op.kind} ${key} (tag ${tag}) stored ${short(userFields(d))}, but the request makes ${short(want)}`);
        }
        // An answered write: the answer is what was committed.
        if (s.rec.outcome === 'acked') {
          const ans = s.rec.kind === 'batch' ? s.rec.answer.results[s.i] : s.rec.answer;
          if (!deepEq(ans, d)) this.problem(`seq ${c.seq}: ${op.kind} ${key} (tag ${tag}) was answered ${short(ans)}, the feed has ${short(d)}`);
        }
        this.tagSeq.set(tag, c.seq);
      }
      this.state.set(key, { version: c.version, doc: d, tag });
    }
    this.log.push({ col: c.col, id: c.id, op: c.op, version: c.version, tag });
  }

  // Reads the feed from where the model is to its end.
  async readFeed(srv) {
    let since = this.next - 1;
    for (;;) {
      const r = await srv.req('GET', `/v1/changes?since=${since}&limit=1000`);
      if (r.status !== 200) {
        this.problem(`GET /v1/changes?since=${since}: ${r.status} ${r.text.slice(0, 300)}` +
          (r.status === 410 ? ' (the feed is behind what was read before: committed changes were lost)' : ''));
        return;
      }
      for (const c of r.json.changes) this.apply(c);
      if (r.json.changes.length === 0 || r.json.seq <= since) return;
      since = r.json.seq;
    }
  }

  where(key) {
    const s = this.state.get(key);
    return s ? `${key} is now v${s.version} (tag ${s.tag})` : `${key} does not exist now`;
  }

  // The requests of the last cycle, against the feed as read after the restart.
  checkPending(lastSeq) {
    const lost = (rec, what) => this.problem(
      `LOST in cycle ${rec.cycle}: ${what}, answered ${rec.status} ${rec.killAt - rec.ackAt} ms ` +
      `before the kill (sent ${rec.sentAt} ms into the cycle, kill at ${rec.killAt} ms); ` +
      `the feed (last seq ${lastSeq}) has no such change`);
    for (const rec of this.pending) {
      if (rec.outcome === 'acked') {
        this.acked++;
        if (rec.kind === 'batch') this.checkBatch(rec, rec.answer.seq - rec.ops.length + 1, lost);
        else if (rec.kind === 'delete') {
          const dk = `${rec.col}/${rec.id}@${rec.answer.version}`;
          const n = (this.ackedDeletes.get(dk) || 0) + 1;
          this.ackedDeletes.set(dk, n);
          if ((this.feedDeletes.get(dk) || 0) < n) {
            lost(rec, `DELETE ${rec.col}/${rec.id} (v${rec.answer.version}; ${this.where(`${rec.col}/${rec.id}`)})`);
          }
        } else {
          const seq = this.tagSeq.get(rec.tag);
          const key = `${rec.col}/${rec.answer.id}`;
          if (seq === undefined) {
            lost(rec, `${rec.kind.toUpperCase()} ${key} v${rec.answer.version} (tag ${rec.tag}; ${this.where(key)})`);
          } else {
            const e = this.log[seq - 1];
            if (e.col !== rec.col || e.id !== rec.answer.id || e.version !== rec.answer.version) {
              this.problem(`cycle ${rec.cycle}: ${rec.kind} tag ${rec.tag} was answered as ${key} v${rec.answer.version}, the feed has ${e.col}/${e.id} v${e.version} at seq ${seq}`);
            }
          }
        }
      } else if (rec.outcome === 'refused') {
        // Answered with an error: nothing of it may have committed.
        for (const t of rec.kind === 'batch' ? rec.ops.map((o) => o.tag) : [rec.tag]) {
          if (t && this.tagSeq.has(t)) {
            this.problem(`cycle ${rec.cycle}: ${rec.kind} tag ${t} was answered ${rec.status} (${rec.text.slice(0, 120)}) but committed at seq ${this.tagSeq.get(t)}`);
          }
        }
      } else if (rec.kind === 'batch') {
        // Unanswered (the kill): all of it or none.
        const tags = rec.ops.filter((o) => o.tag);
        const inFeed = tags.filter((o) => this.tagSeq.has(o.tag));
        if (inFeed.length && inFeed.length !== tags.length) {
          this.problem(`cycle ${rec.cycle}: a batch cut by the kill committed in part: ${inFeed.length} of its ${tags.length} written ops (${tags.map((o) => `${o.tag}:${this.tagSeq.get(o.tag) ?? 'absent'}`).join(', ')})`);
        } else if (inFeed.length) {
          const first = rec.ops.findIndex((o) => o.tag);
          this.checkBatch(rec, this.tagSeq.get(rec.ops[first].tag) - first, lost);
        }
      }
    }
    this.pending = [];
  }

  // A batch's ops are the changes base..base+n-1, in order.
  checkBatch(rec, base, lost) {
    const ans = rec.outcome === 'acked';
    for (let i = 0; i < rec.ops.length; i++) {
      const op = rec.ops[i];
      const e = this.log[base + i - 1];
      const key = `${op.col}/${op.id}`;
      const want = op.kind === 'delete' ? 'delete' : op.kind === 'create' ? 'create' : op.kind === 'patch' ? 'update' : null;
      const ok = e && e.col === op.col && e.id === op.id && (want ? e.op === want : e.op !== 'delete') &&
        (op.tag ? e.tag === op.tag : true) &&
        (!ans || (op.kind === 'delete' ? e.version === rec.answer.results[i].version : e.version === rec.answer.results[i].version));
      if (!ok) {
        const what = `op ${i} of ${rec.ops.length} of a batch (${op.kind} ${key}${op.tag ? `, tag ${op.tag}` : ''}` +
          `${ans ? `, answered seq ${rec.answer.seq}` : ''})`;
        if (ans && op.tag && !this.tagSeq.has(op.tag)) lost(rec, `${what}; ${this.where(key)}`);
        else this.problem(`cycle ${rec.cycle}: ${what} should be seq ${base + i}, which is ${e ? `${e.op} ${e.col}/${e.id} v${e.version} tag ${e.tag}` : 'absent'}`);
      }
    }
  }

  // The documents every list returns, as replaying the feed says.
  expected(col) {
    const docs = [];
    for (const [k, v] of this.state) if (k.startsWith(col + '/')) docs.push(v.doc);
    return docs.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async compareDocs(srv, cols, label) {
    for (const col of cols) {
      const got = await listAll(srv, col);
      const want = this.expected(col);
      if (deepEq(got, want)) continue;
      const g = new Map(got.map((d) => [d.id, d]));
      const w = new Map(want.map((d) => [d.id, d]));
      let n = 0;
      for (const id of new Set([...g.keys(), ...w.keys()])) {
        if (deepEq(g.get(id), w.get(id))) continue;
        if (n++ < 8) {
          this.problem(`${label}: ${col}/${id}: the feed replayed gives ${short(w.get(id)) ?? 'no document'}, the list returns ${short(g.get(id)) ?? 'no document'}`);
        }
      }
      if (n === 0) this.problem(`${label}: ${col}: the list's order differs from id order`);
    }
  }

  report(label) {
    if (this.problems.length) {
      assert.fail(`${label} (seed ${SEED}):\n  ${this.problems.join('\n  ')}`);
    }
  }
}

// ------------------------------------------------------------------ writers

function makeBody(rng, tag, w, n) {
  const body = { tag, w, n, f: n + 0.25, obj: { a: n % 7, list: [w, n] } };
  const r = rng();
  if (r < 0.08) body.pad = 'x'.repeat(2000 + Math.floor(rng() * 10000)); // overflow pages
  else if (r < 0.5) body.pad = 'p'.repeat(Math.floor(rng() * 200));
  return body;
}

function makePatch(rng, tag, n) {
  const p = { tag, p: n, obj: { a: rng() < 0.3 ? null : n } };
  if (rng() < 0.3) p.pad = null;
  if (rng() < 0.2) p.f = null;
  return p;
}

// Runs the writers until the server dies; every request is recorded in
// model.sent (by tag) and model.pending.
async function writeUntilKilled(srv, model, { cycle, rng, killAfter, backupAt }) {
  const t0 = Date.now();
  const now = () => Date.now() - t0;
  let dead = false;
  let seqNo = 0;
  const backups = [];
  const killer = (async () => {
    await sleep(killAfter);
    dead = true;
    const at = now();
    await srv.kill();
    return at;
  })();
  // fetch (undici) can leave a request whose connection died unsettled,
  // with nothing to keep the event loop alive: a request not answered 1 s
  // after the kill is given up (its outcome is unknown, as it is).
  const gone = killer.then(() => sleep(1000)).then(() => { throw new Error('no answer before the kill'); });
  gone.catch(() => {});
  const ask = (method, p, opts) => Promise.race([srv.req(method, p, opts), gone]);

  const send = async (rec, method, p, body) => {
    rec.cycle = cycle;
    rec.sentAt = now();
    model.pending.push(rec);
    let r;
    try {
      r = await ask(method, p, body === undefined ? {} : { body, timeout: 30_000 });
    } catch (e) {
      rec.outcome = 'unknown';
      rec.error = e.message;
      return null;
    }
    rec.ackAt = now();
    rec.status = r.status;
    rec.text = r.text;
    if (r.status >= 200 && r.status < 300) {
      rec.outcome = 'acked';
      rec.answer = r.json;
    } else if (r.status >= 400 && r.status < 500) {
      rec.outcome = 'refused';
    } else {
      // 5xx: the server says it could not do it; nothing may be assumed.
      rec.outcome = 'unknown';
      model.problem(`cycle ${cycle}: ${method} ${p} answered ${r.status}: ${r.text.slice(0, 200)}`);
    }
    return r;
  };

  const writer = async (w) => {
    const wr = mulberry32(rng() * 2 ** 32);
    for (let n = 0; !dead; n++) {
      const tag = `c${cycle}w${w}n${n}`;
      const col = COLS[Math.floor(wr() * COLS.length)];
      const id = `k${Math.floor(wr() * IDS)}`;
      const r = wr();
      let res;
      if (r < 0.30) {
        const rec = { kind: 'put', col, id, tag, body: makeBody(wr, tag, w, n) };
        model.sent.set(tag, { rec });
        res = await send(rec, 'PUT', `/v1/c/${col}/${id}`, rec.body);
      } else if (r < 0.40) {
        const rec = { kind: 'create', col, id, tag, body: { id, ...makeBody(wr, tag, w, n) } };
        model.sent.set(tag, { rec });
        res = await send(rec, 'POST', `/v1/c/${col}`, rec.body);
      } else if (r < 0.64) {
        const rec = { kind: 'patch', col, id, tag, body: makePatch(wr, tag, n) };
        model.sent.set(tag, { rec });
        res = await send(rec, 'PATCH', `/v1/c/${col}/${id}`, rec.body);
      } else if (r < 0.76) {
        const rec = { kind: 'delete', col, id, tag: null };
        res = await send(rec, 'DELETE', `/v1/c/${col}/${id}`);
      } else if (r < 0.93) {
        const k = 1 + Math.floor(wr() * 6);
        const ops = [];
        for (let i = 0; i < k; i++) {
          const c2 = COLS[Math.floor(wr() * COLS.length)];
          const id2 = `k${Math.floor(wr() * IDS)}`;
          const t2 = `${tag}b${i}`;
          const q = wr();
          // Mostly puts, so that most batches commit; the rest can fail the batch.
          if (q < 0.70) ops.push({ kind: 'put', col: c2, id: id2, tag: t2, body: makeBody(wr, t2, w, n) });
          else if (q < 0.82) ops.push({ kind: 'patch', col: c2, id: id2, tag: t2, body: makePatch(wr, t2, n) });
          else if (q < 0.92) ops.push({ kind: 'delete', col: c2, id: id2, tag: null });
          else ops.push({ kind: 'create', col: c2, id: id2, tag: t2, body: makeBody(wr, t2, w, n) });
        }
        // The same document twice in one batch makes the model's
        // expectations depend on op order only: allowed.
        const rec = { kind: 'batch', ops, tag: null };
        ops.forEach((o, i) => { if (o.tag) model.sent.set(o.tag, { rec, i }); });
        res = await send(rec, 'POST', '/v1/batch', {
          ops: ops.map((o) => ({ op: o.kind, col: o.col, id: o.id, ...(o.body ? { doc: o.body } : {}) })),
        });
      } else {
        const rec = { kind: 'post', col: LOG, tag, body: makeBody(wr, tag, w, n) };
        model.sent.set(tag, { rec });
        res = await send(rec, 'POST', `/v1/c/${LOG}`, rec.body);
      }
      if (!res) return; // the server is gone
      seqNo++;
    }
  };

  const backupTaker = async () => {
    if (backupAt === null) return;
    await sleep(backupAt);
    if (dead) return;
    try {
      const r = await ask('POST', '/v1/admin/backups', { timeout: 30_000 });
      if (r.status === 201) backups.push(r.json.backup);
      else model.problem(`cycle ${cycle}: POST /v1/admin/backups: ${r.status} ${r.text.slice(0, 200)}`);
    } catch { /* killed during the backup */ }
  };

  await Promise.all([...Array.from({ length: WRITERS }, (_, w) => writer(w)), backupTaker()]);
  const killAt = await killer;
  for (const rec of model.pending) rec.killAt = killAt;
  return { writes: seqNo, backups };
}

// Starts the server and SIGKILLs it after `ms` whether or not it is
// listening yet (during its start-up check, which checkpoints the WAL).
async function killDuringStart(args, ms) {
  const proc = spawn(BIN, ['serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (c) => { out += c; });
  proc.stderr.on('data', (c) => { out += c; });
  const exited = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
  await sleep(ms);
  proc.kill('SIGKILL');
  const e = await exited;
  return { ...e, listening: /listening on/.test(out), out };
}

// ------------------------------------------------------------------ the test

test(`kill -9 at random moments, ${CYCLES} cycles, ${WRITERS} writers`, { timeout: 60 * 60_000 }, async (t) => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'livedb-crash-'));
  let ok = false;
  const t0 = Date.now();
  const rng = mulberry32(SEED);
  const model = new Model();
  const baseArgs = ['--no-access-log'];
  const srv = await startServer({ dataDir, args: [...baseArgs, '--backup-interval', '0'] });
  t.diagnostic(`seed ${SEED}, data ${dataDir}, binary ${BIN}`);
  const acked = []; // backups the server said it took
  const stats = { startKills: 0, killedListening: 0, backupCycles: 0, writes: 0 };
  let cycle = 0;

  const check = async (label) => {
    const h = await srv.req('GET', '/v1/health');
    if (h.status !== 200 || h.json.status !== 'ok' || h.json.checks.database.status !== 'ok') {
      model.problem(`${label}: health is ${h.status} ${h.text.slice(0, 300)}`);
    }
    await model.readFeed(srv);
    const last = model.next - 1;
    if (h.json && h.json.seq !== last) {
      model.problem(`${label}: health says seq ${h.json?.seq}, the feed ends at ${last}`);
    }
    model.checkPending(last);
    await model.compareDocs(srv, cycle % 10 === 0 ? [...COLS, LOG] : COLS, label);
    if (/RECOVERED/.test(srv.stderr) || readdirSync(dataDir).some((f) => f.startsWith('corrupt-'))) {
      model.problem(`${label}: the start-up check found the database damaged after a kill -9:\n${srv.stderrTail(2000)}`);
    }
    model.report(label);
  };

  try {
    for (cycle = 1; cycle <= CYCLES; cycle++) {
      const label = `cycle ${cycle}`;
      const backupCycle = rng() < 0.1 || cycle === 3; // cycle 3: even in short runs
      if (cycle > 1) {
        if (rng() < 0.1) {
          const ms = Math.floor(rng() * 80);
          const k = await killDuringStart(['--data', dataDir, '--listen', '127.0.0.1:0', '--apps', 'none', ...baseArgs, '--backup-interval', '0'], ms);
          stats.startKills++;
          if (k.listening) stats.killedListening++;
          if (k.sig !== 'SIGKILL') assert.fail(`${label}: the server exited by itself while starting (code ${k.code}):\n${k.out.slice(-3000)}`);
        }
        srv.args = [...baseArgs, '--backup-interval', backupCycle ? '1' : '0'];
        srv.stderr = '';
        await srv.restart();
      }
      await check(label);
      const r = rng();
      let killAfter, backupAt = null;
      if (backupCycle) {
        stats.backupCycles++;
        killAfter = 900 + Math.floor(rng() * 1700); // automatic backups at ~1 s, ~2 s
      } else if (r < 0.1) {
        killAfter = Math.floor(rng() * 20);
      } else {
        killAfter = 20 + Math.floor(rng() * 380);
        if (rng() < 0.12 || cycle === 2) backupAt = Math.floor(rng() * killAfter);
      }
      const out = await writeUntilKilled(srv, model, { cycle, rng, killAfter, backupAt });
      stats.writes += out.writes;
      acked.push(...out.backups);
      if (cycle % 25 === 0 || cycle === CYCLES) {
        // verify while the server runs: restart to have one.
        srv.args = [...baseArgs, '--backup-interval', '0'];
        await srv.restart();
        await check(`${label} (before verify)`);
        const v = run(['verify', '--data', dataDir]);
        if (v.status !== 0) assert.fail(`${label}: livedb verify exit ${v.status}: ${v.stderr}${v.stdout}`);
        await srv.kill();
      }
    }

    // The last restart: everything, from the start.
    srv.args = [...baseArgs, '--backup-interval', '0'];
    srv.stderr = '';
    await srv.restart();
    cycle = 0;
    await check('after the last kill');
    const lastSeq = model.next - 1;
    const list = (await srv.req('GET', '/v1/admin/backups')).json.backups;

    // The whole feed again: unchanged since it was first read, and it
    // replays to the documents. Snapshots at the backups' seqs on the way.
    const fresh = new Model();
    fresh.sent = model.sent;
    const atSeq = new Map(list.map((b) => [b.seq, null]));
    atSeq.delete(0);
    let since = 0;
    for (;;) {
      const r = await srv.req('GET', `/v1/changes?since=${since}&limit=1000`);
      assert.equal(r.status, 200, r.text);
      for (const c of r.json.changes) {
        const e = model.log[c.seq - 1];
        const tag = c.doc ? c.doc.tag : null;
        if (!e || e.col !== c.col || e.id !== c.id || e.op !== c.op || e.version !== c.version ||
            (c.op !== 'delete' && e.tag !== tag)) {
          fresh.problem(`seq ${c.seq} changed since it was first read: was ${short(e)}, now ${c.op} ${c.col}/${c.id} v${c.version} tag ${tag}`);
        }
        fresh.apply(c);
        if (atSeq.has(c.seq)) atSeq.set(c.seq, new Map(fresh.state));
      }
      if (r.json.changes.length === 0) break;
      since = r.json.seq;
    }
    if (fresh.next - 1 !== lastSeq) fresh.problem(`the whole feed ends at ${fresh.next - 1}, not ${lastSeq}`);
    await fresh.compareDocs(srv, [...COLS, LOG], 'the whole feed replayed');
    fresh.report('the whole feed');
    assert.equal(await srv.stop(), 0, `SIGTERM exit; stderr:\n${srv.stderrTail()}`);

    const v = run(['verify', '--data', dataDir]);
    assert.equal(v.status, 0, `livedb verify: ${v.stderr}${v.stdout}`);

    // Every backup in the manifest passes its check; every backup the
    // server answered 201 for is there (or was rotated out by 10 newer).
    const names = list.map((b) => b.name);
    for (const b of acked) {
      const newer = names.filter((n) => n > b.name).length;
      assert.ok(names.includes(b.name) || newer >= 10, `backup ${b.name} (seq ${b.seq}) was answered 201 but is not in the list: ${names.join(' ')}`);
    }
    for (const b of list) {
      const r = run(['verify', '--data', dataDir, b.name]);
      assert.equal(r.status, 0, `backup ${b.name} (seq ${b.seq}): ${r.stderr}${r.stdout}`);
    }
    // One more backup (from the command line) clears what kills during
    // backups left: no partial copies (.taking-*) stay behind.
    const bk = run(['backup', '--data', dataDir]);
    assert.equal(bk.status, 0, `livedb backup: ${bk.stderr}`);
    const files = readdirSync(path.join(dataDir, 'backups'));
    assert.deepEqual(files.filter((f) => f.startsWith('.taking-')), [], 'partial backups left behind');
    const orphans = files.filter((f) => /^livedb-.*\.db$/.test(f) && !names.includes(f) && f !== bk.stdout.trim());
    t.diagnostic(`backups: ${list.length} in the manifest, all sound; ${orphans.length} backup files not in it ` +
      `(a kill after the file was in place, before the manifest named it): ${orphans.join(' ') || 'none'}`);

    // The newest backup and one other hold exactly the feed up to their seq
    // (of those the backup above did not rotate out: it keeps 10).
    const kept = list.filter((b) => existsSync(path.join(dataDir, 'backups', b.name)));
    const pick = kept.length > 1 ? [kept[0], kept[1 + Math.floor(rng() * (kept.length - 1))]] : kept;
    for (const b of pick) {
      const dir = mkdtempSync(path.join(tmpdir(), 'livedb-crash-bk-'));
      try {
        copyFileSync(path.join(dataDir, 'backups', b.name), path.join(dir, 'livedb.db'));
        const s = await startServer({ dataDir: dir, args: [...baseArgs, '--backup-interval', '0'] });
        const m = new Model();
        m.state = atSeq.get(b.seq) || new Map();
        if (!atSeq.get(b.seq) && b.seq !== 0) m.problem(`backup ${b.name}: seq ${b.seq} is not in the feed`);
        await m.compareDocs(s, [...COLS, LOG], `backup ${b.name} (seq ${b.seq})`);
        const h = await s.req('GET', '/v1/health');
        if (h.json.seq !== b.seq) m.problem(`backup ${b.name}: holds seq ${h.json.seq}, the manifest says ${b.seq}`);
        await s.stop();
        m.report(`backup ${b.name}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }

    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    const line = `kill -9: ${CYCLES} cycles (${stats.startKills} killed while starting, ${stats.backupCycles} with automatic backups, ` +
      `${acked.length} backups on demand answered), ${model.acked} acknowledged writes of ${stats.writes} answered, ` +
      `0 lost; max seq ${lastSeq}; ${list.length} backups checked; ${secs} s; seed ${SEED}`;
    console.log(line);
    ok = true;
  } finally {
    if (!srv.exited) await srv.kill();
    if (ok) rmSync(dataDir, { recursive: true, force: true });
    else console.error(`kill -9 test failed in cycle ${cycle}, seed ${SEED}; the data directory is kept: ${dataDir}`);
  }
});
