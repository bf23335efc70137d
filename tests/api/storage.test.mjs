// Durability: backups (automatic, on demand, checked, rotated), the admin
// endpoints, health and metrics about them, restore, the start-up check,
// export -> import -> export, and storage faults injected through the VFS
// seam (LIVEDB_FAULTS): disk full, a failed fsync, read errors.
// (durability.test.mjs: kill -9 and SIGTERM; tests/crash/: many more kills
// and random corruption.)
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync, existsSync, openSync, readSync, writeSync, closeSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BIN, startServer, assertError, listAll, sleep, until, req, PG, storeArgs, sqliteOnly } from './lib.mjs';

const run = (args, opts = {}) => spawnSync(BIN, args, { encoding: 'utf8', timeout: 60_000, ...opts });
const tmp = () => mkdtempSync(path.join(tmpdir(), 'livedb-dur-'));

async function fill(srv, col, n, from = 0) {
  for (let i = from; i < from + n; i++) {
    const r = await srv.req('PUT', `/v1/c/${col}/d${i}`, { body: { i, text: `document ${i}` } });
    assert.ok(r.status === 200 || r.status === 201, r.text);
  }
}

// Flips bits of one byte of a file, in place.
function flip(file, offset) {
  const fd = openSync(file, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, offset);
  b[0] ^= 0x5a;
  writeSync(fd, b, 0, 1, offset);
  closeSync(fd);
}

describe('backups', sqliteOnly, () => {
  let srv;
  before(async () => { srv = await startServer({ args: ['--backup-interval', '1', '--backup-keep', '3', '--apps', 'wholesale'] }); });
  after(async () => { await srv?.stop(); });

  test('a change is backed up within the interval; health and metrics say how old the newest is', async () => {
    await fill(srv, 'notes', 5);
    const h = await until(async () => {
      const r = await srv.req('GET', '/v1/health');
      return r.json.checks.backups.seq === r.json.seq ? r.json : null;
    }, () => 'a backup of the newest seq', 10_000, 50);
    const b = h.checks.backups;
    assert.equal(h.status, 'ok');
    assert.equal(b.status, 'ok');
    assert.equal(b.behind, 0);
    assert.match(b.newest, /^livedb-\d{8}T\d{9}Z(-\d+)?\.db$/);
    assert.equal(b.last_verify_ok, true);
    assert.ok(b.age_s >= 0 && b.age_s < 10);
    const m = await srv.req('GET', '/metrics');
    assert.match(m.text, /^livedb_backup_age_seconds \d+(\.\d+)?$/m);
    assert.match(m.text, new RegExp(`^livedb_backup_seq ${h.seq}$`, 'm'));
    assert.match(m.text, /^livedb_backup_last_verify_ok 1$/m);
    assert.match(m.text, /^livedb_page_checksum_failures_total 0$/m);
    // Without changes, no new backups.
    const list1 = (await srv.req('GET', '/v1/admin/backups')).json.backups;
    await sleep(2200);
    const list2 = (await srv.req('GET', '/v1/admin/backups')).json.backups;
    assert.deepEqual(list2.map((x) => x.name), list1.map((x) => x.name));
  });

  test('the admin endpoints list, take and check backups; each is a checked, checksummed file', async () => {
    await fill(srv, 'notes', 3, 100);
    const taken = await srv.req('POST', '/v1/admin/backups');
    assert.equal(taken.status, 201, taken.text);
    const bk = taken.json.backup;
    assert.equal(bk.ok, true);
    assert.equal(bk.seq, (await srv.req('GET', '/v1/health')).json.seq);
    assert.match(bk.blake2b, /^[0-9a-f]{64}$/);
    const file = path.join(srv.dataDir, 'backups', bk.name);
    assert.equal(statSync(file).size, bk.size);
    const list = await srv.req('GET', '/v1/admin/backups');
    assert.equal(list.status, 200);
    assert.equal(list.json.backups[0].name, bk.name, 'newest first');
    assert.equal(list.json.keep, 3);
    assert.ok(list.json.backups.length <= 3, 'rotation keeps 3');
    const v = await srv.req('POST', `/v1/admin/backups/${bk.name}/verify`);
    assert.equal(v.status, 200, v.text);
    assert.equal(v.json.backup.ok, true);
    // Bad names and unknown ones; only admins.
    assertError(await srv.req('POST', '/v1/admin/backups/..%2Flivedb.db/verify'), 400, 'bad_request');
    assertError(await srv.req('POST', '/v1/admin/backups/livedb-19990101T000000000Z.db/verify'), 404, 'not_found');
    assertError(await srv.req('POST', `/v1/admin/backups/${bk.name}/restore`), 404, 'not_found');
    assert.equal((await srv.req('DELETE', '/v1/admin/backups')).status, 405);
    assertError(await srv.req('GET', '/v1/admin/backups', { headers: { Authorization: null } }), 401, 'unauthorized');
    const acct = await srv.req('POST', '/v1/accounts', { body: { email: 'p@test.livedb', role: 'partner', password: 'partner-pass-1' } });
    assert.equal(acct.status, 201, acct.text);
    const tok = (await req('POST', `${srv.url}/v1/auth/login`, { body: { email: 'p@test.livedb', password: 'partner-pass-1' } })).json.token;
    assertError(await srv.req('POST', '/v1/admin/backups', { headers: { Authorization: `Bearer ${tok}` } }), 403, 'forbidden');
  });

  test('rotation keeps the newest N; a damaged backup fails its check and says why', async () => {
    for (let i = 0; i < 4; i++) {
      await fill(srv, 'rot', 1, i);
      assert.equal((await srv.req('POST', '/v1/admin/backups')).status, 201);
    }
    const list = (await srv.req('GET', '/v1/admin/backups')).json.backups;
    assert.equal(list.length, 3);
    const files = readdirSync(path.join(srv.dataDir, 'backups')).filter((f) => f.endsWith('.db'));
    assert.deepEqual(files.sort(), list.map((b) => b.name).sort(), 'removed backups leave no files');
    const victim = list[1];
    flip(path.join(srv.dataDir, 'backups', victim.name), Math.floor(victim.size / 2));
    const v = await srv.req('POST', `/v1/admin/backups/${victim.name}/verify`);
    assert.equal(v.status, 200);
    assert.equal(v.json.backup.ok, false);
    assert.match(v.json.backup.problem, /checksum/);
    const cli = run(['verify', '--data', srv.dataDir, victim.name]);
    assert.equal(cli.status, 1);
    assert.match(cli.stderr, /FAILED its check/);
    const ls = run(['backups', '--data', srv.dataDir]);
    assert.equal(ls.status, 0);
    assert.match(ls.stdout, new RegExp(`${victim.name.replace('.', '\\.')}.*BAD`));
  });
});

