// The studio's system test page (/studio/test.html), the seed's
// test-realtime-system.html made real: each check says pass, fail or skip,
// and why, in words and figures.
//
//   health    GET /v1/health answers (and its status)
//   login     a form; passes once a studio account is signed in
//   realtime  subscribe to `jobs` where id == a probe id, then create,
//             change and delete that probe job; each change must arrive
//             live; write -> change latency in ms for each
//   import    POST /v1/admin/import?dry_run=1 with a small built-in sample
//             (3 bad records of 5); the report must name each (admins)
//   snapshot  the static snapshot where the dashboard looks for it
//   offline   a service worker keeps the page files; IndexedDB works
//
// Results are also in window.studioTest.results (for the browser tests).
import { h, $, $$, ICON, ago, bindConnection, errorText, keepOffline, savedAccount } from '../client/ui.js';
import { CFG, getDb, probe, pageHref, isAdmin, ROLES, fillIcons } from './common.js';

const db = getDb();
const results = {};
window.studioTest = { db, results };

const RESULT_TEXT = { idle: 'Not run', running: 'Running…', pass: 'Pass', fail: 'Fail', skip: 'Skipped' };
const RESULT_ICON = { idle: 'minusCircle', running: 'clock', pass: 'checkCircle', fail: 'x', skip: 'minusCircle' };
const TIMEOUT_MS = 5000;

// The dry run's sample: two good records, three bad ones.
const SAMPLE = {
  users: [
    { id: 'test-page-u1', name: 'Probe Creator', status: 'active', skills: ['camera'], city: 'Austin', day_rate_cents: 50000 },
    { id: 'test-page-u2', name: '', status: 'sometimes' },
    { name: 'No Id At All', status: 'active' },
  ],
  jobs: [
    { id: 'test-page-j1', title: 'Probe job', client: 'Test', status: 'open', assigned_to: null, budget_cents: 100000 },
    { id: 'test-page-j2', status: 'done', budget_cents: -5 },
  ],
};
const SAMPLE_BAD = [['users', 1], ['users', 2], ['jobs', 1]];

boot();

async function boot() {
  keepOffline('sw.js');
  fillIcons(ICON);
  for (const a of $$('.back-link')) a.href = pageHref('./');
  for (const li of $$('.check-item')) setResult(li.id.slice(6), 'idle');
  $('#api-line').textContent = CFG.own ? '' : `Server: ${CFG.api}.`;
  $('#run-all').addEventListener('click', runAll);
  $('#login-form').addEventListener('submit', onLogin);
  db.on('auth', () => { setResult('login', 'fail', 'The session ended. Sign in again.'); showLoginForm(); });
  for (const li of $$('.check-item')) {
    const name = li.id.slice(6);
    if (name === 'login') continue;
    const b = h('button', { class: 'btn btn-sm run-one', type: 'button', 'aria-label': `Run the check: ${li.querySelector('h3').textContent}` }, 'Run again');
    b.addEventListener('click', () => CHECKS[name]());
    const result = li.querySelector('.check-result');
    const side = h('div', { class: 'check-side' });
    result.replaceWith(side);
    side.append(result, b);
  }
  const account = await savedAccount(db);
  if (account) {
    $('#conn').dataset.bound = '1';
    bindConnection(db, $('#conn'));
  }
  await runAll();
}

async function runAll() {
  $('#run-all').disabled = true;
  try {
    await CHECKS.health();
    await CHECKS.login();
    await CHECKS.realtime();
    await CHECKS.import();
    await CHECKS.snapshot();
    await CHECKS.offline();
  } finally {
    $('#run-all').disabled = false;
  }
}

// ------------------------------------------------------------ results

function setResult(name, result, ...detail) {
  const li = $(`#check-${name}`);
  li.dataset.result = result;
  results[name] = { result, text: detail.map((d) => (d instanceof Node ? d.textContent : String(d ?? ''))).join('') };
  li.querySelector('.check-ico').innerHTML = ICON[RESULT_ICON[result]];
  li.querySelector('.check-result').textContent = RESULT_TEXT[result];
  li.querySelector('.check-detail').replaceChildren(...detail);
  const run = li.querySelector('.run-one');
  if (run) run.disabled = result === 'running';
  renderSummary();
}

