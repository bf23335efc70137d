// The studio pages in a real browser (issue 7): the dashboard (/studio/),
// the import page (/studio/migrate.html) and the system test page
// (/studio/test.html), against one server with --apps studio and
// --snapshot-dir, in separate browser contexts (one per person):
//
// - a creator added in one browser shows in another within 1 s, and after
//   a reload; usersDataChanged / jobsDataChanged fire with the right detail
// - search, filters, counts by status; add and edit by role (staff: jobs
//   only; a 403 and a concurrent edit are explained)
// - assigning a job, and the refusals (inactive creator, job not open)
// - the import page loads apps/studio/sample/legacy.json in slices with
//   progress, reports every bad record at its index in the file (the same
//   ones `livedb import --dry-run` names), and a second run adds nothing
// - on the import page, a record refused by its checks does not take its id:
//   a good copy after a bad one loads, in the same slice or a later one,
//   and a copy after a good one is refused as `livedb import` refuses it
// - the test page's checks pass
// - the server stopped: a reload shows the saved copy with its age (out of
//   date after 5 minutes); a fresh browser with the server down gets the
//   static snapshot from a static host (the pages and the snapshot dir
//   served by a small node server here, the API pointing at livedb)
//
// Every page is screenshotted at 1280x800 and 375 px wide
// (build/screenshots/studio-*.png).
//
//   node --test --test-concurrency=1 tests/browser/studio.test.mjs
//
// Runs against build/livedb (pages built in): rebuild after editing pages.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import {
  launch, openPage, screenshots, startServer, sleep, ADMIN, DESKTOP, freePort, ok, within, finish, signInPage,
} from './lib.mjs';
import { BIN } from '../api/lib.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const LEGACY = path.join(ROOT, 'apps/studio/sample/legacy.json');
const STAFF = { email: 'staff@test.livedb', password: 'staff-password-1', name: 'Sam Staff' };
const ADMIN_ME = { ...ADMIN, name: 'Test Admin' };

let srv, browser, port, staticSrv, staticPort, snapDir;

// A static host as a deployment would have one: the studio's page files
// under /studio/, the shared client files under /client/, and the
// snapshot directory livedb keeps as /studio/snapshot/. Its CSP lets the
// pages talk to the livedb server (another origin) and nothing else.
function startStatic(apiPort) {
  const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.svg': 'image/svg+xml' };
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    let file = null;
    if (u.pathname.startsWith('/studio/snapshot/')) file = path.join(snapDir, u.pathname.slice('/studio/snapshot/'.length));
    else if (u.pathname === '/studio/' || u.pathname.startsWith('/studio/')) file = path.join(ROOT, 'apps/studio/web/studio', u.pathname.slice('/studio/'.length) || 'index.html');
    else if (u.pathname.startsWith('/client/')) file = path.join(ROOT, 'web/client', u.pathname.slice('/client/'.length));
    else if (u.pathname === '/favicon.svg') file = path.join(ROOT, 'web/favicon.svg');
    if (!file || u.pathname.includes('..') || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, {
      'Content-Type': types[path.extname(file)] || 'application/octet-stream',
      'Cache-Control': 'no-cache',
      'Content-Security-Policy': `default-src 'self'; connect-src 'self' http://127.0.0.1:${apiPort} ws://127.0.0.1:${apiPort}`,
    });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(staticPort, '127.0.0.1', () => resolve(server)));
}

before(async () => {
  // Fixed ports: stop() and restart() keep the URLs, so that pages, their
  // service worker and the static host find the server again.
  port = await freePort();
  staticPort = await freePort();
  snapDir = mkdtempSync(path.join(tmpdir(), 'livedb-studio-snap-'));
  srv = await startServer({
    args: ['--apps', 'studio', '--listen', `127.0.0.1:${port}`, '--backup-interval', '0',
      '--snapshot-dir', snapDir, '--allow-origin', `http://127.0.0.1:${staticPort}`],
  });
  await ok(await srv.req('PATCH', `/v1/accounts/${srv.adminId}`, { body: { name: ADMIN_ME.name } }), 'admin name');
  await ok(await srv.req('POST', '/v1/accounts', { body: { ...STAFF, role: 'staff' } }), 'staff account');
  // The studio's demo data: 12 creators, 24 jobs.
  const demo = JSON.parse(readFileSync(path.join(ROOT, 'apps/studio/demo.json'), 'utf8'));
  const r = await ok(await srv.req('POST', '/v1/admin/import', { body: demo }), 'demo import');
  assert.equal(r.bad, 0);
  staticSrv = await startStatic(port);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
  await new Promise((r) => (staticSrv ? staticSrv.close(r) : r()));
  if (snapDir) rmSync(snapDir, { recursive: true, force: true });
});

// ------------------------------------------------------------ helpers

// Counts the data events in every page of ctx (installed before any script).
async function countEvents(ctx) {
  await ctx.addInitScript(() => {
    window.__events = [];
    for (const type of ['usersDataChanged', 'jobsDataChanged']) {
      document.addEventListener(type, (e) => {
        const d = e.detail;
        const col = type === 'usersDataChanged' ? 'users' : 'jobs';
        window.__events.push({
          type, source: d.source, count: Array.isArray(d[col]) ? d[col].length : -1,
          changes: d.changes.map((c) => ({ op: c.op, id: c.id, hasDoc: !!c.doc })),
        });
      });
    }
  });
}

// Signs in on page p of ctx (shot: the form's screenshots, first).
const signIn = (ctx, p, who, { viewport, shot } = {}) =>
  signInPage(ctx, srv, p, who, { viewport, shot: shot && ((page) => shots(page, shot)) });

// The dashboard signed in and showing live data.
async function dashboard(ctx, who, opts) {
  const page = await signIn(ctx, '/studio/', who, opts);
  await waitLive(page);
  return page;
}

const waitLive = (page, timeout = 10_000) =>
  page.waitForSelector('body[data-source="live"] #conn[data-state="live"]', { timeout });

const shots = (page, name, opts) => screenshots(page, `studio-${name}`, opts);

const userRow = (id) => `#users-body tr[data-id="${id}"]`;
const jobRow = (id) => `#jobs-body tr[data-id="${id}"]`;

// Console errors a stopped server causes (refused connections), and only those.
const offlineNoise = (p) => /ERR_CONNECTION_REFUSED|WebSocket|Failed to load resource|net::ERR/i.test(p);