describe('backup, backups, verify, restore on the command line', () => {
  test('a backup taken while the server runs restores to exactly that seq', sqliteOnly, async () => {
    const srv = await startServer({ args: ['--backup-interval', '0'] });
    await fill(srv, 'items', 20);
    const seqAt = (await srv.req('GET', '/v1/health')).json.seq;
    const want = await listAll(srv, 'items');
    const b = run(['backup', '--data', srv.dataDir]);
    assert.equal(b.status, 0, b.stderr);
    const name = b.stdout.trim();
    assert.match(name, /^livedb-.*\.db$/);
    await fill(srv, 'items', 5, 100); // after the backup: lost by the restore
    const seqLost = (await srv.req('GET', '/v1/health')).json.seq;
    const r1 = run(['restore', '--data', srv.dataDir, name]);
    assert.equal(r1.status, 1);
    assert.match(r1.stderr, /stop it first/);
    assert.equal(await srv.stop(), 0);

    const v = run(['verify', '--data', srv.dataDir, name]);
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, new RegExp(`seq ${seqAt}`));
    for (const bad of [['restore'], ['restore', '--data', srv.dataDir], ['restore', '--data', srv.dataDir, '../x.db'],
      ['backup', '--keep', '-1'], ['backup', '--bogus']]) {
      assert.equal(run(bad).status, 2, bad.join(' '));
    }
    const missing = run(['restore', '--data', srv.dataDir, 'livedb-19990101T000000000Z.db']);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /no backup/);

    const r = run(['restore', '--data', srv.dataDir, name]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /moved to .*replaced-/);
    const aside = readdirSync(srv.dataDir).filter((f) => f.startsWith('replaced-'));
    assert.equal(aside.length, 1);
    assert.ok(existsSync(path.join(srv.dataDir, aside[0], 'livedb.db')), 'the replaced database is kept');
    await srv.restart();
    srv.token = (await req('POST', `${srv.url}/v1/auth/login`, { body: { email: 'admin@test.livedb', password: 'admin-password-1' } })).json.token;
    assert.deepEqual(await listAll(srv, 'items'), want);
    // The feed goes on past every seq a client may have seen of what was
    // lost: resuming from before that is resync_required, never a skip.
    const seqNow = (await srv.req('GET', '/v1/health')).json.seq;
    assert.equal(seqNow, seqLost + 1);
    assertError(await srv.req('GET', `/v1/changes?since=${seqAt}`), 410, 'resync_required');
    assertError(await srv.req('GET', `/v1/changes?since=${seqLost}`), 410, 'resync_required');
    const resumed = await srv.req('GET', `/v1/changes?since=${seqNow}`);
    assert.equal(resumed.status, 200, resumed.text);
    assert.equal((await srv.req('PUT', '/v1/c/items/after', { body: { x: 1 } })).status, 201);
    const next = await srv.req('GET', `/v1/changes?since=${seqNow}`);
    assert.deepEqual(next.json.changes.map((c) => c.seq), [seqNow + 1]);
    await srv.stop();
  });

  test('export -> import into an empty data dir -> export gives the same documents', async () => {
    const srv = await startServer();
    await fill(srv, 'a', 15);
    await srv.req('PATCH', '/v1/c/a/d3', { body: { text: null, extra: { deep: [1, 2.5, 'x', true, null] } } });
    await srv.req('DELETE', '/v1/c/a/d4');
    await fill(srv, 'b_c', 3);
    assert.equal(await srv.stop(), 0);
    const d = tmp();
    const e1 = run(['export', '--data', srv.dataDir, ...storeArgs(srv.dataDir), '--out', path.join(d, 'one.json')]);
    assert.equal(e1.status, 0, e1.stderr);
    const fresh = path.join(d, 'fresh');
    const im = run(['import', path.join(d, 'one.json'), '--data', fresh, ...storeArgs(fresh)]);
    assert.equal(im.status, 0, im.stderr);
    const e2 = run(['export', '--data', fresh, ...storeArgs(fresh), '--out', path.join(d, 'two.json')]);
    assert.equal(e2.status, 0, e2.stderr);
    const strip = (x) => Object.fromEntries(Object.entries(x).map(([c, docs]) =>
      [c, docs.map(({ version, created_at, updated_at, ...rest }) => rest).sort((p, q) => (p.id < q.id ? -1 : 1))]));
    const one = JSON.parse(readFileSync(path.join(d, 'one.json'), 'utf8'));
    const two = JSON.parse(readFileSync(path.join(d, 'two.json'), 'utf8'));
    assert.deepEqual(strip(two), strip(one));
    assert.equal(one.a.length, 14);
    // And importing again writes nothing new.
    const again = run(['import', path.join(d, 'one.json'), '--data', fresh, ...storeArgs(fresh)]);
    assert.equal(again.status, 0, again.stderr);
    const e3 = run(['export', '--data', fresh, ...storeArgs(fresh), '--out', path.join(d, 'three.json')]);
    assert.equal(e3.status, 0);
    assert.deepEqual(JSON.parse(readFileSync(path.join(d, 'three.json'), 'utf8')), two);
  });

  test('over PostgreSQL, backups are PostgreSQL\'s: the endpoints say so, health says off', PG ? {} : { skip: 'the PostgreSQL pass' }, async () => {
    const srv = await startServer();
    for (const [m, p] of [['GET', '/v1/admin/backups'], ['POST', '/v1/admin/backups'], ['POST', '/v1/admin/backups/livedb-x.db/verify']]) {
      const r = await srv.req(m, p);
      assertError(r, 409, 'conflict');
      assert.match(r.json.error.message, /pg_dump/);
    }
    assert.equal((await srv.req('GET', '/v1/health')).json.checks.backups.status, 'off');
    const v = run(['verify', '--data', srv.dataDir, ...storeArgs(srv.dataDir), 'livedb-x.db']);
    assert.equal(v.status, 2);
    assert.match(v.stderr, /PostgreSQL's/);
    assert.equal(await srv.stop(), 0);
  });

  // The modes share export's shape: data moves from SQLite to PostgreSQL
  // and back with export and import, unchanged.
  test('SQLite -> export -> import into PostgreSQL -> export -> import into SQLite: the same documents', PG ? {} : { skip: 'the PostgreSQL pass' }, async () => {
    const d = tmp();
    const lite = path.join(d, 'lite');
    writeFileSync(path.join(d, 'in.json'), JSON.stringify({
      a: [{ id: 'x1', n: 1, deep: { list: [1, 2.5, 'é', null, true] } }, { id: 'x2', s: 'two' }],
      b: [{ id: 'only', t: 'text' }],
    }));
    let r = run(['import', path.join(d, 'in.json'), '--data', lite]);
    assert.equal(r.status, 0, r.stderr);
    r = run(['export', '--data', lite, '--out', path.join(d, 'lite.json')]);
    assert.equal(r.status, 0, r.stderr);
    const pgDir = path.join(d, 'pg');
    r = run(['import', path.join(d, 'lite.json'), ...storeArgs(pgDir)]);
    assert.equal(r.status, 0, r.stderr);
    r = run(['export', ...storeArgs(pgDir), '--out', path.join(d, 'pg.json')]);
    assert.equal(r.status, 0, r.stderr);
    const back = path.join(d, 'back');
    r = run(['import', path.join(d, 'pg.json'), '--data', back]);
    assert.equal(r.status, 0, r.stderr);
    r = run(['export', '--data', back, '--out', path.join(d, 'back.json')]);
    assert.equal(r.status, 0, r.stderr);
    const strip = (x) => Object.fromEntries(Object.entries(x).map(([c, docs]) =>
      [c, docs.map(({ version, created_at, updated_at, ...rest }) => rest)]));
    const lj = JSON.parse(readFileSync(path.join(d, 'lite.json'), 'utf8'));
    assert.deepEqual(strip(lj).a, [{ id: 'x1', n: 1, deep: { list: [1, 2.5, 'é', null, true] } }, { id: 'x2', s: 'two' }]);
    assert.deepEqual(strip(JSON.parse(readFileSync(path.join(d, 'pg.json'), 'utf8'))), strip(lj));
    assert.deepEqual(strip(JSON.parse(readFileSync(path.join(d, 'back.json'), 'utf8'))), strip(lj));
  });
});

