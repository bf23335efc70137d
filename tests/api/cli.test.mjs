// Command line: exit codes (0 success, 1 run-time failure, 2 bad usage),
// --version and help, --demo, and export/import round trips.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { startServer, runBin, listAll, lastSeq, scratch, PG } from './lib.mjs';

const { tmp, servers } = scratch('livedb-cli-');

const run = (args, opts = {}) => runBin(args, { timeout: 20000, ...opts });

describe('exit codes and usage', () => {
  test('--version prints the version and exits 0', () => {
    const r = run(['--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^livedb \S+/);
  });
  test('help exits 0 and names serve', () => {
    const r = run(['help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout + r.stderr, /serve/);
  });
  for (const args of [[], ['bogus'], ['serve', '--bogus-flag'], ['serve', '--listen', 'abc'], ['serve', '--listen', '127.0.0.1:99999'],
    ['serve', '--retain-changes', 'x'], ['serve', '--header-timeout', '-1'], ['serve', '--data'],
    ['serve', '--pg-schema', 'Bad-Name'], ['export', '--pg-schema', '1x']]) {
    test(`bad usage (${args.join(' ') || 'no arguments'}) -> exit 2 with a message`, () => {
      const d = tmp();
      const full = args[0] === 'serve' && !args.includes('--data') ? [...args, '--data', d] : args;
      const r = run(full, { timeout: 5000 });
      assert.equal(r.code, 2, `exit ${r.code} signal ${r.signal}; stderr: ${r.stderr}`);
      assert.ok(r.stderr.trim().length > 0, 'says what is wrong');
    });
  }
  test('a port already in use -> exit 1', async () => {
    const s = await startServer();
    servers.push(s);
    const r = run(['serve', '--data', tmp(), '--listen', `127.0.0.1:${s.port}`]);
    assert.equal(r.code, 1, `exit ${r.code}; stderr: ${r.stderr}`);
    assert.ok(r.stderr.trim().length > 0);
    assert.equal(await s.stop(), 0);
  });
  test('--postgres that is not a connection string -> exit 1 at once, said; never retried', () => {
    for (const args of [['serve', '--data', tmp(), '--listen', '127.0.0.1:0'], ['export'], ['verify'],
      ['account', 'add', '--email', 'a@b.c', '--role', 'admin', '--password-stdin']]) {
      const r = run([...args, '--postgres', 'nonsense=1'], { timeout: 5000, input: 'a-password-1\n' });
      assert.equal(r.code, 1, `${args[0]}: exit ${r.code} signal ${r.signal}; stderr: ${r.stderr}`);
      assert.match(r.stderr, /not a connection string/, args[0]);
    }
  });
  test('--data naming a file -> exit 1', () => {
    const d = tmp();
    const f = path.join(d, 'file');
    writeFileSync(f, 'x');
    const r = run(['serve', '--data', f, '--listen', '127.0.0.1:0']);
    assert.equal(r.code, 1, `exit ${r.code}; stderr: ${r.stderr}`);
  });
});

describe('--demo', () => {
  test('loads sample documents into an empty data dir, once', async () => {
    const s = await startServer({ args: ['--demo', '--apps', 'wholesale,studio'] });
    servers.push(s);
    const seq = await lastSeq(s);
    assert.ok(seq > 0, 'demo data was loaded');
    assert.equal(await s.stop(), 0, s.stderrTail());
    await s.restart();
    assert.equal(await lastSeq(s), seq, 'a second --demo start on a non-empty dir loads nothing');
    assert.equal(await s.stop(), 0, s.stderrTail());
  });
  test('does nothing on a data dir that already has data', async () => {
    const s = await startServer();
    servers.push(s);
    await s.req('PUT', '/v1/c/mine/a', { body: { a: 1 } });
    assert.equal(await s.stop(), 0);
    s.args = ['--demo'];
    await s.restart();
    assert.equal(await lastSeq(s), 1);
    assert.equal(await s.stop(), 0);
  });
});

describe('export and import', () => {
  test('export writes every collection; import into a fresh dir restores the same documents', async () => {
    const s = await startServer();
    servers.push(s);
    const want = {};
    for (const col of ['alpha', 'beta']) {
      for (let i = 0; i < 30; i++) {
        const res = await s.req('PUT', `/v1/c/${col}/${col}${i}`, { body: { i, col, nested: { x: [i, 'y'] } } });
        assert.equal(res.status, 201);
      }
      await s.req('PATCH', `/v1/c/${col}/${col}0`, { body: { patched: true } });
      await s.req('DELETE', `/v1/c/${col}/${col}1`);
      want[col] = await listAll(s, col);
    }
    assert.equal(await s.stop(), 0);

    const out = path.join(tmp(), 'export.json');
    const ex = run(['export', '--data', s.dataDir, '--out', out]);
    assert.equal(ex.code, 0, `export: ${ex.stderr}`);
    const dump = JSON.parse(readFileSync(out, 'utf8'));
    assert.deepEqual(Object.keys(dump).sort(), ['alpha', 'beta']);
    for (const col of ['alpha', 'beta']) {
      const byId = (a, b) => (a.id < b.id ? -1 : 1);
      assert.deepEqual([...dump[col]].sort(byId).map((d) => d.id), want[col].map((d) => d.id));
      for (const d of dump[col]) {
        const w = want[col].find((x) => x.id === d.id);
        assert.equal(d.i, w.i);
        assert.deepEqual(d.nested, w.nested);
      }
    }

    const dryDir = tmp();
    const dry = run(['import', out, '--data', dryDir, '--dry-run']);
    assert.equal(dry.code, 0, `import --dry-run: ${dry.stderr}`);
    const d = await startServer({ dataDir: dryDir });
    servers.push(d);
    assert.equal(await lastSeq(d), 0, '--dry-run wrote nothing');
    assert.equal(await d.stop(), 0);

    const fresh = tmp();
    const im = run(['import', out, '--data', fresh]);
    assert.equal(im.code, 0, `import: ${im.stderr}`);
    const t = await startServer({ dataDir: fresh });
    servers.push(t);
    for (const col of ['alpha', 'beta']) {
      const got = await listAll(t, col);
      assert.deepEqual(got.map((d) => d.id), want[col].map((d) => d.id), 'import keeps ids');
      for (const d of got) {
        const w = want[col].find((x) => x.id === d.id);
        assert.equal(d.i, w.i);
        assert.equal(d.patched, w.patched);
      }
    }
    const seq = await lastSeq(t);
    assert.equal(await t.stop(), 0);

    // Re-import writes nothing new.
    const again = run(['import', out, '--data', fresh]);
    assert.equal(again.code, 0, `re-import: ${again.stderr}`);
    await t.restart();
    assert.equal(await lastSeq(t), seq, 're-import wrote nothing');
    assert.equal(await t.stop(), 0);
  });

  test('import of a bare array with --collection; a bad file -> non-zero exit', async () => {
    const d = tmp();
    const f = path.join(d, 'arr.json');
    writeFileSync(f, JSON.stringify([{ id: 'u1', name: 'A' }, { id: 'u2', name: 'B' }]));
    const im = run(['import', f, '--data', path.join(d, 'db'), '--collection', 'users']);
    assert.equal(im.code, 0, im.stderr);
    const bad = path.join(d, 'bad.json');
    writeFileSync(bad, '{"users": [');
    const b = run(['import', bad, '--data', path.join(d, 'db')]);
    assert.notEqual(b.code, 0);
    const s = await startServer({ dataDir: path.join(d, 'db') });
    servers.push(s);
    const got = await listAll(s, 'users');
    assert.deepEqual(got.map((x) => [x.id, x.name]), [['u1', 'A'], ['u2', 'B']]);
    assert.equal(await s.stop(), 0);
  });

  test('export to stdout while the server runs', async () => {
    const s = await startServer();
    servers.push(s);
    for (let i = 0; i < 5; i++) await s.req('PUT', `/v1/c/live/l${i}`, { body: { i } });
    const ex = run(['export', '--data', s.dataDir]);
    assert.equal(ex.code, 0, ex.stderr);
    const dump = JSON.parse(ex.stdout);
    assert.deepEqual(dump.live.map((x) => x.id).sort(), ['l0', 'l1', 'l2', 'l3', 'l4']);
    // On SQLite, import needs the lock: refused while the server runs. Over
    // PostgreSQL it runs beside the nodes, and they serve what it wrote.
    const f = path.join(tmp(), 'x.json');
    writeFileSync(f, JSON.stringify({ live: [{ id: 'l9', i: 9 }] }));
    const im = run(['import', f, '--data', s.dataDir]);
    if (PG) {
      assert.equal(im.code, 0, im.stderr);
      assert.equal((await s.req('GET', '/v1/c/live/l9')).status, 200);
    } else {
      assert.notEqual(im.code, 0, 'import refused while a server holds the data dir');
      assert.equal((await s.req('GET', '/v1/c/live/l9')).status, 404);
    }
    assert.equal(await s.stop(), 0);
  });

  test('bad records are reported with collection and index; the good ones load; a re-run writes nothing new', async () => {
    const d = tmp();
    const db = path.join(d, 'db');
    const f = path.join(d, 'mixed.json');
    const deep = JSON.parse('{"a":'.repeat(64) + '1' + '}'.repeat(64));
    writeFileSync(f, JSON.stringify({
      people: [{ id: 'p0', n: 0 }, { n: 'no id' }, 'not an object', { id: 'p3', n: 3 }, { id: 'p4', deep }],
      pets: [{ id: 'x1', kind: 'cat' }],
    }));
    const im = run(['import', f, '--data', db]);
    assert.equal(im.code, 1, `exit 1 when a record is bad; stderr: ${im.stderr}`);
    for (const idx of ['1', '2', '4']) assert.match(im.stderr, new RegExp(`\\b${idx}\\b`), `index ${idx} reported: ${im.stderr}`);
    assert.match(im.stderr, /people/);
    const s = await startServer({ dataDir: db });
    servers.push(s);
    assert.deepEqual((await listAll(s, 'people')).map((x) => x.id), ['p0', 'p3']);
    assert.deepEqual((await listAll(s, 'pets')).map((x) => x.id), ['x1']);
    const seq = await lastSeq(s);
    assert.equal(await s.stop(), 0);

    const again = run(['import', f, '--data', db]);
    assert.equal(again.code, 1);
    await s.restart();
    assert.equal(await lastSeq(s), seq, 'the re-run wrote nothing new');
    assert.equal((await s.req('GET', '/v1/c/people/p0')).json.version, 1);
    assert.equal(await s.stop(), 0);

    // --collection with an object picks one of its collections.
    const db2 = path.join(d, 'db2');
    const one = run(['import', f, '--data', db2, '--collection', 'pets']);
    assert.equal(one.code, 0, one.stderr);
    const s2 = await startServer({ dataDir: db2 });
    servers.push(s2);
    assert.deepEqual((await listAll(s2, 'pets')).map((x) => x.id), ['x1']);
    assert.deepEqual(await listAll(s2, 'people'), []);
    assert.equal(await s2.stop(), 0);
  });
});

