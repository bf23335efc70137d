// Studio app, server side (issue 7): `livedb import` of the legacy sample
// (apps/studio/sample/legacy.json, made by tools/studio-sample.py), an
// import killed half-way and run again, the progress bar, the admin import
// endpoint, and --snapshot-dir's static copy of the studio's data.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync, readFileSync, existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  startServer, addAccount, login, BIN, ADMIN, listAll, lastSeq, sleep, assertError, userFields, runBin,
  scratch,
  storeArgs,
} from './lib.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SAMPLE = path.join(ROOT, 'apps/studio/sample/legacy.json');
const SAMPLE_TEXT = readFileSync(SAMPLE, 'utf8');
const LEGACY = JSON.parse(SAMPLE_TEXT);
const APPS = ['--apps', 'wholesale,studio'];
const PW = 'password-12345';

const { tmp, servers } = scratch('livedb-studio-');
async function serve(opts) {
  const s = await startServer({ ...opts, args: [...APPS, ...(opts?.args || [])] });
  servers.push(s);
  return s;
}

const run = runBin;

// Runs a shell command line under `script` (util-linux), so that it gets a
// pseudo-terminal for stdin, stdout and stderr. -e: script exits with the
// command's status. What the terminal showed comes back with CRLF line ends.
const q = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;
function inTerminal(cmdline) {
  const r = spawnSync('script', ['-qec', cmdline, '/dev/null'], {
    encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SHELL: '/bin/sh' },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

// ---------------------------------------------------------------------------
// What the sample holds: 502 users and 2002 jobs, 45 of them broken by the
// generator's breaks() (which records it picks is fixed by its seed).

const SCHEMA_STATUS_USERS = /^status must be one of \["active","inactive"\]$/;
const SCHEMA_STATUS_JOBS = /^status must be one of \["open","assigned","in_progress","completed","cancelled"\]$/;
const NO_ID = /^no id\b/;
const NOT_OBJECT = /^not a JSON object$/;
// [collection, index, id (null: none), reason]
const BAD = [
  ['users', 4, 'u-0005', SCHEMA_STATUS_USERS], // "Active": wrong case
  ['users', 12, null, NO_ID],
  ['users', 31, 'u-0032', /^skills must be an array$/], // "camera, editing"
  ['users', 85, 'u-0086', SCHEMA_STATUS_USERS],
  ['users', 96, 'u-0097', SCHEMA_STATUS_USERS],
  ['users', 111, 'u-0112', /^day_rate_cents must be an integer$/], // "450.00"
  ['users', 137, null, NOT_OBJECT], // null: a hole
  ['users', 142, 'u-0143', /^email must be a string$/], // 5551234
  ['users', 167, null, NO_ID], // no id and skills as one string: the id is what stops it
  ['users', 207, 'u-0208', SCHEMA_STATUS_USERS],
  ['users', 236, 'u-0237', /^skills must be an array$/],
  ['users', 300, 'u-0043', /^the same id as users\[42\]/], // users[42] twice
  ['users', 301, null, NOT_OBJECT], // ["u-9999", "Stray Array"]
  ['users', 325, 'u-0324', /^name must not be empty$/],
  ['users', 333, null, NO_ID],
  ['users', 334, 'u-0333', /^name must not be empty$/],
  ['users', 403, 'u-0402', /^day_rate_cents must be an integer$/],
  ['users', 429, 'u-0428', SCHEMA_STATUS_USERS],
  ['users', 439, 'u-0438', /^email must be a string$/],
  ['users', 441, null, NO_ID],
  ['users', 475, 'u-0474', /^day_rate_cents must be an integer$/],
  ['jobs', 6, 'j-00007', /^due must be a string$/], // 20260401
  ['jobs', 153, 'j-00154', /^budget_cents must be at least 0$/], // -250000
  ['jobs', 253, 'j 00254', /^id may hold only /], // "j 00254"
  ['jobs', 369, 'j-00370', /^title is required$/],
  ['jobs', 672, 'j-00673', SCHEMA_STATUS_JOBS], // "done"
  ['jobs', 676, 'j-00677', /^due must be a string$/],
  ['jobs', 785, 'j-00786', /^title is required$/],
  ['jobs', 790, null, NO_ID],
  ['jobs', 975, null, NO_ID],
  ['jobs', 1000, 'j-00011', /^the same id as jobs\[10\]/], // jobs[10] twice
  ['jobs', 1002, 'j-01002', SCHEMA_STATUS_JOBS],
  ['jobs', 1041, null, NO_ID],
  ['jobs', 1145, 'j-01145', /^budget_cents must be at least 0$/],
  ['jobs', 1168, 'j-01168', /^budget_cents must be at least 0$/],
  ['jobs', 1180, 'j-01180', /^title is required$/],
  ['jobs', 1322, 'j 01322', /^id may hold only /],
  ['jobs', 1324, 'j-01324', SCHEMA_STATUS_JOBS],
  ['jobs', 1352, 'j-01352', /^title is required$/],
  ['jobs', 1495, 'j-01495', SCHEMA_STATUS_JOBS],
  ['jobs', 1500, 'j-00012', /^the same id as jobs\[11\]/], // jobs[11] twice
  ['jobs', 1523, 'j-01522', /^budget_cents must be at least 0$/],
  ['jobs', 1575, 'j-01574', SCHEMA_STATUS_JOBS],
  ['jobs', 1615, 'j-01614', /^title is required$/],
  ['jobs', 1978, 'j-01977', SCHEMA_STATUS_JOBS],
];
const N_USERS = 502, N_JOBS = 2002, N_BAD = 45;
const N_GOOD = N_USERS + N_JOBS - N_BAD; // 2459
assert.equal(BAD.length, N_BAD);
assert.equal(LEGACY.users.length, N_USERS, 'the sample is the one tools/studio-sample.py writes');
assert.equal(LEGACY.jobs.length, N_JOBS);

// The records that should load, by collection: id -> the file's record.
function goodRecords(col) {
  const bad = new Set(BAD.filter(([c]) => c === col).map(([, i]) => i));
  const m = new Map();
  LEGACY[col].forEach((r, i) => { if (!bad.has(i)) m.set(r.id, r); });
  return m;
}
const GOOD = { users: goodRecords('users'), jobs: goodRecords('jobs') };
assert.equal(GOOD.users.size + GOOD.jobs.size, N_GOOD, 'no two good records share an id');

// `livedb: users[4] (id u-0005): reason` lines (on a terminal, after the
// progress bar and the "\r\e[K" that clears it).
const BAD_LINE = /^livedb: ([a-z][a-z0-9_]*)\[(\d+)\](?: \(id ([^)]*)\))?: (.*)$/;
function badLines(text) {
  const out = [];
  for (let line of text.split(/\r?\n/)) {
    line = line.replace(/^(\r|\x1b\[K|\[[# ]{40}\] \d+\/\d+)+/, '');
    const m = BAD_LINE.exec(line);
    if (m) out.push({ col: m[1], index: Number(m[2]), id: m[3] ?? null, reason: m[4] });
  }
  return out;
}

// Every expected bad record reported once, with its id and why; nothing else.
function assertBadReport(got, where) {
  const key = (c, i) => `${c}[${i}]`;
  assert.deepEqual(got.map((b) => key(b.col, b.index)).sort(), BAD.map(([c, i]) => key(c, i)).sort(),
    `${where}: the bad records, by index`);
  for (const [col, index, id, why] of BAD) {
    const b = got.find((x) => x.col === col && x.index === index);
    assert.equal(b.id, id, `${where}: ${key(col, index)} names its id`);
    assert.match(b.reason, why, `${where}: ${key(col, index)} says why`);
  }
}

const SUMMARY = /^livedb: imported (\d+) records: (\d+) created, (\d+) updated, (\d+) unchanged, (\d+) bad$/m;
function summary(stdout) {
  const m = SUMMARY.exec(stdout);
  assert.ok(m, `the summary line: ${stdout}`);
  const [total, created, updated, unchanged, bad] = m.slice(1).map(Number);
  return { total, created, updated, unchanged, bad };
}

// Every change in the feed for col, paged.
async function feed(srv, col) {
  const out = [];
  let since = 0;
  for (;;) {
    const r = await srv.req('GET', `/v1/changes?since=${since}&limit=1000&col=${col}`);
    assert.equal(r.status, 200, r.text);
    out.push(...r.json.changes);
    if (r.json.seq === since) return out;
    since = r.json.seq;
  }
}

// The stored documents match the good records exactly, once each, version 1.
async function assertLoaded(srv) {
  for (const col of ['users', 'jobs']) {
    const docs = await listAll(srv, col);
    assert.equal(docs.length, GOOD[col].size, `${col}: every good record, once`);
    for (const d of docs) {
      const want = GOOD[col].get(d.id);
      assert.ok(want, `${col}/${d.id} is a good record of the file`);
      assert.deepEqual(userFields(d), userFields(want), `${col}/${d.id} holds the file's record`);
      assert.equal(d.version, 1, `${col}/${d.id} written once`);
    }
  }
}

// ---------------------------------------------------------------------------

describe('livedb import of the legacy sample', () => {
  test('exact counts, every bad record by index and reason, exit 1; a second run adds nothing', async () => {
    const data = path.join(tmp(), 'data');
    const im = run(['import', SAMPLE, '--data', data]);
    assert.equal(im.code, 1, `exit 1 when a record was bad; stderr: ${im.stderr}`);
    assert.deepEqual(summary(im.stdout),
      { total: N_USERS + N_JOBS, created: N_GOOD, updated: 0, unchanged: 0, bad: N_BAD });
    assert.equal(GOOD.users.size, 481);
    assert.equal(GOOD.jobs.size, 1978);
    assertBadReport(badLines(im.stderr), 'first run');
    // The duplicate is refused, the first of the two loads.
    assert.deepEqual(LEGACY.users[300], LEGACY.users[42]);

    const s = await serve({ dataDir: data });
    await assertLoaded(s);
    const seq = await lastSeq(s);
    assert.equal(seq, N_GOOD, 'one change per loaded record');
    assert.equal(await s.stop(), 0, s.stderrTail());

    const again = run(['import', SAMPLE, '--data', data]);
    assert.equal(again.code, 1, again.stderr);
    assert.deepEqual(summary(again.stdout),
      { total: N_USERS + N_JOBS, created: 0, updated: 0, unchanged: N_GOOD, bad: N_BAD },
      'the second run finds every good record already there');
    assertBadReport(badLines(again.stderr), 'second run');
    await s.restart();
    assert.equal(await lastSeq(s), seq, 'the second run wrote nothing');
    assert.equal((await s.req('GET', '/v1/c/users/u-0043')).json.version, 1);
    assert.equal(await s.stop(), 0, s.stderrTail());
  });

  test('a file without bad records exits 0', async () => {
    const d = tmp();
    const f = path.join(d, 'clean.json');
    writeFileSync(f, JSON.stringify({ users: [...GOOD.users.values()].slice(0, 50), jobs: [...GOOD.jobs.values()].slice(0, 50) }));
    const im = run(['import', f, '--data', path.join(d, 'data')]);
    assert.equal(im.code, 0, im.stderr);
    assert.deepEqual(summary(im.stdout), { total: 100, created: 100, updated: 0, unchanged: 0, bad: 0 });
    assert.deepEqual(badLines(im.stderr), []);
  });

  test('--dry-run reports the same and writes nothing', async () => {
    // A data directory that does not exist is not made.
    const fresh = path.join(tmp(), 'data');
    const dry = run(['import', SAMPLE, '--data', fresh, '--dry-run']);
    assert.equal(dry.code, 1, `exit 1: the file has bad records; stderr: ${dry.stderr}`);
    assert.match(dry.stdout, new RegExp(`^livedb: dry run: ${N_USERS + N_JOBS} records, ${N_GOOD} good, ${N_BAD} bad; nothing written$`, 'm'));
    assertBadReport(badLines(dry.stderr), 'dry run');
    assert.equal(existsSync(fresh), false, 'a dry run makes no data directory');

    // An existing one is left as it was.
    const s = await serve();
    assert.equal((await s.req('PUT', '/v1/c/users/u-0001', { body: { name: 'Kept', status: 'active' } })).status, 201);
    const seq = await lastSeq(s);
    assert.equal(await s.stop(), 0);
    const dry2 = run(['import', SAMPLE, '--data', s.dataDir, '--dry-run']);
    assert.equal(dry2.code, 1, dry2.stderr);
    await s.restart();
    assert.equal(await lastSeq(s), seq, 'nothing written');
    assert.deepEqual((await listAll(s, 'users')).map((u) => [u.id, u.name]), [['u-0001', 'Kept']]);
    assert.deepEqual(await listAll(s, 'jobs'), []);
    assert.equal(await s.stop(), 0);
  });

  test('a refused record does not take its id: a later, good copy loads', async () => {
    const d = tmp();
    const f = path.join(d, 'fixed.json');
    writeFileSync(f, JSON.stringify({ users: [
      { id: 'u-1', name: 'Ann', status: 'Active' }, // refused: wrong case
      { id: 'u-1', name: 'Ann', status: 'active' }, // the hand-fixed copy
      { id: 'u-2', name: 'Bo', status: 'active' },
      { id: 'u-2', name: 'Bo again', status: 'active' }, // a real duplicate
    ] }));
    const im = run(['import', f, '--data', path.join(d, 'data')]);
    assert.equal(im.code, 1, im.stderr);
    assert.deepEqual(summary(im.stdout), { total: 4, created: 2, updated: 0, unchanged: 0, bad: 2 });
    const bad = badLines(im.stderr);
    assert.deepEqual(bad.map((b) => [b.index, b.id]), [[0, 'u-1'], [3, 'u-2']], im.stderr);
    assert.match(bad[0].reason, SCHEMA_STATUS_USERS);
    assert.match(bad[1].reason, /^the same id as users\[2\]/);
    const s = await serve({ dataDir: path.join(d, 'data') });
    assert.deepEqual((await listAll(s, 'users')).map((u) => [u.id, u.name, u.status]),
      [['u-1', 'Ann', 'active'], ['u-2', 'Bo', 'active']]);
    assert.equal(await s.stop(), 0);
  });
  test('--collection picks one collection of the file; naming one it does not have is bad usage (exit 2), with the ones it has', () => {
    const d = tmp();
    const data = path.join(d, 'data');
    const one = run(['import', SAMPLE, '--data', data, '--collection', 'jobs', '--dry-run']);
    assert.equal(one.code, 1, one.stderr);
    assert.match(one.stdout, new RegExp(`^livedb: dry run: ${N_JOBS} records, `, 'm'));
    assert.ok(badLines(one.stderr).every((b) => b.col === 'jobs'), one.stderr);

    for (const extra of [[], ['--dry-run']]) {
      const r = run(['import', SAMPLE, '--data', data, '--collection', 'clients', ...extra]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, `livedb: ${SAMPLE}: the file has no collection clients (it has users, jobs)\n`);
      assert.equal(r.stdout, '', 'no summary: nothing was imported');
    }
    const empty = path.join(d, 'empty.json');
    writeFileSync(empty, '{}');
    const none = run(['import', empty, '--data', data, '--collection', 'users']);
    assert.equal(none.code, 2, none.stderr);
    assert.equal(none.stderr, `livedb: ${empty}: the file has no collection users (it has none)\n`);
    const many = path.join(d, 'many.json');
    writeFileSync(many, JSON.stringify(Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`c${i}`, []]))));
    const r = run(['import', many, '--data', data, '--collection', 'users']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `livedb: ${many}: the file has no collection users (it has c0, c1, c2, c3, c4, c5, c6, c7 and 3 more)\n`);
    assert.equal(existsSync(data), false, 'no data directory made');
  });
});

describe('an import killed half-way', () => {
  test('SIGKILL after some batches committed, then run again: every record once, one create each in the feed', async () => {
    const N = 20_000;
    const d = tmp();
    const f = path.join(d, 'many.json');
    const jobs = Array.from({ length: N }, (_, i) => ({
      id: `k-${String(i).padStart(5, '0')}`, title: `Job ${i}`, client: 'Harbor Bank',
      status: 'open', assigned_to: null, due: '2026-05-01', budget_cents: 1000 + i,
    }));
    writeFileSync(f, JSON.stringify({ jobs }));
    const data = path.join(d, 'data');

    // On a terminal, so the progress bar says how many records are done
    // (a record counts as done once its write is committed). The shell
    // prints its pid, then becomes livedb.
    const p = spawn('script', ['-qec', `echo PID=$$; exec ${q(BIN)} import ${q(f)} --data ${q(data)} ${storeArgs(data).map(q).join(' ')}`, '/dev/null'], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SHELL: '/bin/sh' },
    });
    let out = '';
    p.stdout.on('data', (c) => { out += c.toString('latin1'); });
    const exited = new Promise((r) => p.on('exit', (code, sig) => r({ code, sig })));
    let pid = null, doneAtKill = 0, ex;
    try {
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline && p.exitCode === null) {
        pid ??= Number(/PID=(\d+)/.exec(out)?.[1]) || null;
        const all = [...out.matchAll(new RegExp(`(\\d+)/${N}`, 'g'))];
        const done = all.length ? Number(all.at(-1)[1]) : 0;
        if (pid && done >= 2000) {
          process.kill(pid, 'SIGKILL');
          doneAtKill = done;
          break;
        }
        await sleep(5);
      }
    } finally {
      if (!doneAtKill && p.exitCode === null) { // the test failed: leave nothing running
        try { if (pid) process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
        p.kill('SIGKILL');
      }
      ex = await exited;
    }
    assert.ok(doneAtKill >= 2000, `killed after progress showed ${doneAtKill} done; output: ${out.slice(-300)}`);
    assert.ok(doneAtKill < N, 'killed before the end');
    assert.ok(!/livedb: imported/.test(out), `the killed import did not finish: ${out.slice(-300)}`);
    assert.notEqual(ex.code, 0, 'script reports the kill');

    const again = run(['import', f, '--data', data]);
    assert.equal(again.code, 0, again.stderr);
    const n = summary(again.stdout);
    assert.equal(n.total, N);
    assert.equal(n.bad, 0);
    assert.equal(n.updated, 0, 'what was committed is found equal, not written again');
    assert.equal(n.created + n.unchanged, N);
    assert.ok(n.unchanged >= doneAtKill, `at least the ${doneAtKill} committed before the kill were there (${n.unchanged})`);
    assert.ok(n.created > 0, 'the re-run finished the job');

    const s = await serve({ dataDir: data });
    const docs = await listAll(s, 'jobs');
    assert.equal(docs.length, N);
    assert.deepEqual(docs.map((x) => x.id), jobs.map((x) => x.id), 'every record, once');
    for (const doc of docs) assert.equal(doc.version, 1, `${doc.id} written once`);
    assert.deepEqual(userFields(docs[N - 1]), userFields(jobs[N - 1]));
    const changes = await feed(s, 'jobs');
    assert.equal(changes.length, N, 'one change per record');
    assert.ok(changes.every((c) => c.op === 'create'), 'creates only');
    assert.equal(new Set(changes.map((c) => c.id)).size, N, 'each document created once');
    assert.equal(await lastSeq(s), N, 'nothing else in the feed');
    assert.equal(await s.stop(), 0);
  });
});

describe('progress', () => {
  test('on a terminal: a bar, redrawn in place, ending full', () => {
    const data = path.join(tmp(), 'data');
    const r = inTerminal(`exec ${q(BIN)} import ${q(SAMPLE)} --data ${q(data)}`);
    assert.equal(r.code, 1, r.out.slice(-500));
    const total = N_USERS + N_JOBS;
    const frames = [...r.out.matchAll(/\r\[([# ]{40})\] (\d+)\/(\d+)/g)];
    assert.ok(frames.length >= 10, `a bar redrawn as records are done: ${frames.length} frames`);
    for (const [, bar, done, of] of frames) {
      assert.equal(Number(of), total);
      assert.equal(bar.replace(/ +$/, ''), '#'.repeat(Math.floor(40 * Number(done) / total)), `bar for ${done}`);
    }
    const dones = frames.map((m) => Number(m[2]));
    assert.deepEqual([...dones].sort((a, b) => a - b), dones, 'it only moves forward');
    assert.equal(frames.at(-1)[0], `\r[${'#'.repeat(40)}] ${total}/${total}`, 'ends full');
    // A bad record's line clears the bar's line first, and is whole.
    assert.match(r.out, /\r\x1b\[Klivedb: users\[4\] \(id u-0005\): status must be one of/);
    assertBadReport(badLines(r.out), 'on a terminal');
    // So does a log line (JSON; "created index" comes from the writer
    // thread): it is whole, on a line of its own, and the bar is drawn
    // again below it.
    const logs = r.out.split('\n').filter((l) => l.includes('{"at":'));
    assert.ok(logs.some((l) => l.includes('"msg":"created index on users.status')), `the import logs its indexes: ${r.out.slice(0, 500)}`);
    for (const l of logs) {
      const m = /^(?:\r\[[# ]{40}\] \d+\/\d+)*\r\x1b\[K(\{.*\})\r?$/.exec(l);
      assert.ok(m, `a log line clears the bar's line first and is whole: ${JSON.stringify(l)}`);
      assert.equal(JSON.parse(m[1]).level, 'info');
    }
    assert.match(r.out, /"msg":"created index on users\.status[^"]*"\}\r?\n\r\[[# ]{40}\] \d+\/\d+/, 'the bar is drawn again below it');
    // The bar's line is ended before the summary.
    const tail = r.out.slice(r.out.lastIndexOf(frames.at(-1)[0]) + frames.at(-1)[0].length);
    assert.match(tail, /^\r?\n/, 'the bar\'s line is ended');
    assert.match(tail, new RegExp(`^livedb: imported ${total} records: ${N_GOOD} created, 0 updated, 0 unchanged, ${N_BAD} bad\\r?$`, 'm'));
  });

  test('not a terminal: plain lines, no bar and no control characters', () => {
    const data = path.join(tmp(), 'data');
    const r = run(['import', SAMPLE, '--data', data]);
    assert.equal(r.code, 1);
    for (const [name, text] of [['stdout', r.stdout], ['stderr', r.stderr]]) {
      assert.doesNotMatch(text, /[\r\x1b]/, `${name} has no carriage returns or escapes`);
      assert.doesNotMatch(text, /\[#|\] \d+\/\d+/, `${name} has no bar`);
    }
    // stderr: the bad records and log lines (JSON), one per line; stdout: the summary.
    const lines = r.stderr.split('\n').filter(Boolean);
    for (const l of lines) assert.ok(BAD_LINE.test(l) || l.startsWith('{'), `a plain line: ${JSON.stringify(l)}`);
    assert.equal(lines.filter((l) => BAD_LINE.test(l)).length, N_BAD);
    assert.deepEqual(r.stdout.split('\n').filter(Boolean), [r.stdout.trim()]);
    assert.match(r.stdout, SUMMARY);
  });

  test('the bar follows stderr: stdout on a terminal, stderr to a file -> no bar', () => {
    const d = tmp();
    const errFile = path.join(d, 'stderr.txt');
    const r = inTerminal(`exec ${q(BIN)} import ${q(SAMPLE)} --data ${q(path.join(d, 'data'))} 2>${q(errFile)}`);
    assert.equal(r.code, 1);
    const err = readFileSync(errFile, 'utf8');
    assert.doesNotMatch(err, /[\r\x1b]|\[#/, 'no bar drawn into a file');
    assert.equal(badLines(err).length, N_BAD);
    assert.doesNotMatch(r.out, /\[#|\] \d+\/\d+/, 'nor on stdout');
    assert.match(r.out, SUMMARY);
  });
});

describe('POST /v1/admin/import', () => {
  let s, staff, partner;
  const imp = (q2, body, headers) => s.req('POST', `/v1/admin/import${q2}`, { body, headers });
  const state = async () => ({ seq: await lastSeq(s), users: await listAll(s, 'users'), jobs: await listAll(s, 'jobs') });

  before(async () => {
    const dir = tmp();
    addAccount(dir, { email: 'sam@studio.test', role: 'staff', password: PW });
    addAccount(dir, { email: 'pat@studio.test', role: 'partner', password: PW });
    s = await serve({ dataDir: dir });
    staff = (await login(s, 'sam@studio.test', PW)).token;
    partner = (await login(s, 'pat@studio.test', PW)).token;
  });

  test('admin only: no token 401, a bad token 401, staff and partner 403; nothing written', async () => {
    const before = await state();
    const body = { users: [{ id: 'x1', name: 'X', status: 'active' }] };
    for (const [who, headers, status, code] of [
      ['no token', { Authorization: null }, 401, 'unauthorized'],
      ['a bad token', { Authorization: 'Bearer ' + 'A'.repeat(43) }, 401, 'unauthorized'],
      ['staff', { Authorization: `Bearer ${staff}` }, 403, 'forbidden'],
      ['partner', { Authorization: `Bearer ${partner}` }, 403, 'forbidden'],
    ]) {
      for (const q2 of ['', '?dry_run=1', '?collection=users&dry_run=1']) {
        const r = await imp(q2, q2.includes('collection') ? body.users : body, headers);
        assertError(r, status, code);
        assert.ok(r.json.error.message.length > 0, who);
      }
    }
    assert.deepEqual(await state(), before, 'nothing written');
  });

  const problemReason = (p) => (p.fields ? p.fields.map((x) => `${x.field} ${x.reason}`).join('; ') : p.reason);
  const asBad = (problems) => problems.map((p) => ({ col: p.col, index: p.index, id: p.id, reason: problemReason(p) }));

  test('the sample: dry run writes nothing; then every bad record by index; again: all unchanged', async () => {
    const before = await state();
    const dry = await imp('?dry_run=1', SAMPLE_TEXT);
    assert.equal(dry.status, 200, dry.text);
    assert.equal(dry.json.dry_run, true);
    assert.equal(dry.json.total, N_USERS + N_JOBS);
    assert.equal(dry.json.bad, N_BAD);
    assert.equal(dry.json.created + dry.json.updated + dry.json.unchanged, 0, 'a dry run writes nothing');
    assertBadReport(asBad(dry.json.problems), 'endpoint dry run');
    for (const p of dry.json.problems.filter((x) => x.fields)) {
      assert.match(p.reason, /schema/);
      assert.ok(p.fields.every((x) => typeof x.field === 'string' && typeof x.reason === 'string'));
    }
    assert.deepEqual(await state(), before, 'the dry run wrote nothing');

    const real = await imp('', SAMPLE_TEXT);
    assert.equal(real.status, 200, real.text);
    assert.deepEqual({ ...real.json, problems: undefined },
      { total: N_USERS + N_JOBS, created: N_GOOD, updated: 0, unchanged: 0, bad: N_BAD, dry_run: false, problems: undefined });
    assertBadReport(asBad(real.json.problems), 'endpoint');
    await assertLoaded(s);
    const seq = await lastSeq(s);
    assert.equal(seq, before.seq + N_GOOD);

    const again = await imp('', SAMPLE_TEXT);
    assert.equal(again.status, 200);
    assert.equal(again.json.unchanged, N_GOOD);
    assert.equal(again.json.created + again.json.updated, 0);
    assert.equal(again.json.bad, N_BAD);
    assert.equal(await lastSeq(s), seq, 'again: nothing written');

    // ?collection= picks one collection of the object.
    const one = await imp('?collection=jobs&dry_run=1', SAMPLE_TEXT);
    assert.equal(one.status, 200);
    assert.equal(one.json.total, N_JOBS);
    assert.ok(one.json.problems.every((p) => p.col === 'jobs'));
  });

  test('duplicate ids in one body are refused, by index; the first loads', async () => {
    const before = await lastSeq(s);
    const body = [
      { id: 'dup-1', name: 'First', status: 'active' },
      { id: 'dup-2', name: 'Other', status: 'inactive' },
      { id: 'dup-1', name: 'Second', status: 'active' },
      { id: 'dup-1', name: 'Third', status: 'active' },
    ];
    const dry = await imp('?collection=users&dry_run=1', body);
    assert.equal(dry.status, 200, dry.text);
    assert.deepEqual(dry.json.problems.map((p) => [p.index, p.id]), [[2, 'dup-1'], [3, 'dup-1']]);
    assert.equal(await lastSeq(s), before, 'dry run');
    const r = await imp('?collection=users', body);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.created, 2);
    assert.equal(r.json.bad, 2);
    assert.deepEqual(r.json.problems.map((p) => [p.col, p.index, p.id]), [['users', 2, 'dup-1'], ['users', 3, 'dup-1']]);
    for (const p of r.json.problems) assert.match(p.reason, /same id as users\[0\]/);
    const got = (await s.req('GET', '/v1/c/users/dup-1')).json;
    assert.equal(got.name, 'First');
    assert.equal(got.version, 1);
    assert.equal(await lastSeq(s), before + 2);
  });

  test('a body that is not JSON: 400; over 1 MiB: 413; a bare array without a collection: 400; nothing written', async () => {
    const before = await state();
    assertError(await imp('', 'this is not json'), 400, 'bad_request');
    assertError(await imp('', '{"users":[{"id":"t1","name":"T"}'), 400, 'bad_request');
    assertError(await imp('?dry_run=1', 'not json either'), 400, 'bad_request');
    assertError(await imp('', '"a string"'), 400, 'bad_request');
    assertError(await imp('', { users: { id: 'not-an-array' } }), 400, 'bad_request');
    assertError(await imp('', [{ id: 'b1', name: 'B' }]), 400, 'bad_request');
    assertError(await imp('?collection=Bad-Name', [{ id: 'b1', name: 'B' }]), 400, 'bad_request');
    assertError(await imp('?bogus=1', { users: [] }), 400, 'bad_request');
    // Over 1 MiB, but otherwise a good import.
    const big = JSON.stringify({ users: Array.from({ length: 1100 }, (_, i) => ({ id: `big-${i}`, name: 'x'.repeat(1000), status: 'active' })) });
    assert.ok(big.length > 1024 * 1024);
    assertError(await imp('', big), 413, 'payload_too_large');
    assertError(await imp('?dry_run=1', big), 413, 'payload_too_large');
    assert.deepEqual(await state(), before, 'nothing written');
  });

  test('?collection= naming a collection the body does not have: 400 bad_request naming the ones it has; nothing written', async () => {
    const before = await state();
    const body = { users: [{ id: 'c1', name: 'C', status: 'active' }], jobs: [] };
    for (const q2 of ['?collection=clients', '?collection=clients&dry_run=1']) {
      const r = await imp(q2, body);
      assertError(r, 400, 'bad_request');
      assert.equal(r.json.error.message, 'the file has no collection clients (it has users, jobs)');
    }
    const r = await imp('?collection=users', {});
    assertError(r, 400, 'bad_request');
    assert.equal(r.json.error.message, 'the file has no collection users (it has none)');
    assert.deepEqual(await state(), before, 'nothing written');
  });

  after(async () => {
    assert.equal(await s.stop(), 0, s.stderrTail());
  });
});

// Reads argv[1] until argv[2] exists; prints {reads, seqs, problems}.
const READER = `
const fs = require('fs');
const [file, stop] = process.argv.slice(1);
let reads = 0, last = -1;
const seqs = new Set(), problems = [];
while (!fs.existsSync(stop)) {
  const text = fs.readFileSync(file, 'utf8');
  reads++;
  try {
    const j = JSON.parse(text);
    if (j.seq < last) problems.push('seq went back from ' + last + ' to ' + j.seq);
    last = j.seq;
    seqs.add(j.seq);
  } catch (e) {
    if (problems.length < 5) problems.push(text.length + ' bytes that do not parse: ' + e.message);
  }
}
process.stdout.write(JSON.stringify({ reads, seqs: seqs.size, problems }));
`;

describe('--snapshot-dir', () => {
  const KEYS = ['app', 'generated_at', 'seq', 'users', 'jobs'];
  const readSnap = (dir) => JSON.parse(readFileSync(path.join(dir, 'studio.json'), 'utf8'));
  // Waits for the file to reach seq (and pass check, when given).
  async function snapAt(dir, seq, check = () => true, ms = 5000) {
    const end = Date.now() + ms;
    let last;
    while (Date.now() < end) {
      try {
        last = readSnap(dir);
        if (last.seq >= seq && check(last)) return last;
      } catch { /* not there yet */ }
      await sleep(20);
    }
    assert.fail(`studio.json did not reach seq ${seq} within ${ms} ms; last: ${JSON.stringify(last)?.slice(0, 300)}`);
  }

  test('written at start; after a write it has the new seq and the document; deletes go', async () => {
    const snap = path.join(tmp(), 'snap');
    const s = await serve({ args: ['--snapshot-dir', snap] });
    const first = await snapAt(snap, 0);
    assert.deepEqual(Object.keys(first), KEYS);
    assert.equal(first.app, 'studio');
    assert.match(first.generated_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.deepEqual([first.users, first.jobs], [[], []]);

    const w = await s.req('PUT', '/v1/c/jobs/j-1', { body: { title: 'Brand film', status: 'open', budget_cents: 5000 } });
    assert.equal(w.status, 201);
    const seq1 = await lastSeq(s);
    const a = await snapAt(snap, seq1);
    assert.equal(a.seq, seq1, 'the seq of the write');
    assert.deepEqual(a.jobs, [w.json], 'the document as stored');
    assert.ok(a.generated_at >= first.generated_at);

    const u = await s.req('PUT', '/v1/c/users/u-1', { body: { name: 'Ava', status: 'active', skills: ['camera'] } });
    const p = await s.req('PATCH', '/v1/c/jobs/j-1', { body: { status: 'assigned', assigned_to: 'u-1' } });
    assert.equal(p.status, 200);
    const b = await snapAt(snap, await lastSeq(s));
    assert.deepEqual(b.users, [u.json]);
    assert.deepEqual(b.jobs, [p.json]);

    assert.equal((await s.req('DELETE', '/v1/c/jobs/j-1')).status, 200);
    const c = await snapAt(snap, await lastSeq(s));
    assert.deepEqual(c.jobs, [], 'a deleted job is gone');
    assert.deepEqual(c.users, [u.json]);
    assert.equal(await s.stop(), 0, s.stderrTail());
  });

  test('holds only the studio\'s users and jobs: no other collection, account or secret', async () => {
    const dir = tmp();
    addAccount(dir, { email: 'sam-secret-staff@studio.test', role: 'staff', password: PW });
    const snap = path.join(dir, 'snap');
    const s = await serve({ dataDir: dir, args: ['--snapshot-dir', snap] });
    const r = await s.req('POST', '/v1/batch', { body: { ops: [
      { op: 'put', col: 'products', id: 'p-secret', doc: { sku: 'SECRET-SKU', name: 'Secret product', price_cents: 1, stock: 1 } },
      { op: 'put', col: 'orders', id: 'o-secret', doc: { partner_id: 'x', items: [{ product_id: 'p-secret', name: 'Secret product', qty: 1, price_cents: 1 }], total_cents: 1, status: 'pending', history: [], notes: 'SECRET-ORDER' } },
      { op: 'put', col: 'notes', id: 'n-secret', doc: { text: 'SECRET-NOTE' } },
      { op: 'put', col: 'users', id: 'u-visible', doc: { name: 'Visible', status: 'active' } },
    ] } });
    assert.equal(r.status, 200, r.text);
    await s.req('POST', '/v1/activity', { body: { action: 'secret_event', data: { x: 'SECRET-EVENT' } } });
    const snapDoc = await snapAt(snap, await lastSeq(s), (x) => x.users.length === 1);
    assert.deepEqual(Object.keys(snapDoc), KEYS, 'no other collection');
    assert.deepEqual(snapDoc.users.map((x) => x.id), ['u-visible']);
    const text = readFileSync(path.join(snap, 'studio.json'), 'utf8');
    for (const secret of ['SECRET', 'secret', 'argon2', ADMIN.email, 'sam-secret-staff', s.token, 'password']) {
      assert.ok(!text.includes(secret), `the snapshot does not hold ${secret}`);
    }
    assert.deepEqual(readdirSync(snap), ['studio.json'], 'one file per app, no other');
    assert.equal(await s.stop(), 0, s.stderrTail());
  });

  test('written whole: every read during a burst of writes parses, seq only grows, and it ends at the last write', async () => {
    const snap = path.join(tmp(), 'snap');
    const s = await serve({ args: ['--snapshot-dir', snap] });
    // About 500 KB of data, so that each rewrite takes a while.
    const im = await s.req('POST', '/v1/admin/import', { body: SAMPLE_TEXT });
    assert.equal(im.status, 200, im.text);
    const loaded = await snapAt(snap, await lastSeq(s));
    assert.equal(loaded.users.length, GOOD.users.size);
    assert.equal(loaded.jobs.length, GOOD.jobs.size);

    // A reader in another process reads the file as fast as it can, the
    // way a static host would serve it, while the server rewrites it.
    const stopFile = path.join(snap, '..', 'stop-reading');
    const reader = spawn(process.execPath, ['-e', READER, path.join(snap, 'studio.json'), stopFile],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    let readerOut = '';
    reader.stdout.on('data', (c) => { readerOut += c; });
    const readerDone = new Promise((r) => reader.on('exit', r));
    const t0 = Date.now();
    const ids = [...GOOD.jobs.keys()].slice(0, 8);
    const last = {};
    try {
      await Promise.all(ids.map(async (id) => {
        for (let i = 0; Date.now() - t0 < 1500; i++) {
          const r = await s.req('PATCH', `/v1/c/jobs/${id}`, { body: { title: `Burst ${id} ${i}` } });
          assert.equal(r.status, 200, r.text);
          last[id] = r.json;
          await sleep(i % 4);
        }
      }));
    } finally {
      writeFileSync(stopFile, '');
      await readerDone;
    }
    const burstMs = Date.now() - t0;
    const seq = await lastSeq(s);
    const got = JSON.parse(readerOut);
    assert.deepEqual(got.problems, [], `every read parsed (${got.reads} reads)`);
    assert.ok(got.reads >= 20, `read often enough to mean something: ${got.reads} reads in ${burstMs} ms`);
    assert.ok(got.seqs >= 3, `the reads saw several rewrites: ${got.seqs} seqs in ${got.reads} reads`);
    // The file catches up with the last write, with nothing more to come.
    const end = await snapAt(snap, seq);
    assert.equal(end.seq, seq);
    for (const id of ids) assert.deepEqual(end.jobs.find((j) => j.id === id), last[id], `${id} as last written`);
    assert.deepEqual(readdirSync(snap), ['studio.json'], 'no temporary file left');
    assert.equal(await s.stop(), 0, s.stderrTail());
  });

  test('a clean stop right after a write: the file has it', async () => {
    const snap = path.join(tmp(), 'snap');
    const s = await serve({ args: ['--snapshot-dir', snap] });
    await snapAt(snap, 0);
    const w = await s.req('PUT', '/v1/c/jobs/j-last', { body: { title: 'Last one', status: 'open' } });
    assert.equal(w.status, 201);
    const seq = await lastSeq(s);
    assert.equal(await s.stop(), 0, s.stderrTail());
    const j = readSnap(snap);
    assert.equal(j.seq, seq, 'the stopped server\'s file is up to date');
    assert.deepEqual(j.jobs, [w.json]);
  });
});