describe('the start-up check', sqliteOnly, () => {
  test('a damaged database is moved aside and the newest good backup restored, loudly', async () => {
    const srv = await startServer({ args: ['--backup-interval', '0'] });
    await fill(srv, 'keep', 50);
    const taken = await srv.req('POST', '/v1/admin/backups');
    assert.equal(taken.status, 201);
    const want = await listAll(srv, 'keep');
    await fill(srv, 'lost', 10);
    const lastSeq = (await srv.req('GET', '/v1/health')).json.seq;
    assert.equal(await srv.stop(), 0);
    // Damage every page past the first few: whatever the check reads fails.
    const db = path.join(srv.dataDir, 'livedb.db');
    const { size } = statSync(db);
    for (let off = 3 * 4096 + 700; off < size; off += 4096) flip(db, off);

    const refused = spawnSync(BIN, ['serve', '--data', srv.dataDir, '--listen', '127.0.0.1:0', '--no-auto-recover'],
      { encoding: 'utf8', timeout: 30_000 });
    assert.equal(refused.status, 1, refused.stderr);
    assert.match(refused.stderr, /livedb restore/);
    assert.ok(existsSync(db), '--no-auto-recover leaves the files where they are');

    await srv.restart();
    assert.match(srv.stderr, /RECOVERED/);
    srv.token = (await req('POST', `${srv.url}/v1/auth/login`, { body: { email: 'admin@test.livedb', password: 'admin-password-1' } })).json.token;
    assert.deepEqual(await listAll(srv, 'keep'), want);
    assert.deepEqual(await listAll(srv, 'lost'), []);
    const seq = (await srv.req('GET', '/v1/health')).json.seq;
    const act = await srv.req('GET', '/v1/activity?action=recovered');
    assert.equal(act.json.entries.length, 1);
    const data = act.json.entries[0].data;
    assert.equal(data.backup, taken.json.backup.name);
    assert.equal(data.kept_to_seq, taken.json.backup.seq);
    assert.ok(data.lost_to_seq === lastSeq || data.lost_to_seq === -1, `lost_to_seq ${data.lost_to_seq}`);
    // The feed goes on from past anything a client may have seen.
    assert.equal(data.salvaged, false);
    assert.equal(seq, data.feed_from - 1);
    assert.ok(data.feed_from > lastSeq + 1, `feed_from ${data.feed_from} after ${lastSeq}`);
    assertError(await srv.req('GET', `/v1/changes?since=${taken.json.backup.seq}`), 410, 'resync_required');
    assertError(await srv.req('GET', `/v1/changes?since=${lastSeq}`), 410, 'resync_required');
    assert.match(data.moved_to, /corrupt-/);
    assert.ok(existsSync(path.join(data.moved_to, 'livedb.db')), 'the damaged database is kept');
    await srv.stop();
  });

  test('a damaged database and no backup: livedb will not start, and touches nothing', async () => {
    const srv = await startServer({ args: ['--backup-interval', '0'] });
    await fill(srv, 'x', 30);
    assert.equal(await srv.stop(), 0);
    const db = path.join(srv.dataDir, 'livedb.db');
    const { size } = statSync(db);
    for (let off = 2 * 4096 + 100; off < size; off += 4096) flip(db, off);
    const r = spawnSync(BIN, ['serve', '--data', srv.dataDir, '--listen', '127.0.0.1:0'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /no backup/);
    assert.deepEqual(readdirSync(srv.dataDir).filter((f) => f.startsWith('corrupt-')), []);
  });
});

describe('storage faults', sqliteOnly, () => {
  let srv, faults;
  const set = (at, ch) => {
    const fd = openSync(faults, 'r+');
    writeSync(fd, Buffer.from(ch ? ch : '\0'), 0, 1, at);
    closeSync(fd);
  };
  before(async () => {
    faults = path.join(tmp(), 'faults');
    writeFileSync(faults, Buffer.alloc(64));
    srv = await startServer({ env: { LIVEDB_FAULTS: faults }, args: ['--backup-interval', '0'] });
    await fill(srv, 'f', 10);
  });
  after(async () => { await srv?.stop(); });

  test('a full disk: writes are 507 and leave nothing half-done, reads go on, writes come back', async () => {
    const before = await listAll(srv, 'f');
    const seq = (await srv.req('GET', '/v1/health')).json.seq;
    set(0, 'F');
    try {
    assertError(await srv.req('PUT', '/v1/c/f/new', { body: { a: 1 } }), 507, 'storage_full');
    assertError(await srv.req('POST', '/v1/batch', {
      body: { ops: [{ op: 'put', col: 'f', id: 'b1', doc: {} }, { op: 'delete', col: 'f', id: 'd1' }] },
    }), 507, 'storage_full');
    assertError(await srv.req('PATCH', '/v1/c/f/d2', { body: { a: 2 } }), 507, 'storage_full');
    assert.deepEqual(await listAll(srv, 'f'), before);
    assert.equal((await srv.req('GET', '/v1/c/f/d3')).status, 200);
    await sleep(1100); // health probes at most once a second
    const h = await srv.req('GET', '/v1/health');
    assert.equal(h.status, 503);
    assert.match(h.json.checks.database.message, /disk is full/);
    // A backup cannot be written either, and says so.
    const bk = await srv.req('POST', '/v1/admin/backups');
    assertError(bk, 507, 'storage_full');
    } finally {
      set(0, null);
    }
    assert.equal((await srv.req('PUT', '/v1/c/f/new', { body: { a: 1 } })).status, 201);
    assert.equal((await srv.req('GET', '/v1/health')).json.seq, seq + 1, 'no seq was used by the failed writes');
    const b2 = await srv.req('POST', '/v1/admin/backups');
    assert.equal(b2.status, 201, b2.text);
  });

  test('read errors answer 503 and pass', async () => {
    // A collection no reader has cached yet: its pages must come from disk.
    await fill(srv, 'cold', 60);
    set(2, 'R');
    try {
      for (const p of ['/v1/c/cold?limit=100', '/v1/c/cold/d7']) {
        const r = await srv.req('GET', p);
        assertError(r, 503, 'unavailable');
        assert.match(r.json.error.message, /I\/O error/);
      }
    } finally {
      set(2, null);
    }
    const r = await srv.req('GET', '/v1/c/cold?limit=100');
    assert.equal(r.status, 200);
    assert.equal(r.json.docs.length, 60);
  });

  test('a failed fsync stops every write until a restart; what was acknowledged survives', async () => {
    const acked = await listAll(srv, 'f');
    set(1, 'S');
    try {
      assertError(await srv.req('PUT', '/v1/c/f/s1', { body: { a: 1 } }), 503, 'unavailable');
    } finally {
      set(1, null);
    }
    const r = await srv.req('PUT', '/v1/c/f/s2', { body: { a: 1 } });
    assertError(r, 503, 'unavailable');
    assert.match(r.json.error.message, /fsync/);
    const h = await srv.req('GET', '/v1/health');
    assert.equal(h.status, 503);
    assert.equal(h.json.status, 'down');
    assert.equal(h.json.checks.database.status, 'failed');
    assert.equal((await srv.req('GET', '/v1/c/f/d1')).status, 200, 'reads go on');
    assert.equal(await srv.stop(), 0);
    await srv.restart();
    srv.token = (await req('POST', `${srv.url}/v1/auth/login`, { body: { email: 'admin@test.livedb', password: 'admin-password-1' } })).json.token;
    const after = await listAll(srv, 'f');
    for (const d of acked) assert.deepEqual(after.find((x) => x.id === d.id), d, `acknowledged ${d.id} survived`);
    assert.equal((await srv.req('PUT', '/v1/c/f/s3', { body: { a: 1 } })).status, 201, 'writes work after the restart');
    assert.equal(await srv.stop(), 0);
    const v = run(['verify', '--data', srv.dataDir]);
    assert.equal(v.status, 0, v.stderr);
  });
});