function renderSummary() {
  const all = Object.values(results);
  const n = (r) => all.filter((x) => x.result === r).length;
  const el = $('#summary');
  if (n('running')) {
    el.dataset.result = 'running';
    el.textContent = 'Running the checks…';
    return;
  }
  const parts = [`${n('pass')} passed`];
  if (n('fail')) parts.push(`${n('fail')} failed`);
  if (n('skip')) parts.push(`${n('skip')} skipped`);
  if (n('idle')) parts.push(`${n('idle')} not run`);
  el.dataset.result = n('fail') ? 'fail' : n('pass') ? 'pass' : 'idle';
  el.textContent = `${n('fail') ? 'Some checks failed' : n('idle') ? 'Checks so far' : 'All checks passed'}: ${parts.join(', ')}.`;
}

const ms = (x) => `${Math.round(x)} ms`;
const metric = (label, value) => h('span', {}, `${label} `, h('strong', {}, value));

function timeout(promise, ms, what) {
  let t;
  return Promise.race([promise, new Promise((_, rej) => {
    t = setTimeout(() => rej(new Error(`${what}: nothing within ${ms / 1000} s`)), ms);
  })]).finally(() => clearTimeout(t));
}

// ------------------------------------------------------------ the checks

const CHECKS = {
  async health() {
    setResult('health', 'running');
    const p = await probe();
    if (!p.status) {
      setResult('health', 'fail', `No answer from ${CFG.api} (${p.error?.name === 'TimeoutError' ? 'timed out' : 'connection failed'}, ${ms(p.ms)}). Is the server running, and does it allow this page's origin?`);
      return;
    }
    const status = p.body?.status || `HTTP ${p.status}`;
    const checks = p.body?.checks ? Object.entries(p.body.checks).map(([k, v]) => `${k} ${v?.status ?? v}`).join(', ') : '';
    const ok = p.status === 200;
    setResult('health', ok ? 'pass' : 'fail',
      h('div', { class: 'metrics' }, metric('Status', status), metric('Answered in', ms(p.ms))),
      checks ? h('div', { class: 'muted small' }, checks) : '');
  },

  async login() {
    if (db.account) {
      const a = db.account;
      if (!ROLES.has(a.role)) {
        setResult('login', 'fail', `Signed in as ${a.email}, whose role (${a.role}) is not a studio role (admin or staff).`);
        showLoginForm();
        return;
      }
      $('#login-form').hidden = true;
      setResult('login', 'pass', h('span', {}, 'Signed in as ', h('strong', {}, a.name || a.email), ` (${a.role}). `),
        h('button', { class: 'btn btn-sm btn-ghost', type: 'button', onclick: switchAccount }, 'Sign in as someone else'));
      return;
    }
    setResult('login', 'idle', 'Sign in to run the checks that need an account.');
    showLoginForm();
  },

  async realtime() {
    if (!db.account || !ROLES.has(db.account.role)) {
      setResult('realtime', 'skip', 'Needs a studio account: sign in first.');
      return;
    }
    setResult('realtime', 'running', 'Subscribing…');
    const id = `probe-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    const waiters = [];
    let first = null;
    const seen = [];
    const stop = db.collection('jobs').where('id', 'eq', id).onSnapshot((snap) => {
      const t = performance.now();
      if (!snap.stale && !first) first = t;
      for (const ch of snap.changes) seen.push({ ...ch, t });
      for (const w of [...waiters]) w();
    }, (err) => { for (const w of [...waiters]) w(err); });
    // Resolves with the time the change came (op, and version for modified).
    const waitFor = (op, pred = () => true) => new Promise((resolve, reject) => {
      const check = (err) => {
        if (err) { reject(err); return; }
        const hit = seen.find((c) => c.op === op && pred(c));
        if (hit) { waiters.splice(waiters.indexOf(check), 1); resolve(hit.t); }
      };
      waiters.push(check);
      check();
    });
    const live = () => new Promise((resolve, reject) => {
      const check = (err) => {
        if (err) { reject(err); return; }
        if (first) { waiters.splice(waiters.indexOf(check), 1); resolve(first); }
      };
      waiters.push(check);
      check();
    });
    let created = false;
    try {
      const t0 = performance.now();
      await timeout(live(), TIMEOUT_MS, 'the subscription');
      const subMs = performance.now() - t0;
      const path = `/v1/c/jobs`;
      const doc = { id, title: 'Realtime probe (system test page)', client: null, status: 'cancelled', assigned_to: null, due: null, budget_cents: null };
      let t = performance.now();
      const createdDoc = await db.api('POST', path, doc);
      created = true;
      const cMs = (await timeout(waitFor('added'), TIMEOUT_MS, 'the created job')) - t;
      t = performance.now();
      await db.api('PATCH', `${path}/${id}`, { title: 'Realtime probe (changed)' });
      const uMs = (await timeout(waitFor('modified', (c) => c.doc?.version > createdDoc.version), TIMEOUT_MS, 'the change')) - t;
      t = performance.now();
      await db.api('DELETE', `${path}/${id}`);
      created = false;
      const dMs = (await timeout(waitFor('removed'), TIMEOUT_MS, 'the deletion')) - t;
      const worst = Math.max(cMs, uMs, dMs);
      setResult('realtime', 'pass',
        h('div', { class: 'metrics' }, metric('Create', ms(cMs)), metric('Change', ms(uMs)), metric('Delete', ms(dMs)),
          metric('Subscribe', ms(subMs))),
        h('div', { class: 'muted small' }, `Every change came back live; the slowest took ${ms(worst)} from the write. Connection: ${db.state}.`));
    } catch (e) {
      setResult('realtime', 'fail', e.code ? errorText(e) : e.message,
        e.code === 'forbidden' ? ' (this role may not write jobs)' : '');
    } finally {
      stop();
      if (created) db.api('DELETE', `/v1/c/jobs/${id}`).catch(() => {});
    }
  },

  async import() {
    if (!db.account) {
      setResult('import', 'skip', 'Needs an admin account: sign in first.');
      return;
    }
    if (!isAdmin(db.account)) {
      setResult('import', 'skip', `Importing is for admins; ${db.account.email} is ${db.account.role}.`);
      return;
    }
    setResult('import', 'running');
    const t0 = performance.now();
    try {
      const r = await db.api('POST', '/v1/admin/import?dry_run=1', SAMPLE);
      const took = performance.now() - t0;
      const named = SAMPLE_BAD.filter(([col, i]) => r.problems?.some((p) => p.col === col && p.index === i));
      const ok = r.dry_run === true && r.total === 5 && r.bad === SAMPLE_BAD.length && named.length === SAMPLE_BAD.length &&
        !r.created && !r.updated;
      const list = h('ul', { class: 'small' }, (r.problems || []).map((p) => h('li', {}, h('span', { class: 'mono' }, `${p.col}[${p.index}]`),
        p.id ? ` (${p.id})` : '', `: ${p.fields?.length ? p.fields.map((f) => `${f.field} ${f.reason}`).join('; ') : p.reason}`)));
      setResult('import', ok ? 'pass' : 'fail',
        h('div', { class: 'metrics' }, metric('Records', String(r.total)), metric('Bad', String(r.bad)), metric('Answered in', ms(took))),
        ok ? '' : h('div', {}, `Expected 5 records, 3 bad (users[1], users[2], jobs[1]), nothing written; got ${JSON.stringify({ total: r.total, bad: r.bad, dry_run: r.dry_run })}.`),
        list);
    } catch (e) {
      setResult('import', 'fail', `The dry run failed: ${errorText(e)}`);
    }
  },

  async snapshot() {
    setResult('snapshot', 'running');
    const url = CFG.snapshot;
    const explicit = new URLSearchParams(location.search).has('snapshot');
    if (CFG.own && !explicit) {
      // Served by livedb itself: the snapshot is for a static host beside it.
      setResult('snapshot', 'skip', 'Not checked here: this page comes from the livedb server, and the snapshot is for a static host (livedb serve --snapshot-dir DIR; serve DIR as snapshot/ beside the pages). Open this page there, or add ?snapshot=URL.');
      return;
    }
    try {
      const res = await fetch(url, { cache: 'no-store', signal: AbortSignal.timeout(TIMEOUT_MS) });
      if (!res.ok) {
        const why = `${url} answers ${res.status}.`;
        if (explicit) setResult('snapshot', 'fail', why);
        else setResult('snapshot', 'skip', `No snapshot next to this page (${res.status}). It is for a static host: livedb serve --snapshot-dir DIR, and DIR served as snapshot/ beside the page.`);
        return;
      }
      const s = await res.json();
      const ok = s && (s.app === 'studio' || s.app === undefined) && Array.isArray(s.users) && Array.isArray(s.jobs);
      setResult('snapshot', ok ? 'pass' : 'fail',
        ok ? h('div', { class: 'metrics' }, metric('Creators', String(s.users.length)), metric('Jobs', String(s.jobs.length)),
          metric('Written', s.generated_at ? ago(s.generated_at) : '?'), metric('Seq', String(s.seq ?? '?')))
          : `${url} is not a studio snapshot.`);
    } catch (e) {
      if (explicit) setResult('snapshot', 'fail', `${url}: ${e.message}`);
      else setResult('snapshot', 'skip', `No snapshot reachable at ${url}.`);
    }
  },

  async offline() {
    setResult('offline', 'running');
    const notes = [];
    let sw = false, idb = false;
    if ('serviceWorker' in navigator) {
      try {
        const reg = await timeout(navigator.serviceWorker.ready, 4000, 'the service worker');
        sw = !!reg?.active;
      } catch { sw = false; }
    }
    notes.push(sw ? 'Page files: kept by the service worker.' : 'Page files: no service worker (needs https or localhost).');
    try {
      await new Promise((resolve, reject) => {
        const req = indexedDB.open('studio-test-probe');
        req.onsuccess = () => { req.result.close(); indexedDB.deleteDatabase('studio-test-probe'); resolve(); };
        req.onerror = () => reject(req.error);
        req.onblocked = () => reject(new Error('blocked'));
      });
      idb = true;
    } catch { idb = false; }
    notes.push(idb ? ' Data: IndexedDB works.' : ' Data: IndexedDB is not available (private mode?).');
    setResult('offline', sw && idb ? 'pass' : idb ? 'skip' : 'fail', ...notes);
  },
};

// ------------------------------------------------------------ signing in

function showLoginForm() {
  $('#login-form').hidden = false;
}

async function switchAccount() {
  try { await db.logout(); } catch { /* gone anyway */ }
  setResult('login', 'idle', 'Sign in to run the checks that need an account.');
  showLoginForm();
  $('#login-email').focus();
}

async function onLogin(e) {
  e.preventDefault();
  const email = $('#login-email').value.trim();
  const password = $('#login-password').value;
  if (!email || !password) {
    setResult('login', 'fail', 'Enter an email and a password.');
    return;
  }
  const btn = $('#login-submit');
  btn.disabled = true;
  setResult('login', 'running', 'Signing in…');
  const t0 = performance.now();
  try {
    await db.login(email, password);
    $('#login-password').value = '';
    if (!$('#conn').dataset.bound) {
      $('#conn').dataset.bound = '1';
      bindConnection(db, $('#conn'));
    }
    await CHECKS.login();
    const li = $('#check-login .check-detail');
    li.append(h('div', { class: 'muted small' }, `Signed in in ${ms(performance.now() - t0)}.`));
    await CHECKS.realtime();
    await CHECKS.import();
  } catch (ex) {
    setResult('login', 'fail', ex.code === 'unauthorized' ? 'Wrong email or password.' : errorText(ex));
  } finally {
    btn.disabled = false;
  }
}
