// The activity log: every write (who, role, action, collection, id,
// versions), login, failed login, logout and client event is logged with
// time, account, session and address; queried with filters, exported as CSV
// (RFC 4180) and JSON, read by `livedb activity`, watched live through
// `_activity`; and `livedb verify` finds an edited entry. Also the apps'
// schemas on every way a write arrives (REST, batch, import).

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServer, addAccount, login, BIN, PG, storeArgs, pgExec } from './lib.mjs';
import { open, subscribe } from './rt.mjs';

const PW = 'password-12345';

// RFC 4180: fields split on commas outside quotes, "" inside quotes is ".
function parseCsv(text) {
  const rows = [];
  let row = [], field = '', q = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (q) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (ch === '"') q = false; else field += ch;
    } else if (ch === '"') q = true;
    else if (ch === ',') { row.push(field); field = ''; } else if (ch === '\r' && text[i + 1] === '\n') {
      row.push(field); rows.push(row); row = []; field = ''; i++;
    } else field += ch;
  }
  if (field || row.length) { row.push(field); rows.push(row); }
  return rows;
}

describe('activity log', () => {
  let srv, dir, kim;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'livedb-act-'));
    kim = addAccount(dir, { email: 'kim@example.com', role: 'partner', password: PW });
    srv = await startServer({ dataDir: dir, args: ['--apps', 'wholesale'] });
  });
  after(async () => { if (!srv.exited) assert.equal(await srv.stop(), 0, srv.stderrTail()); });

  test('writes, logins, failed logins, logouts and client events are logged', async () => {
    await srv.req('PUT', '/v1/c/items/i1', { body: { n: 1 } });
    await srv.req('PATCH', '/v1/c/items/i1', { body: { n: 2 } });
    await srv.req('DELETE', '/v1/c/items/i1');
    await srv.req('POST', '/v1/auth/login', { body: { email: 'kim@example.com', password: 'wrong-one' } });
    const { token } = await login(srv, 'kim@example.com', PW);
    const kh = { Authorization: `Bearer ${token}` };
    const ev = await srv.req('POST', '/v1/activity', { headers: kh, body: { action: 'page_view', data: { page: '/partner/', load_ms: 231 } } });
    assert.equal(ev.status, 204, ev.text);
    assert.equal((await srv.req('POST', '/v1/auth/logout', { headers: kh })).status, 204);

    const r = await srv.req('GET', '/v1/activity?limit=50');
    assert.equal(r.status, 200);
    const es = r.json.entries;
    const seqs = es.map((e) => e.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => b - a), 'newest first');
    const find = (pred) => es.find(pred);
    const upd = find((e) => e.action === 'update' && e.id === 'i1');
    assert.equal(upd.col, 'items');
    assert.equal(upd.version_before, 1);
    assert.equal(upd.version_after, 2);
    assert.equal(upd.account, srv.adminId);
    assert.equal(upd.role, 'admin');
    assert.match(upd.session, /^[A-Za-z0-9]{16}$/);
    assert.equal(upd.remote, '127.0.0.1');
    assert.match(upd.at, /^\d{4}-\d\d-\d\dT/);
    assert.match(upd.hash, /^[0-9a-f]{64}$/);
    const del = find((e) => e.action === 'delete' && e.id === 'i1');
    assert.deepEqual([del.version_before, del.version_after], [2, null]);
    const cre = find((e) => e.action === 'create' && e.id === 'i1');
    assert.deepEqual([cre.version_before, cre.version_after], [null, 1]);
    const failed = find((e) => e.action === 'login_failed');
    assert.equal(failed.data.email, 'kim@example.com');
    assert.equal(failed.account, '');
    assert.ok(!JSON.stringify(failed).includes('wrong-one'), 'no password in the log');
    const lin = find((e) => e.action === 'login' && e.account === kim);
    const pv = find((e) => e.action === 'page_view');
    assert.deepEqual(pv.data, { page: '/partner/', load_ms: 231 });
    assert.equal(pv.account, kim);
    assert.equal(pv.session, lin.session);
    assert.ok(find((e) => e.action === 'logout' && e.account === kim));
    assert.ok(!r.text.includes(token), 'no token in the log');
  });

  test('filters: actor, action, since/until; paging with next', async () => {
    const byKim = await srv.req('GET', `/v1/activity?actor=${kim}`);
    assert.ok(byKim.json.entries.length >= 3);
    assert.ok(byKim.json.entries.every((e) => e.account === kim));
    const logins = await srv.req('GET', '/v1/activity?action=login');
    assert.ok(logins.json.entries.every((e) => e.action === 'login'));
    const future = await srv.req('GET', '/v1/activity?since=2999-01-01T00:00:00Z');
    assert.deepEqual(future.json.entries, []);
    const past = await srv.req('GET', '/v1/activity?until=2000-01-01T00:00:00Z');
    assert.deepEqual(past.json.entries, []);
    const p1 = await srv.req('GET', '/v1/activity?limit=2');
    assert.equal(p1.json.entries.length, 2);
    const p2 = await srv.req('GET', `/v1/activity?limit=2&before=${p1.json.next}`);
    assert.ok(p2.json.entries[0].seq < p1.json.entries[1].seq);
    for (const q of ['limit=0', 'limit=x', 'since=yesterday', 'before=-1', 'color=red']) {
      assert.equal((await srv.req('GET', `/v1/activity?${q}`)).status, 400, q);
    }
  });

  test('client events: checked, and limited per session', async () => {
    const { token } = await login(srv, 'kim@example.com', PW);
    const h = { Authorization: `Bearer ${token}` };
    for (const body of [{}, { action: 'Page View' }, { action: 'login' }, { action: 'update' },
      { action: 'x', data: [1] }, { action: 'x', data: { big: 'y'.repeat(5000) } }, { action: 'x', extra: 1 },
      { action: 'a'.repeat(33) }]) {
      const r = await srv.req('POST', '/v1/activity', { headers: h, body });
      assert.equal(r.status, 400, JSON.stringify(body).slice(0, 60));
    }
    assert.equal((await srv.req('POST', '/v1/activity', { headers: { Authorization: null }, body: { action: 'x' } })).status, 401);
    let limited = 0;
    for (let i = 0; i < 125; i++) {
      const r = await srv.req('POST', '/v1/activity', { headers: h, body: { action: 'client_error', data: { i } } });
      if (r.status === 429) limited++;
    }
    assert.ok(limited >= 5, `${limited} refused past 120 a minute`);
  });

  test('export: CSV (RFC 4180) and JSON, every entry, oldest first', async () => {
    await srv.req('PUT', '/v1/c/items/q', { body: { note: 'a "quoted", comma\nand newline' } });
    await srv.req('POST', '/v1/activity', { body: { action: 'client_error', data: { message: 'x, "y"\r\nz' } } });
    const all = [];
    for (let before = 0; ;) {
      const r = await srv.req('GET', `/v1/activity?limit=1000${before ? `&before=${before}` : ''}`);
      all.push(...r.json.entries);
      if (r.json.next === null) break;
      before = r.json.next;
    }
    const csv = await srv.req('GET', '/v1/activity/export?format=csv');
    assert.equal(csv.status, 200);
    assert.match(csv.headers.get('content-type'), /text\/csv/);
    const rows = parseCsv(csv.text);
    assert.deepEqual(rows[0], ['seq', 'at', 'account', 'role', 'session', 'remote', 'action', 'col', 'id',
      'version_before', 'version_after', 'data', 'hash']);
    assert.equal(rows.length - 1, all.length);
    assert.ok(rows.slice(1).every((r) => r.length === 13), 'every record has 13 fields');
    const seqs = rows.slice(1).map((r) => Number(r[0]));
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
    const ce = rows.find((r) => r[6] === 'client_error' && r[11].includes('message'));
    assert.deepEqual(JSON.parse(ce[11]), { message: 'x, "y"\r\nz' });
    const json = await srv.req('GET', '/v1/activity/export?format=json');
    assert.equal(json.status, 200);
    assert.equal(json.json.length, all.length);
    assert.deepEqual(json.json.map((e) => e.seq), seqs);
    assert.equal((await srv.req('GET', '/v1/activity/export?format=xml')).status, 400);
  });

  test('_activity: admins watch new entries live', async () => {
    const c = await open(srv);
    const snap = await subscribe(c, { id: 'a', col: '_activity' });
    assert.ok(snap.docs.length > 0 && snap.docs.length <= 100);
    await srv.req('PUT', '/v1/c/items/live', { body: { n: 1 } });
    const m = await c.next((x) => x.t === 'change' && x.sub === 'a');
    assert.equal(m.op, 'added');
    assert.equal(m.doc.action, 'create');
    assert.equal(m.doc.id, 'live');
    assert.ok(m.seq > snap.seq);
    await c.close();
  });

  test('livedb activity prints the log (json and csv); verify passes, then names an edited entry', async () => {
    assert.equal(await srv.stop(), 0);
    const j = spawnSync(BIN, ['activity', '--data', dir, ...storeArgs(dir)], { encoding: 'utf8' });
    assert.equal(j.status, 0, j.stderr);
    const entries = JSON.parse(j.stdout);
    assert.ok(entries.length > 10);
    const c = spawnSync(BIN, ['activity', '--data', dir, ...storeArgs(dir), '--format', 'csv', '--since', '2000-01-01T00:00:00Z'], { encoding: 'utf8' });
    assert.equal(parseCsv(c.stdout).length - 1, entries.length);
    assert.equal(spawnSync(BIN, ['activity', '--data', dir, ...storeArgs(dir), '--format', 'xml']).status, 2);
    let v = spawnSync(BIN, ['verify', '--data', dir, ...storeArgs(dir)], { encoding: 'utf8' });
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /sound/);
    const victim = entries[5].seq;
    if (PG) {
      // Over PostgreSQL the intruder has psql: the chain names the entry.
      const verify = () => spawnSync(BIN, ['verify', ...storeArgs(dir)], { encoding: 'utf8' });
      let t = pgExec(dir, `UPDATE activity SET entry = replace(entry, '127.0.0.1', '10.9.9.9') WHERE seq = ${victim}`);
      assert.equal(t.status, 0, t.stderr);
      v = verify();
      assert.equal(v.status, 1);
      assert.match(v.stderr, new RegExp(`entry ${victim} was changed`));
      t = pgExec(dir, `UPDATE activity SET entry = replace(entry, '10.9.9.9', '127.0.0.1') WHERE seq = ${victim}; DELETE FROM activity WHERE seq = ${victim + 2}`);
      assert.equal(t.status, 0, t.stderr);
      v = verify();
      assert.equal(v.status, 1);
      assert.match(v.stderr, new RegExp(`entry ${victim + 2} is missing`));
      return;
    }
    // Edit one entry the way an intruder would, with SQLite directly, and
    // check while the intruder's connection is still open: the edited page
    // is still in the WAL (pages there carry no livedb checksum), so it is
    // the hash chain that must name the entry.
    const tamper = (sql) => spawnSync('/usr/bin/python3', ['-c', `
import sqlite3, subprocess, sys
d = sqlite3.connect("${dir}/livedb.db")
${sql.map((q) => `d.execute("${q}")`).join('\n')}
d.commit()
v = subprocess.run(["${BIN}", "verify", "--data", "${dir}"], capture_output=True, text=True)
sys.stdout.write(str(v.returncode) + "\\n" + v.stderr)
d.close()`], { encoding: 'utf8' });
    let t = tamper([`UPDATE activity SET entry = replace(entry, '127.0.0.1', '10.9.9.9') WHERE seq = ${victim}`]);
    assert.equal(t.status, 0, t.stderr);
    assert.match(t.stdout, /^1\n/);
    assert.match(t.stdout, new RegExp(`entry ${victim} was changed`));
    // Once the intruder's connection closes, SQLite copies the page into
    // the database file without livedb's page checksum: that is caught too.
    v = spawnSync(BIN, ['verify', '--data', dir], { encoding: 'utf8' });
    assert.equal(v.status, 1);
    assert.match(v.stderr, /fails its checksum|entry \d+ was changed/);
    // A deleted entry is named too.
    t = tamper([`UPDATE activity SET entry = replace(entry, '10.9.9.9', '127.0.0.1') WHERE seq = ${victim}`,
      `DELETE FROM activity WHERE seq = ${victim + 2}`]);
    assert.match(t.stdout, /^1\n/);
    assert.match(t.stdout, new RegExp(`entry ${victim + 2} is missing|fails its checksum`));
  });
});