async function serverDocs(col) {
  const r = await srv.req('GET', `/v1/c/${col}?limit=1000`);
  const docs = [...r.json.docs];
  let next = r.json.next;
  while (next) {
    const more = await srv.req('GET', `/v1/c/${col}?limit=1000&after=${encodeURIComponent(next)}`);
    docs.push(...more.json.docs);
    next = more.json.next;
  }
  return docs;
}

// ------------------------------------------------------------ tests


// Runs fn (which may be async) in the page every 250 ms until it answers
// true; fails after ms.
async function pollPage(page, fn, arg, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    if (await page.evaluate(fn, arg)) return;
    if (Date.now() > end) throw new Error(`waited ${ms} ms for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
test('a creator added in one browser shows in another within 1 s, and is still there after a reload', async (t) => {
  const actx = await browser.newContext();
  const bctx = await browser.newContext();
  const a = await dashboard(actx, ADMIN_ME, { shot: 'login' });
  const b = await dashboard(bctx, STAFF);
  await b.waitForSelector(userRow('c-001'));
  assert.equal(await b.locator('#users-body tr').count(), 12);
  assert.match(await a.textContent('#users-sub'), /12 creators, 10 active/);

  // A adds a creator through the form; B sees the row appear.
  await a.click('#add-user');
  await a.waitForSelector('#user-dialog[open]');
  await a.fill('#user-form [name=name]', 'Quinn Avery');
  await a.fill('#user-form [name=email]', 'quinn.avery@creators.example');
  await a.fill('#user-form [name=skills]', 'drone, editing');
  await a.fill('#user-form [name=city]', 'Boise');
  await a.fill('#user-form [name=day_rate]', '725');
  await shots(a, 'add-creator', { view: true });
  const t0 = Date.now();
  await a.click('#user-form [data-save]');
  const ms = await within(b, t0, () => [...document.querySelectorAll('#users-body tr .u-name')].some((e) => e.textContent === 'Quinn Avery'));
  t.diagnostic(`the other browser showed the new creator ${ms} ms after Save`);
  assert.ok(ms < 1000, `shown after ${ms} ms`);
  await a.waitForSelector('#user-dialog', { state: 'hidden' });
  await a.waitForSelector('.toast >> text=is added');
  const quinn = (await serverDocs('users')).find((u) => u.name === 'Quinn Avery');
  assert.deepEqual({ skills: quinn.skills, city: quinn.city, day_rate_cents: quinn.day_rate_cents, status: quinn.status, email: quinn.email },
    { skills: ['drone', 'editing'], city: 'Boise', day_rate_cents: 72500, status: 'active', email: 'quinn.avery@creators.example' });
  assert.match(await b.textContent(userRow(quinn.id)), /Boise/);
  assert.match(await b.textContent('#users-sub'), /13 creators, 11 active/);

  // A reload shows it (the seed's "users disappeared after refresh").
  await b.reload();
  await waitLive(b);
  await b.waitForSelector(userRow(quinn.id));
  assert.match(await b.textContent(userRow(quinn.id)), /Quinn Avery/);
  await shots(b, 'users-staff');
  await a.click('#tab-jobs');
  await a.waitForSelector(jobRow('job-001'));
  await shots(a, 'jobs');
  await finish([a, b], actx, bctx);
});

test('usersDataChanged and jobsDataChanged fire on document for every change, with {users|jobs, changes, source}', async () => {
  const ctx = await browser.newContext();
  await countEvents(ctx);
  const page = await dashboard(ctx, STAFF);
  await page.waitForSelector(userRow('c-001'));
  const first = await page.evaluate(() => window.__events);
  // The first of each collection carries every document, as added.
  for (const [type, col] of [['usersDataChanged', 'users'], ['jobsDataChanged', 'jobs']]) {
    const e = first.find((x) => x.type === type);
    assert.ok(e, `a first ${type}`);
    assert.equal(e.source, 'live');
    assert.equal(e.count, (await serverDocs(col)).length);
    assert.equal(e.changes.length, e.count);
    assert.ok(e.changes.every((c) => c.op === 'added' && c.hasDoc));
  }
  const mark = first.length;
  const next = async (n) => {
    await page.waitForFunction((want) => window.__events.length >= want, mark + n, { timeout: 3000 });
    return page.evaluate((m) => window.__events.slice(m), mark);
  };
  // One event per change, each with just that change.
  const u = await ok(await srv.req('POST', '/v1/c/users', { body: { id: 'ev-user', name: 'Eve Events', status: 'active', skills: ['sound'] } }), 'create');
  let evs = await next(1);
  assert.deepEqual(evs.at(-1).changes, [{ op: 'added', id: 'ev-user', hasDoc: true }]);
  assert.equal(evs.at(-1).type, 'usersDataChanged');
  assert.equal(evs.at(-1).source, 'live');
  await ok(await srv.req('PATCH', '/v1/c/users/ev-user', { body: { city: 'Reno' } }), 'patch');
  evs = await next(2);
  assert.deepEqual(evs.at(-1).changes, [{ op: 'modified', id: 'ev-user', hasDoc: true }]);
  await ok(await srv.req('POST', '/v1/c/jobs', { body: { id: 'ev-job', title: 'Event job', status: 'open' } }), 'job');
  evs = await next(3);
  assert.equal(evs.at(-1).type, 'jobsDataChanged');
  assert.deepEqual(evs.at(-1).changes, [{ op: 'added', id: 'ev-job', hasDoc: true }]);
  await ok(await srv.req('DELETE', '/v1/c/users/ev-user'), 'delete');
  await ok(await srv.req('DELETE', '/v1/c/jobs/ev-job'), 'delete job');
  evs = await next(5);
  assert.deepEqual(evs.slice(-2).map((e) => [e.type, e.changes]), [
    ['usersDataChanged', [{ op: 'removed', id: 'ev-user', hasDoc: true }]],
    ['jobsDataChanged', [{ op: 'removed', id: 'ev-job', hasDoc: true }]],
  ]);
  await sleep(300);
  assert.equal((await page.evaluate(() => window.__events.length)) - mark, 5, 'five changes, five events');
  assert.equal(u.version, 1);
  await page.waitForSelector(userRow('ev-user'), { state: 'detached' });
  await finish([page], ctx);
});

test('search, filters and counts by status, on both tables', async () => {
  const ctx = await browser.newContext();
  const page = await dashboard(ctx, ADMIN_ME);
  const users = await serverDocs('users');
  const jobs = await serverDocs('jobs');
  const chip = (col, s) => `#${col}-status .chip[data-status="${s}"] .count`;
  const count = (docs, s) => String(docs.filter((d) => d.status === s).length);
  await page.waitForSelector(userRow('c-001'));
  assert.equal(await page.textContent(chip('users', '')), String(users.length));
  assert.equal(await page.textContent(chip('users', 'active')), count(users, 'active'));
  assert.equal(await page.textContent(chip('users', 'inactive')), count(users, 'inactive'));
  // Status, then skill, then city, then a search.
  await page.click('#users-status .chip[data-status="inactive"]');
  await page.waitForFunction(() => [...document.querySelectorAll('#users-body tr')].every((tr) => tr.dataset.status === 'inactive'));
  assert.equal(await page.locator('#users-body tr').count(), Number(count(users, 'inactive')));
  await page.click('#users-status .chip[data-status=""]');
  await page.selectOption('#users-skill', 'camera');
  const cams = users.filter((u) => u.skills?.includes('camera'));
  await page.waitForFunction((n) => document.querySelectorAll('#users-body tr').length === n, cams.length);
  // The counts follow the other filters.
  assert.equal(await page.textContent(chip('users', '')), String(cams.length));
  await page.selectOption('#users-city', 'Austin');
  const camAustin = cams.filter((u) => u.city === 'Austin');
  await page.waitForFunction((n) => document.querySelectorAll('#users-body tr').length === n, camAustin.length);
  assert.ok(camAustin.length >= 1);
  await page.click('#users-clear');
  await page.fill('#users-q', 'okafor');
  await page.waitForFunction(() => document.querySelectorAll('#users-body tr').length === 1);
  assert.match(await page.textContent('#users-body tr'), /Ben Okafor/);
  await page.fill('#users-q', 'nobody-by-this-name');
  await page.waitForSelector('#users-empty:not([hidden])');
  assert.match(await page.textContent('#users-empty'), /No creators match/);
  await page.click('#users-clear');

  // Jobs: counts for every status, then status, client and assignee.
  await page.click('#tab-jobs');
  await page.waitForSelector(jobRow('job-001'));
  for (const s of ['open', 'assigned', 'in_progress', 'completed', 'cancelled']) {
    assert.equal(await page.textContent(chip('jobs', s)), count(jobs, s), `jobs ${s}`);
  }
  await page.click('#jobs-status .chip[data-status="open"]');
  await page.waitForFunction((n) => document.querySelectorAll('#jobs-body tr').length === n, jobs.filter((j) => j.status === 'open').length);
  assert.equal(await page.locator('#jobs-body tr .assign').count(), jobs.filter((j) => j.status === 'open').length);
  await page.click('#jobs-status .chip[data-status=""]');
  await page.selectOption('#jobs-client', 'Harbor Bank');
  await page.waitForFunction((n) => document.querySelectorAll('#jobs-body tr').length === n, jobs.filter((j) => j.client === 'Harbor Bank').length);
  await page.selectOption('#jobs-client', '');
  await page.selectOption('#jobs-assignee', 'c-009');
  const ines = jobs.filter((j) => j.assigned_to === 'c-009');
  await page.waitForFunction((n) => document.querySelectorAll('#jobs-body tr').length === n, ines.length);
  assert.ok(ines.length >= 2);
  assert.match(await page.textContent('#jobs-body'), /Ines Rossi/);
  await page.selectOption('#jobs-assignee', '-');
  await page.waitForFunction((n) => document.querySelectorAll('#jobs-body tr').length === n, jobs.filter((j) => !j.assigned_to).length);
  await shots(page, 'jobs-filtered');
  await page.click('#jobs-clear');
  // Sorting by budget, largest first.
  await page.click('#jobs-table th[data-sort="budget_cents"] .sort');
  await page.waitForSelector('#jobs-table th[data-sort="budget_cents"][aria-sort="ascending"]');
  await page.click('#jobs-table th[data-sort="budget_cents"] .sort');
  await page.waitForSelector('#jobs-table th[data-sort="budget_cents"][aria-sort="descending"]');
  const top = Math.max(...jobs.map((j) => j.budget_cents || 0));
  const firstId = await page.getAttribute('#jobs-body tr', 'data-id');
  assert.equal(jobs.find((j) => j.id === firstId).budget_cents, top);
  await finish([page], ctx);
});