describe('schemas', () => {
  let srv;
  before(async () => { srv = await startServer({ args: ['--apps', 'wholesale'] }); });
  after(async () => { assert.equal(await srv.stop(), 0, srv.stderrTail()); });

  const good = { sku: 'A-1', name: 'Apples', price_cents: 250, stock: 5, active: true, category: 'fruit' };

  test('every bad field is named, with why; nothing is written', async () => {
    const r = await srv.req('POST', '/v1/c/products', { body: { name: '', price_cents: -1, stock: 1.5, active: 'yes', extra: 'kept' } });
    assert.equal(r.status, 422, r.text);
    assert.equal(r.json.error.code, 'invalid');
    const byField = Object.fromEntries(r.json.error.details.map((d) => [d.field, d.reason]));
    assert.deepEqual(Object.keys(byField).sort(), ['active', 'name', 'price_cents', 'sku', 'stock']);
    assert.match(byField.sku, /required/);
    assert.match(byField.name, /must not be empty/);
    assert.match(byField.price_cents, /at least 0/);
    assert.match(byField.stock, /integer/);
    assert.match(byField.active, /true or false/);
    assert.equal((await srv.req('GET', '/v1/c/products')).json.docs.length, 0);
  });

  test('undeclared fields are kept; enums; unique; patch and put are checked too', async () => {
    const c = await srv.req('PUT', '/v1/c/products/a', { body: { ...good, colour: 'red' } });
    assert.equal(c.status, 201, c.text);
    assert.equal(c.json.colour, 'red');
    const dup = await srv.req('PUT', '/v1/c/products/b', { body: { ...good } });
    assert.equal(dup.status, 422);
    assert.deepEqual(dup.json.error.details, [{ field: 'sku', reason: 'must be unique: another document has this value' }]);
    const p = await srv.req('PATCH', '/v1/c/products/a', { body: { stock: -3 } });
    assert.equal(p.status, 422);
    assert.equal(p.json.error.details[0].field, 'stock');
    const rm = await srv.req('PATCH', '/v1/c/products/a', { body: { price_cents: null } });
    assert.equal(rm.status, 422, 'removing a required field');
    assert.equal((await srv.req('GET', '/v1/c/products/a')).json.stock, 5);
    const o = await srv.req('POST', '/v1/c/orders', { body: { partner_id: 'x', items: [{}], total_cents: 1, status: 'lost' } });
    assert.equal(o.status, 422);
    assert.match(o.json.error.details[0].reason, /one of/);
  });

  test('a batch names the op and the fields; all or nothing', async () => {
    const r = await srv.req('POST', '/v1/batch', { body: { ops: [
      { op: 'put', col: 'products', id: 'z1', doc: { ...good, sku: 'Z-1' } },
      { op: 'put', col: 'products', id: 'z2', doc: { ...good, sku: 'Z-2', stock: 'many' } },
    ] } });
    assert.equal(r.status, 422);
    assert.equal(r.json.error.details.index, 1);
    assert.deepEqual(r.json.error.details.fields.map((f) => f.field), ['stock']);
    assert.equal((await srv.req('GET', '/v1/c/products/z1')).status, 404);
  });

  test('import meets the schema: bad records are reported with why, the good ones load', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'livedb-imp-'));
    const file = path.join(dir, 'in.json');
    writeFileSync(file, JSON.stringify({ products: [
      { id: 'g1', ...good, sku: 'G-1' },
      { id: 'g2', ...good, sku: 'G-2', price_cents: 'free' },
    ] }));
    const r = spawnSync(BIN, ['import', file, '--data', path.join(dir, 'data'), '--apps', 'wholesale'], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /products\[1\] \(id g2\): price_cents must be an integer/);
    assert.match(r.stdout, /1 created/);
  });
});