test('editing: admins edit creators and jobs, staff only jobs; a 403 and an edit that crossed another are explained', async () => {
  const actx = await browser.newContext();
  const sctx = await browser.newContext();
  const admin = await dashboard(actx, ADMIN_ME);
  const staff = await dashboard(sctx, STAFF);

  // Staff: no way to add or change a creator; jobs yes.
  await staff.waitForSelector(userRow('c-001'));
  assert.equal(await staff.isHidden('#add-user'), true);
  assert.equal(await staff.locator('#users-body .edit').count(), 0);
  assert.equal(await staff.isHidden('#tab-migrate'), true);
  await staff.click('#tab-jobs');
  // The tab's controls are shown once the tab has drawn (later than the
  // click's return in Chromium 156): wait for them, then look.
  await staff.waitForSelector('#add-job', { state: 'visible', timeout: 5_000 });
  assert.equal(await staff.isVisible('#add-job'), true);
  assert.equal(await staff.isVisible('#assign-job'), true);
  // The server agrees: a creator's change from staff is 403.
  const code = await staff.evaluate(() => window.studio.db.api('PATCH', '/v1/c/users/c-001', { city: 'Nowhere' }).then(() => 'ok', (e) => e.code));
  assert.equal(code, 'forbidden');

  // Staff adds a job; it shows for the admin.
  await staff.click('#add-job');
  await staff.fill('#job-form [name=title]', 'Podcast video for Grove Organics');
  await staff.fill('#job-form [name=client]', 'Grove Organics');
  await staff.fill('#job-form [name=due]', '2027-01-15');
  await staff.fill('#job-form [name=budget]', '3200');
  await staff.click('#job-form [data-save]');
  await staff.waitForSelector('#job-dialog', { state: 'hidden' });
  const job = (await serverDocs('jobs')).find((j) => j.title === 'Podcast video for Grove Organics');
  assert.deepEqual({ status: job.status, budget_cents: job.budget_cents, due: job.due, assigned_to: job.assigned_to }, { status: 'open', budget_cents: 320000, due: '2027-01-15', assigned_to: null });
  await admin.click('#tab-jobs');
  await admin.waitForSelector(jobRow(job.id));
  // A job that is not open needs a creator first.
  await staff.click(`${jobRow(job.id)} .edit`);
  await staff.selectOption('#job-form [name=status]', 'in_progress');
  await staff.click('#job-form [data-save]');
  await staff.waitForSelector('#job-form .field-error[data-for="status"]:not(:empty)');
  await staff.click('#job-dialog [data-close] >> nth=0');

  // The admin edits a creator: the change is one write, of what changed.
  await admin.click('#tab-users');
  await admin.click(`${userRow('c-002')} .edit`);
  await admin.waitForSelector('#user-dialog[open]');
  await admin.fill('#user-form [name=day_rate]', '990');
  await admin.click('#user-form [data-save]');
  await admin.waitForSelector('#user-dialog', { state: 'hidden' });
  let ben = (await srv.req('GET', '/v1/c/users/c-002')).json;
  assert.equal(ben.day_rate_cents, 99000);
  assert.equal(ben.version, 2);
  await staff.click('#tab-users');
  await staff.waitForSelector(`${userRow('c-002')} >> text=$990`);

  // Two people edit the same creator: the second save is refused, said so,
  // and the form shows the newer version.
  await admin.click(`${userRow('c-002')} .edit`);
  await ok(await srv.req('PATCH', '/v1/c/users/c-002', { body: { city: 'Houston' } }), 'concurrent edit');
  await admin.waitForSelector('#user-form .form-error >> text=Someone else just changed');
  await admin.fill('#user-form [name=name]', 'Ben Okafor-Reid');
  await admin.click('#user-form [data-save]');
  await admin.waitForSelector('#user-form .form-error >> text=changed this creator while you were editing');
  assert.equal(await admin.inputValue('#user-form [name=city]'), 'Houston');
  await shots(admin, 'edit-conflict', { view: true });
  await admin.fill('#user-form [name=name]', 'Ben Okafor-Reid');
  await admin.click('#user-form [data-save]');
  await admin.waitForSelector('#user-dialog', { state: 'hidden' });
  ben = (await srv.req('GET', '/v1/c/users/c-002')).json;
  assert.deepEqual([ben.name, ben.city], ['Ben Okafor-Reid', 'Houston']);

  // A field the server refuses is shown at the field.
  await admin.click(`${userRow('c-003')} .edit`);
  await admin.evaluate(() => { document.querySelector('#user-form [name=name]').value = 'x'.repeat(201); });
  await admin.click('#user-form [data-save]');
  await admin.waitForSelector('#user-form .field-error[data-for="name"]:not(:empty)');
  assert.equal(await admin.getAttribute('#user-form [name=name]', 'aria-invalid'), 'true');
  await admin.click('#user-dialog .sheet-x');

  // An admin demoted to staff while the form is open: Save says why, and
  // the page stops offering what the role cannot do.
  const second = { email: 'second@test.livedb', password: 'second-password-1', name: 'Second Admin' };
  const acct = await ok(await srv.req('POST', '/v1/accounts', { body: { ...second, role: 'admin' } }), 'second admin');
  const ctx2 = await browser.newContext();
  const p2 = await dashboard(ctx2, second);
  await p2.click(`${userRow('c-004')} .edit`);
  await p2.fill('#user-form [name=city]', 'Boulder');
  await ok(await srv.req('PATCH', `/v1/accounts/${acct.id}`, { body: { role: 'staff' } }), 'demote');
  await p2.waitForSelector('#add-user', { state: 'hidden', timeout: 5000 });
  await p2.click('#user-form [data-save]');
  await p2.waitForSelector('#user-form .form-error >> text=only admins can add or change creators');
  assert.equal((await srv.req('GET', '/v1/c/users/c-004')).json.city, 'Denver');
  await shots(p2, 'edit-forbidden', { view: true });
  await p2.click('#user-dialog .sheet-x');
  assert.equal(await p2.locator('#users-body .edit').count(), 0);

  // The refusals this test provokes (the browser logs each refused request)
  // are the only console errors allowed: for staff the one 403 of the
  // PATCH it was made to try above, 412 and 422 for the admin, 403.
  const refused = (p) => /status of 403 \(Forbidden\)/.test(p);
  assert.equal(staff.problems.filter(refused).length, 1, staff.problems.join('\n'));
  assert.deepEqual(staff.problems.filter((p) => !refused(p)), []);
  assert.deepEqual(admin.problems.filter((p) => !/status of (412|422)/.test(p)), []);
  assert.deepEqual(p2.problems.filter((p) => !/status of 403/.test(p)), []);
  await actx.close();
  await sctx.close();
  await ctx2.close();
});

test('assigning a job: an open job to an active creator; an inactive creator or a job no longer open is refused, clearly', async (t) => {
  const sctx = await browser.newContext();
  const actx = await browser.newContext();
  const staff = await dashboard(sctx, STAFF);
  const admin = await dashboard(actx, ADMIN_ME);
  await staff.click('#tab-jobs');
  await admin.click('#tab-jobs');
  await staff.waitForSelector(jobRow('job-001'));

  // From the row: the job is chosen; pick Ava, assign.
  await staff.click(`${jobRow('job-001')} .assign`);
  await staff.waitForSelector('#assign-dialog[open]');
  assert.equal(await staff.inputValue('#assign-job-select'), 'job-001');
  // Inactive creators are listed but cannot be picked.
  assert.equal(await staff.locator('#assign-user-select option[value="c-006"]').isDisabled(), true);
  await staff.selectOption('#assign-user-select', 'c-001');
  await shots(staff, 'assign', { view: true });
  const t0 = Date.now();
  await staff.click('#assign-submit');
  await staff.waitForSelector('#assign-dialog', { state: 'hidden' });
  await staff.waitForSelector('.toast >> text=is assigned to Ava Reyes');
  const ms = await within(admin, t0, (sel) => document.querySelector(sel)?.dataset.status === 'assigned', jobRow('job-001'));
  t.diagnostic(`the admin saw the assignment ${ms} ms after the click`);
  assert.ok(ms < 1000);
  assert.match(await admin.textContent(jobRow('job-001')), /Ava Reyes/);
  const j1 = (await srv.req('GET', '/v1/c/jobs/job-001')).json;
  assert.deepEqual([j1.status, j1.assigned_to], ['assigned', 'c-001']);
  assert.equal(await staff.locator(`${jobRow('job-001')} .assign`).count(), 0, 'no Assign on an assigned job');

  // Chosen while active, made inactive before Assign: refused, said so.
  await staff.click('#assign-job');
  await staff.waitForSelector('#assign-dialog[open]');
  await staff.selectOption('#assign-job-select', 'job-002');
  await staff.fill('#assign-user-q', 'lena');
  await staff.selectOption('#assign-user-select', 'c-012');
  await ok(await srv.req('PATCH', '/v1/c/users/c-012', { body: { status: 'inactive' } }), 'deactivate');
  await staff.waitForSelector('#assign-user-select option[value="c-012"] >> text=(inactive)');
  await staff.click('#assign-submit');
  await staff.waitForSelector('#assign-error:not([hidden])');
  assert.match(await staff.textContent('#assign-error'), /Lena Brennan is inactive and cannot take jobs/);
  assert.equal((await srv.req('GET', '/v1/c/jobs/job-002')).json.status, 'open');
  await shots(staff, 'assign-inactive', { view: true });

  // Another creator; but the job is cancelled meanwhile: refused, said so.
  await staff.fill('#assign-user-q', '');
  await staff.selectOption('#assign-user-select', 'c-002');
  await admin.click(`${jobRow('job-002')} .edit`);
  await admin.selectOption('#job-form [name=status]', 'cancelled');
  await admin.click('#job-form [data-save]');
  await admin.waitForSelector('#job-dialog', { state: 'hidden' });
  await staff.waitForSelector('#assign-job-select option[value="job-002"] >> text=(now Cancelled)');
  await staff.click('#assign-submit');
  await staff.waitForFunction(() => /not open/.test(document.querySelector('#assign-error').textContent));
  assert.match(await staff.textContent('#assign-error'), /is cancelled now, not open: only open jobs can be assigned/);
  assert.equal((await srv.req('GET', '/v1/c/jobs/job-002')).json.assigned_to, null);

  // Nothing picked: the dialog says what is missing.
  await staff.click('#assign-dialog .sheet-x');
  await staff.click('#assign-job');
  await staff.click('#assign-submit');
  assert.match(await staff.textContent('#assign-error'), /Pick an open job first/);
  await staff.click('#assign-dialog .sheet-x');
  await ok(await srv.req('PATCH', '/v1/c/users/c-012', { body: { status: 'active' } }), 'reactivate');
  // The server's refusals of assign_job appear in the console as nothing:
  // they are answers over the WebSocket, shown in the dialog.
  await finish([staff, admin], sctx, actx);
});

// The bad records `livedb import --dry-run` names, as {col, index}.
function cliBadRecords() {
  const dir = mkdtempSync(path.join(tmpdir(), 'livedb-studio-cli-'));
  try {
    const r = spawnSync(BIN, ['import', LEGACY, '--dry-run', '--data', dir, '--apps', 'studio'], { encoding: 'utf8', timeout: 60_000 });
    return [...r.stderr.matchAll(/^livedb: (\w+)\[(\d+)\]/gm)].map((m) => `${m[1]}[${m[2]}]`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the import page loads the legacy file in slices with progress, names every bad record at its index in the file, and a second run adds nothing', async (t) => {
  const expected = cliBadRecords();
  assert.equal(expected.length, 45);
  const legacy = JSON.parse(readFileSync(LEGACY, 'utf8'));
  const usersBefore = (await serverDocs('users')).length;
  const jobsBefore = (await serverDocs('jobs')).length;

  const ctx = await browser.newContext();
  const dash = await dashboard(ctx, ADMIN_ME);
  await dash.click('#tab-migrate');
  await dash.waitForURL(/migrate\.html/);
  const page = dash;
  await page.waitForSelector('#app', { state: 'visible' });
  await shots(page, 'migrate-empty');
  await page.setInputFiles('#file', LEGACY);
  await page.waitForSelector('#file-info', { state: 'visible' });
  assert.equal(await page.textContent('.fact[data-col="users"] strong'), '502');
  assert.equal(await page.textContent('.fact[data-col="jobs"] strong'), '2,002');
  // 8: users[300] repeats users[42]'s id, so it starts a slice of its own
  // (it is refused once the first slice's answer says users[42] loaded).
  assert.match(await page.textContent('.fact[data-col="total"]'), /2,504.*8 slices/);
  assert.match(await page.textContent('#file-note'), /3 records repeat an earlier record's id/);

  // Progress: every value the bar takes is recorded.
  const watchProgress = () => page.evaluate(() => {
    window.__progress = [];
    const bar = document.querySelector('#progress');
    new MutationObserver(() => window.__progress.push(Number(bar.getAttribute('aria-valuenow'))))
      .observe(bar, { attributes: true, attributeFilter: ['aria-valuenow'] });
  });
  const report = () => page.$$eval('#report-body tr', (trs) => trs.map((tr) => `${tr.dataset.col}[${tr.dataset.index}]`));

  // The dry run: the same bad records as the command line, nothing written.
  await watchProgress();
  await page.click('#dry-run');
  await page.waitForSelector('#report-card:not([hidden])', { timeout: 30_000 });
  assert.match(await page.textContent('#report-summary'), /Dry run: nothing was written\. 2,459 of 2,504 records are good and would load; 45 bad records/);
  assert.deepEqual(await report(), expected);
  assert.equal((await serverDocs('users')).length, usersBefore);

  // The import: progress moves through the slices; the report is the same.
  await watchProgress();
  const t0 = Date.now();
  await page.click('#import');
  await page.waitForSelector('#progress-title >> text=Import done', { timeout: 60_000 });
  t.diagnostic(`2,504 records imported in ${Date.now() - t0} ms`);
  const steps = await page.evaluate(() => window.__progress);
  assert.ok(new Set(steps.filter((v) => v > 0 && v < 100)).size >= 4, `progress moved in steps: ${steps}`);
  assert.deepEqual([...steps].sort((x, y) => x - y), steps, 'progress only goes forward');
  assert.equal(steps.at(-1), 100);
  assert.equal(await page.textContent('.tally .fact[data-k="created"] strong'), '2,459');
  assert.equal(await page.textContent('.tally .fact[data-k="bad"] strong'), '45');
  assert.match(await page.textContent('#report-summary'), /Import done\. 2,459 created, 0 updated; 45 bad records skipped/);
  const rows = await report();
  assert.deepEqual(rows, expected);
  // Some of them, with the index in the file and the reason.
  const row = (key) => page.textContent(`#report-body tr[data-col="${key.split('[')[0]}"][data-index="${key.match(/\d+/)[0]}"]`);
  assert.match(await row('users[137]'), /not a JSON object/);
  assert.match(await row('users[300]'), /u-0043.*the same id as users\[42\], which is loaded instead/);
  assert.match(await row('jobs[1000]'), /the same id as jobs\[10\]/);
  assert.match(await row('jobs[1500]'), /the same id as jobs\[11\]/);
  assert.match(await row('users[4]'), /u-0005.*status must be one of/);
  assert.match(await row('jobs[253]'), /j 00254.*id may hold only/);
  await shots(page, 'migrate-report');
  // What the server holds now: every good record, once, as in the file.
  const users = await serverDocs('users');
  const jobs = await serverDocs('jobs');
  assert.equal(users.length, usersBefore + 481);
  assert.equal(jobs.length, jobsBefore + 1978);
  const u43 = users.find((u) => u.id === 'u-0043');
  assert.equal(u43.name, legacy.users[42].name, 'the first of two records with one id is the one loaded');

  // Again: nothing new.
  await watchProgress();
  await page.click('#import');
  await page.waitForSelector('#progress-title >> text=Import done', { timeout: 60_000 });
  await page.waitForSelector('#report-summary >> text=Nothing new to write');
  assert.equal(await page.textContent('.tally .fact[data-k="created"] strong'), '0');
  assert.equal(await page.textContent('.tally .fact[data-k="updated"] strong'), '0');
  assert.equal(await page.textContent('.tally .fact[data-k="unchanged"] strong'), '2,459');
  assert.deepEqual(await report(), expected);
  assert.equal((await serverDocs('users')).length, usersBefore + 481);
  assert.equal((await serverDocs('jobs')).length, jobsBefore + 1978);
  assert.ok(u43.version === 1 && (await srv.req('GET', '/v1/c/users/u-0043')).json.version === 1, 'no new versions');

  // The dashboard shows them all, live.
  await page.click('.tab >> text=Jobs');
  await waitLive(page);
  await page.waitForFunction((n) => document.querySelector('#tab-jobs-count').textContent === n.toLocaleString('en-US'), jobs.length);
  assert.match(await page.textContent('#jobs-foot'), /Showing 100 of/);
  await page.click('#jobs-foot .more');
  // The next hundred are drawn on the next frame, not within the click.
  await page.waitForFunction(() => document.querySelectorAll('#jobs-body tr').length >= 200, null, { timeout: 5000 });
  assert.equal(await page.locator('#jobs-body tr').count(), 200);
  await shots(page, 'jobs-after-import');

  // A bare array needs its collection; staff cannot import at all. The page
  // first (as above): a file set before migrate.js has run goes unnoticed,
  // as the input is not there for a person to use until the page is shown.
  await page.click('#tab-migrate');
  await page.waitForURL(/migrate\.html/);
  await page.waitForSelector('#app', { state: 'visible' });
  await page.setInputFiles('#file', { name: 'creators.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(legacy.users.slice(5, 10))) });
  await page.waitForSelector('#bare-choice:not([hidden])');
  assert.equal(await page.isChecked('input[name=bare][value=users]'), true, 'guessed from the records');
  await page.click('#dry-run');
  await page.waitForSelector('#report-summary >> text=5 of 5 records are good');
  await page.setInputFiles('#file', { name: 'broken.json', mimeType: 'application/json', buffer: Buffer.from('{"users": [ {"id": 1},') });
  await page.waitForSelector('#file-error:not([hidden])');
  assert.match(await page.textContent('#file-error'), /broken\.json is not JSON/);
  assert.equal(await page.isDisabled('#import'), true);
  await finish([page], ctx);

  const sctx = await browser.newContext();
  const sp = await openPage(sctx, srv, '/studio/migrate.html', { viewport: DESKTOP });
  await sp.waitForSelector('#login-form', { state: 'visible' });
  await sp.fill('#login-email', STAFF.email);
  await sp.fill('#login-password', STAFF.password);
  await sp.click('#login-submit');
  await sp.waitForSelector('#forbidden', { state: 'visible' });
  assert.equal(await sp.isHidden('#app'), true);
  assert.match(await sp.textContent('#forbidden'), /Sam Staff \(staff\)/);
  await shots(sp, 'migrate-staff');
  await finish([sp], sctx);
});

// A record the server refuses takes no id: the page, which sees the whole
// file but learns which records load only from each slice's answer, refuses
// the same records as `livedb import`, and says so truly.
test('the import page: a bad record does not take its id, so a good copy after it loads; a copy after a good one is refused', async () => {
  const users = Array.from({ length: 450 }, (_, i) => ({ id: `mix-${String(i).padStart(3, '0')}`, name: `Mix ${i}`, status: 'active' }));
  users[0] = { id: 'mix-a', name: 'Ann', status: 'Active' }; // bad: wrong case
  users[1] = { id: 'mix-a', name: 'Ann', status: 'active' }; // its fixed copy, next in the file
  users[2] = { id: 'mix-b', name: 'Bo', status: 'active' };
  users[3] = { id: 'mix-b', name: 'Bo again', status: 'active' }; // a true duplicate
  users[420] = { id: 'mix-c', name: 'Cy', status: 'gone' }; // bad, in another slice than...
  users[430] = { id: 'mix-a', name: 'Ann again', status: 'active' }; // a duplicate of users[1], slices later
  users[440] = { id: 'mix-c', name: 'Cy', status: 'inactive' }; // ...its fixed copy
  const file = JSON.stringify({ users });
  const want = ['users[0]', 'users[3]', 'users[420]', 'users[430]'];

  // The command line refuses the same records, for the same reasons.
  const dir = mkdtempSync(path.join(tmpdir(), 'livedb-studio-cli-'));
  try {
    const f = path.join(dir, 'mix.json');
    writeFileSync(f, file);
    const r = spawnSync(BIN, ['import', f, '--dry-run', '--data', path.join(dir, 'data'), '--apps', 'studio'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 1, r.stderr);
    assert.deepEqual([...r.stderr.matchAll(/^livedb: (\w+\[\d+\])/gm)].map((m) => m[1]), want, r.stderr);
    assert.match(r.stderr, /^livedb: users\[3\] \(id mix-b\): the same id as users\[2\]/m);
    assert.match(r.stderr, /^livedb: users\[430\] \(id mix-a\): the same id as users\[1\]/m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const ctx = await browser.newContext();
  const page = await signIn(ctx, '/studio/migrate.html', ADMIN_ME);
  await page.setInputFiles('#file', { name: 'mix.json', mimeType: 'application/json', buffer: Buffer.from(file) });
  await page.waitForSelector('#file-info', { state: 'visible' });
  // Slices: [0] | [1, 2] | [3..402] | [403..439] | [440..449]: a record
  // whose id is in the slice being made waits for the answer to it.
  assert.match(await page.textContent('.fact[data-col="total"]'), /450.*5 slices/);
  assert.match(await page.textContent('#file-note'), /4 records repeat an earlier record's id: each id loads once, from its first good record/);
  const report = () => page.$$eval('#report-body tr', (trs) => trs.map((tr) => `${tr.dataset.col}[${tr.dataset.index}]`));
  const row = (i) => page.textContent(`#report-body tr[data-col="users"][data-index="${i}"]`);
  const mixDocs = async () => (await serverDocs('users')).filter((u) => u.id.startsWith('mix-'));

  await page.click('#dry-run');
  await page.waitForSelector('#report-card:not([hidden])', { timeout: 30_000 });
  assert.match(await page.textContent('#report-summary'), /Dry run: nothing was written\. 446 of 450 records are good and would load; 4 bad records/);
  assert.deepEqual(await report(), want);
  assert.match(await row(0), /mix-a.*status must be one of/);
  assert.match(await row(3), /mix-b.*the same id as users\[2\], which would load instead/);
  assert.match(await row(420), /mix-c.*status must be one of/);
  assert.match(await row(430), /mix-a.*the same id as users\[1\], which would load instead/);
  assert.deepEqual(await mixDocs(), [], 'a dry run writes nothing');

  await page.click('#import');
  await page.waitForSelector('#progress-title >> text=Import done', { timeout: 30_000 });
  assert.match(await page.textContent('#report-summary'), /Import done\. 446 created, 0 updated; 4 bad records skipped/);
  assert.equal(await page.textContent('.tally .fact[data-k="created"] strong'), '446');
  assert.equal(await page.textContent('.tally .fact[data-k="bad"] strong'), '4');
  assert.deepEqual(await report(), want);
  assert.match(await row(0), /mix-a.*status must be one of/);
  assert.match(await row(3), /mix-b.*the same id as users\[2\], which is loaded instead/);
  assert.match(await row(420), /mix-c.*status must be one of/);
  assert.match(await row(430), /mix-a.*the same id as users\[1\], which is loaded instead/);
  const docs = await mixDocs();
  assert.equal(docs.length, 446);
  const got = (id) => { const d = docs.find((u) => u.id === id); return d && [d.name, d.status, d.version]; };
  assert.deepEqual(got('mix-a'), ['Ann', 'active', 1], 'the fixed copy of a bad record loads');
  assert.deepEqual(got('mix-b'), ['Bo', 'active', 1], 'the first of two good copies loads, once');
  assert.deepEqual(got('mix-c'), ['Cy', 'inactive', 1], 'a fixed copy slices after the bad one loads');
  await finish([page], ctx);
});

test('the system test page: every check passes for an admin (the snapshot check is for static hosts)', async () => {
  const ctx = await browser.newContext();
  const page = await openPage(ctx, srv, '/studio/test.html', { viewport: DESKTOP });
  await page.waitForSelector('#check-health[data-result="pass"]');
  await page.waitForSelector('#login-form', { state: 'visible' });
  await page.fill('#login-email', ADMIN.email);
  await page.fill('#login-password', ADMIN.password);
  await page.click('#login-submit');
  await page.waitForFunction(() => ['health', 'login', 'realtime', 'import', 'snapshot', 'offline']
    .every((k) => ['pass', 'fail', 'skip'].includes(window.studioTest.results[k]?.result)), null, { timeout: 20_000 });
  const results = await page.evaluate(() => window.studioTest.results);
  for (const k of ['health', 'login', 'realtime', 'import', 'offline']) assert.equal(results[k].result, 'pass', `${k}: ${results[k].text}`);
  assert.equal(results.snapshot.result, 'skip');
  assert.match(results.realtime.text, /Create \d+ msChange \d+ msDelete \d+ ms/);
  assert.match(results.import.text, /users\[1\].*users\[2\].*jobs\[1\]/);
  assert.match(await page.textContent('#summary'), /All checks passed: 5 passed, 1 skipped/);
  // The probe job is gone again.
  assert.equal((await serverDocs('jobs')).filter((j) => j.id.startsWith('probe-')).length, 0);
  await shots(page, 'test-page');
  // Run again: still passing.
  await page.click('#run-all');
  await page.waitForSelector('#summary[data-result="running"]', { timeout: 2000 }).catch(() => {});
  await page.waitForSelector('#summary >> text=All checks passed', { timeout: 20_000 });
  await finish([page], ctx);
});

test('the server stopped: a reload shows the saved copy with its age; older than 5 minutes it says it is out of date; back live after', async () => {
  const ctx = await browser.newContext();
  await countEvents(ctx);
  const page = await dashboard(ctx, STAFF);
  await page.waitForSelector(userRow('c-001'));
  await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  const jobsShown = await page.textContent('#tab-jobs-count');
  // The SDK writes its cache a little after changes, later for big results
  // (2,000 jobs by now): wait until IndexedDB holds every job shown. (Not
  // with waitForFunction: an async predicate returns a promise, which is
  // truthy at once, so it did not wait.)
  await pollPage(page, async (n) => {
    for (const { name } of await indexedDB.databases()) {
      const db = await new Promise((ok, no) => { const r = indexedDB.open(name); r.onsuccess = () => ok(r.result); r.onerror = no; });
      if (!db.objectStoreNames.contains('cache')) { db.close(); continue; }
      const all = await new Promise((ok, no) => { const r = db.transaction('cache').objectStore('cache').getAll(); r.onsuccess = () => ok(r.result); r.onerror = no; });
      db.close();
      if (all.some((rec) => rec.docs.length === n)) return true;
    }
    return false;
  }, Number(jobsShown.replace(/,/g, '')), 15_000, 'IndexedDB to hold every job shown');

  await srv.stop();
  await page.waitForSelector('#conn:not([data-state="live"])', { timeout: 10_000 });
  await page.waitForSelector('body[data-source="cache"]');
  assert.match(await page.textContent('#source'), /Saved copy from/);
  await page.reload();
  await page.waitForSelector('#app', { state: 'visible' });
  await page.waitForSelector(userRow('c-001'));
  await page.waitForSelector('body[data-source="cache"]');
  // The jobs come out of IndexedDB after the creators (2,000 of them): wait
  // for their count to be drawn, then compare it.
  await page.waitForFunction(() => document.querySelector('#tab-jobs-count')?.textContent !== '',
    null, { timeout: 10_000 });
  assert.equal(await page.textContent('#tab-jobs-count'), jobsShown);
  assert.match(await page.textContent('#source'), /^Saved copy from (a moment|\d+ s) ago$/);
  assert.match(await page.textContent('#notice'), /Showing the saved copy from (a moment|\d+ s) ago/);
  assert.equal(await page.locator('body.is-stale').count(), 1);
  const evs = await page.evaluate(() => window.__events);
  assert.ok(evs.some((e) => e.type === 'usersDataChanged' && e.source === 'cache' && e.count > 12), 'events say the data is the cache');
  await page.waitForSelector('#conn[data-state="offline"]', { timeout: 10_000 });
  await shots(page, 'offline-saved-copy');

  // The copy was last known current 7 minutes ago: out of date.
  await page.evaluate(() => {
    for (const k of Object.keys(localStorage)) {
      if (!k.includes(':lastLive:')) continue;
      const rec = JSON.parse(localStorage.getItem(k));
      for (const col of Object.keys(rec)) rec[col] -= 7 * 60_000;
      localStorage.setItem(k, JSON.stringify(rec));
    }
  });
  await page.reload();
  await page.waitForSelector('body[data-source="old"]');
  assert.match(await page.textContent('#source'), /^Out of date: saved 7 min ago$/);
  assert.match(await page.textContent('#notice'), /saved copy from 7 min ago .* It is out of date/);
  await shots(page, 'offline-out-of-date');

  // The server is back: live again, by itself.
  await srv.restart();
  await waitLive(page, 25_000);
  await page.waitForSelector('#notice', { state: 'hidden' });
  assert.equal(await page.isHidden('#source'), true);
  const unexpected = page.problems.filter((p) => !offlineNoise(p));
  assert.deepEqual(unexpected, []);
  await ctx.close();
});

test('no saved copy and the server down: a static host serves the pages and the snapshot, which the page shows; signing in once the server is back', async () => {
  if (srv.exited) await srv.restart(); // the test before failed with the server stopped: not this one's failure too
  const staticUrl = `http://127.0.0.1:${staticPort}`;
  const api = `?api=${encodeURIComponent(srv.url)}`;
  const site = { url: staticUrl };
  // Live through the static host first (CORS, ?api=).
  const live = await browser.newContext();
  const sp = await openPage(live, site, `/studio/${api}`, { viewport: DESKTOP });
  await sp.waitForSelector('#login-form', { state: 'visible' });
  assert.match(await sp.textContent('#login-server'), new RegExp(`Signing in to 127\\.0\\.0\\.1:${port}`));
  await sp.fill('#login-email', STAFF.email);
  await sp.fill('#login-password', STAFF.password);
  await sp.click('#login-submit');
  await waitLive(sp);
  await sp.waitForSelector(userRow('c-001'));
  await finish([sp], live);

  // A change, so that the snapshot is written after everything above.
  await ok(await srv.req('POST', '/v1/c/users', { body: { id: 'snap-user', name: 'Sol Snapshot', status: 'active', city: 'Tulsa' } }), 'create');
  await sleep(600);
  const snap = JSON.parse(readFileSync(path.join(snapDir, 'studio.json'), 'utf8'));
  assert.equal(snap.app, 'studio');
  assert.ok(snap.users.some((u) => u.id === 'snap-user'));

  await srv.stop();
  const ctx = await browser.newContext();
  await countEvents(ctx);
  const page = await openPage(ctx, site, `/studio/${api}`, { viewport: DESKTOP });
  await page.waitForSelector('body[data-source="snapshot"]', { timeout: 15_000 });
  assert.equal(await page.textContent('#tab-users-count'), snap.users.length.toLocaleString('en-US'));
  assert.equal(await page.textContent('#tab-jobs-count'), snap.jobs.length.toLocaleString('en-US'));
  assert.match(await page.textContent('#source'), /^Snapshot from (a moment|\d+ s) ago$/);
  assert.match(await page.textContent('#notice'), /The server cannot be reached\. Showing the published snapshot from .* Read-only until you sign in/);
  assert.equal(await page.isHidden('#add-user'), true, 'read-only');
  assert.equal(await page.locator('#users-body .edit').count(), 0);
  const evs = await page.evaluate(() => window.__events);
  assert.equal(evs.length, 2, 'one event per collection');
  for (const [type, n] of [['usersDataChanged', snap.users.length], ['jobsDataChanged', snap.jobs.length]]) {
    const e = evs.find((x) => x.type === type);
    assert.deepEqual([e.source, e.count, e.changes.length], ['snapshot', n, n]);
  }
  // Filters work on the snapshot too.
  await page.fill('#users-q', 'tulsa');
  await page.waitForFunction(() => document.querySelectorAll('#users-body tr').length === 1);
  await page.waitForSelector(userRow('snap-user'));
  await page.fill('#users-q', '');
  await shots(page, 'offline-snapshot');

  // The server comes back: the page notices and offers to sign in.
  await srv.restart();
  await page.waitForSelector('#notice button >> text=Sign in', { timeout: 20_000 });
  assert.match(await page.textContent('#notice'), /The server is back/);
  await page.click('#notice button >> text=Sign in');
  await page.waitForSelector('#login-form', { state: 'visible' });
  await page.fill('#login-email', STAFF.email);
  await page.fill('#login-password', STAFF.password);
  await page.click('#login-submit');
  await waitLive(page);
  await page.fill('#users-q', 'tulsa');
  await page.waitForSelector(userRow('snap-user'));
  assert.equal(await page.isHidden('#notice'), true);
  const unexpected = page.problems.filter((p) => !offlineNoise(p));
  assert.deepEqual(unexpected, []);
  await ctx.close();
});
