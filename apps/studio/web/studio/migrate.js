// The import page (/studio/migrate.html, admins): the seed's one-click
// "data migration utility", onto POST /v1/admin/import.
//
// The file is read and parsed here, in the browser: {"users":[...],
// "jobs":[...]} or a bare array (the user says which collection). It goes
// to the server in slices, in order: at most SLICE_RECORDS records and
// SLICE_BYTES bytes each (the server takes at most 1 MiB a request), each
// as ?collection=C with a bare array. The server answers each slice with
// its counts and its bad records, indexed in the array it was sent; the
// slice's map turns that back into the index in the original file.
//
// What the server can only see within one request is checked here for the
// whole file: an id met earlier in the same collection is refused exactly
// as `livedb import` refuses it ("the same id as users[42], which is
// loaded instead"), since the first copy may be in another slice. A
// record too large for any request is refused here too.
//
// Importing again adds nothing: the server upserts by id and writes
// nothing for a record equal to the stored one ("unchanged").
import { h, $, $$, ICON, plural, bindConnection, errorText, keepOffline } from '../client/ui.js';
import { getDb, pageHref, wireLogin, showLogin, isAdmin, fillIcons } from './common.js';

const db = getDb();
window.studio = { db };

export const SLICE_RECORDS = 400;
export const SLICE_BYTES = 900 * 1024;
const REQUEST_MAX = 1024 * 1024;
const STUDIO_COLS = ['users', 'jobs'];
const COL_NAME = { users: 'Creators', jobs: 'Jobs' };
const ID_RE = /^[A-Za-z0-9_.-]{1,128}$/;
const RETRIES = 3;

const S = {
  account: null,
  file: null,       // {name, size, kind: 'object'|'bare', cols: [{col, records}], ignored: [names]}
  running: false,
  stopAsked: false,
  report: null,     // the last run: {dryRun, problems, counts, ...}
};

boot();

async function boot() {
  keepOffline('sw.js');
  fillIcons(ICON);
  $('#logout').innerHTML = ICON.logout;
  for (const a of $$('.back-link')) a.href = pageHref('./') + (new URL(a.href).hash || '');
  $('#tab-migrate').href = pageHref('migrate.html');
  wireLogin(db, start);
  db.on('auth', () => {
    S.stopAsked = true;
    showLogin('Your session has ended. Please sign in again.');
  });
  $('#logout').addEventListener('click', logout);
  $('#fb-logout').addEventListener('click', logout);
  $('#file').addEventListener('change', (e) => { if (e.target.files[0]) readFile(e.target.files[0]); });
  const drop = $('#drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const f = e.dataTransfer?.files?.[0];
    if (f) readFile(f);
  });
  for (const r of $$('input[name=bare]')) r.addEventListener('change', () => { S.file.cols[0].col = r.value; renderFile(); });
  $('#dry-run').addEventListener('click', () => run(true));
  $('#import').addEventListener('click', () => run(false));
  $('#stop').addEventListener('click', () => { S.stopAsked = true; $('#stop').disabled = true; $('#stop').textContent = 'Stopping after this slice…'; });
  $('#download').addEventListener('click', downloadReport);
  addEventListener('beforeunload', (e) => { if (S.running) e.preventDefault(); });
  let account = null;
  try { account = await db.restore(); } catch { account = null; }
  $('#boot').hidden = true;
  if (account) start(account);
  else showLogin();
}

function start(account) {
  S.account = account;
  $('#login').hidden = true;
  if (!isAdmin(account)) {
    $('#fb-who').textContent = `${account.name || account.email} (${account.role})`;
    $('#forbidden').hidden = false;
    return;
  }
  $('#app').hidden = false;
  $('#who-name').textContent = account.name || account.email;
  $('#who-role').textContent = 'Admin';
  if (!S.bound) {
    S.bound = true;
    bindConnection(db, $('#conn'));
  }
}

async function logout() {
  try { await db.logout(); } catch { /* gone anyway */ }
  location.reload();
}

// ------------------------------------------------------------ the file

async function readFile(file) {
  const err = $('#file-error');
  err.hidden = true;
  $('#file-info').hidden = true;
  S.file = null;
  renderButtons();
  $('#file-state').textContent = `Reading ${file.name}…`;
  let root;
  try {
    root = JSON.parse(await file.text());
  } catch (e) {
    fileError(`${file.name} is not JSON: ${e.message}`);
    return;
  }
  const out = { name: file.name, size: file.size, cols: [], ignored: [] };
  if (Array.isArray(root)) {
    out.kind = 'bare';
    out.cols.push({ col: guessCollection(root), records: root });
  } else if (root && typeof root === 'object') {
    out.kind = 'object';
    for (const [k, v] of Object.entries(root)) {
      if (!Array.isArray(v)) {
        fileError(`${file.name}: “${k}” is not a list of records. The file should be {"users":[…],"jobs":[…]} or a list of records.`);
        return;
      }
      if (STUDIO_COLS.includes(k)) out.cols.push({ col: k, records: v });
      else out.ignored.push(`${k} (${plural(v.length, 'record')})`);
    }
    if (!out.cols.length) {
      fileError(`${file.name} has no creators or jobs: it should be {"users":[…],"jobs":[…]} or a list of records.`);
      return;
    }
  } else {
    fileError(`${file.name} holds neither records nor {"users":[…],"jobs":[…]}.`);
    return;
  }
  S.file = out;
  S.report = null;
  $('#report-card').hidden = true;
  $('#progress-box').hidden = true;
  renderFile();
}

function fileError(text) {
  const err = $('#file-error');
  err.hidden = false;
  err.replaceChildren(h('span', { class: 'ico', html: ICON.alert }), h('span', {}, text));
  $('#file-state').textContent = '';
  $('#file').value = '';
}

// A bare array: jobs have titles, creators names.
function guessCollection(records) {
  let titles = 0, names = 0;
  for (const r of records.slice(0, 50)) {
    if (r && typeof r === 'object') {
      if ('title' in r) titles++;
      if ('name' in r) names++;
    }
  }
  return titles > names ? 'jobs' : names > titles ? 'users' : null;
}

function renderFile() {
  const f = S.file;
  if (!f) return;
  const kb = (n) => (n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} KB`);
  const total = f.cols.reduce((n, c) => n + c.records.length, 0);
  const plan = f.cols.every((c) => c.col) ? makePlan(f.cols) : null;
  $('#file-state').textContent = `${f.name} · ${kb(f.size)}`;
  const facts = [];
  for (const c of f.cols) {
    facts.push(h('div', { class: 'fact', dataset: { col: c.col || '' } },
      h('span', {}, c.col ? COL_NAME[c.col] : 'Records'), h('strong', {}, c.records.length.toLocaleString('en-US')),
      h('small', {}, c.col ? `into ${c.col}` : 'pick a collection below')));
  }
  facts.push(h('div', { class: 'fact', dataset: { col: 'total' } }, h('span', {}, 'Total'),
    h('strong', {}, total.toLocaleString('en-US')),
    h('small', {}, plan ? `sent in ${plural(plan.slices.length, 'slice')}` : kb(f.size))));
  $('#facts').replaceChildren(...facts);
  const bare = $('#bare-choice');
  bare.hidden = f.kind !== 'bare';
  if (f.kind === 'bare') for (const r of $$('input[name=bare]')) r.checked = r.value === f.cols[0].col;
  const notes = [];
  if (f.ignored.length) notes.push(`Not studio collections, left out: ${f.ignored.join(', ')}.`);
  if (plan?.local.length) notes.push(`${plural(plan.local.length, 'record')} can already be seen to be bad (an id used twice, or too large); the report will list them with the others.`);
  $('#file-note').textContent = notes.join(' ');
  $('#file-info').hidden = false;
  renderButtons();
}

function renderButtons() {
  const ready = !!S.file && S.file.cols.every((c) => c.col) && !S.running;
  $('#dry-run').disabled = !ready;
  $('#import').disabled = !ready;
  $('#file').disabled = S.running;
}

// ------------------------------------------------------------ slices

const utf8 = new TextEncoder();

// The file as requests: slices of each collection, in order, each with the
// original index of every record it holds; and the records refused here.
export function makePlan(cols) {
  const slices = [], local = [];
  for (const { col, records } of cols) {
    const seen = new Map();
    let cur = null;
    const flush = () => { if (cur && cur.records.length) slices.push(cur); cur = null; };
    records.forEach((r, i) => {
      if (r && typeof r === 'object' && !Array.isArray(r) && typeof r.id === 'string' && ID_RE.test(r.id)) {
        if (seen.has(r.id)) {
          local.push({ col, index: i, id: r.id, reason: `the same id as ${col}[${seen.get(r.id)}], which is loaded instead` });
          return;
        }
        seen.set(r.id, i);
      }
      const bytes = utf8.encode(JSON.stringify(r)).length + 1;
      if (bytes + 2 > REQUEST_MAX) {
        local.push({ col, index: i, id: typeof r?.id === 'string' ? r.id : null, reason: 'over 1 MiB' });
        return;
      }
      if (cur && (cur.records.length >= SLICE_RECORDS || cur.bytes + bytes > SLICE_BYTES)) flush();
      if (!cur) cur = { col, records: [], index: [], bytes: 2 };
      cur.records.push(r);
      cur.index.push(i);
      cur.bytes += bytes;
    });
    flush();
  }
  return { slices, local };
}

// ------------------------------------------------------------ running it

async function run(dryRun) {
  if (S.running || !S.file) return;
  const plan = makePlan(S.file.cols);
  const total = S.file.cols.reduce((n, c) => n + c.records.length, 0);
  const order = new Map(S.file.cols.map((c, i) => [c.col, i]));
  const R = {
    dryRun, total, done: 0, slice: 0, slices: plan.slices.length,
    created: 0, updated: 0, unchanged: 0, good: 0, bad: 0,
    problems: [], startedAt: Date.now(), stopped: null, file: S.file.name,
  };
  S.report = R;
  S.running = true;
  S.stopAsked = false;
  renderButtons();
  $('#stop').hidden = false;
  $('#stop').disabled = false;
  $('#stop').textContent = 'Stop';
  $('#progress-box').hidden = false;
  $('#report-card').hidden = true;
  const bar = $('#progress');
  bar.dataset.state = 'running';
  // Records refused here count at once.
  for (const p of plan.local) addProblem(R, p);
  R.done += plan.local.length;
  renderProgress(R);
  try {
    for (const sl of plan.slices) {
      if (S.stopAsked) { R.stopped = 'by you'; break; }
      R.slice++;
      renderProgress(R);
      const answer = await sendSlice(sl, dryRun, R);
      if (!answer) break; // R.stopped says why
      R.created += answer.created || 0;
      R.updated += answer.updated || 0;
      R.unchanged += answer.unchanged || 0;
      for (const p of answer.problems || []) {
        addProblem(R, { ...p, col: p.col || sl.col, index: sl.index[p.index] ?? p.index });
      }
      R.done += sl.records.length;
      R.good = R.done - R.bad;
      renderProgress(R);
    }
  } finally {
    S.running = false;
    R.finishedAt = Date.now();
    R.problems.sort((a, b) => (order.get(a.col) ?? 99) - (order.get(b.col) ?? 99) || a.index - b.index);
    R.good = R.done - R.bad;
    $('#stop').hidden = true;
    bar.dataset.state = R.stopped ? 'failed' : 'done';
    renderProgress(R);
    renderReport(R);
    renderButtons();
  }
}

function addProblem(R, p) {
  R.bad++;
  R.problems.push({ col: p.col, index: p.index, id: p.id ?? null, reason: p.reason || 'refused', fields: p.fields || null });
}

// One slice, with retries when the server cannot be reached. The answer, or
// null with R.stopped set.
async function sendSlice(sl, dryRun, R) {
  const q = `?collection=${encodeURIComponent(sl.col)}${dryRun ? '&dry_run=1' : ''}`;
  for (let attempt = 0; ; attempt++) {
    try {
      return await db.api('POST', `/v1/admin/import${q}`, sl.records);
    } catch (e) {
      const retry = ['network', 'timeout', 'unavailable', 'rate_limited'].includes(e.code) && attempt < RETRIES && !S.stopAsked;
      if (retry) {
        $('#progress-text').textContent = `${errorText(e)} Trying again…`;
        await new Promise((r) => setTimeout(r, 1000 * 2 ** attempt));
        continue;
      }
      R.stopped = e.code === 'forbidden' ? 'Only an admin can import.'
        : e.code === 'unauthorized' ? 'Your session ended. Sign in again and run the import again.'
          : e.code === 'bad_request' ? `The server refused a slice of ${sl.col}: ${e.message}`
            : errorText(e);
      R.stoppedError = e;
      return null;
    }
  }
}

function renderProgress(R) {
  const pct = R.total ? Math.round((R.done / R.total) * 100) : 100;
  const bar = $('#progress');
  bar.firstElementChild.style.width = `${pct}%`;
  bar.setAttribute('aria-valuenow', String(pct));
  const running = S.running;
  $('#progress-title').textContent = running
    ? `${R.dryRun ? 'Checking' : 'Importing'}… ${pct}%`
    : R.stopped ? `${R.dryRun ? 'Dry run' : 'Import'} stopped at ${pct}%` : `${R.dryRun ? 'Dry run' : 'Import'} done`;
  $('#progress-text').textContent = `${R.done.toLocaleString('en-US')} of ${R.total.toLocaleString('en-US')} records` +
    (R.slices ? ` · slice ${Math.max(1, R.slice)} of ${R.slices}` : '');
  const fact = (k, label, n, note) => h('div', { class: 'fact', dataset: { k } }, h('span', {}, label),
    h('strong', { class: 'num' }, n.toLocaleString('en-US')), note ? h('small', {}, note) : null);
  $('#tally').replaceChildren(...(R.dryRun
    ? [fact('checked', 'Checked', R.done), fact('good', 'Good', R.done - R.bad, 'would load'),
      fact('bad', 'Bad', R.bad, 'would be skipped'), fact('written', 'Written', 0, 'a dry run writes nothing')]
    : [fact('created', 'Created', R.created, 'new records'), fact('updated', 'Updated', R.updated, 'changed since last time'),
      fact('unchanged', 'Unchanged', R.unchanged, 'already here'), fact('bad', 'Bad', R.bad, 'skipped')]));
}

function renderReport(R) {
  const card = $('#report-card');
  card.hidden = false;
  const n = (x) => x.toLocaleString('en-US');
  let summary;
  if (R.stopped) {
    summary = h('div', { class: 'banner banner-danger' }, h('span', { class: 'ico', html: ICON.alert }),
      h('span', {}, h('strong', {}, R.stopped === 'by you' ? 'Stopped by you. ' : 'Stopped. '),
        R.stopped === 'by you' ? '' : R.stopped + ' ',
        `${n(R.done)} of ${n(R.total)} records were done. `,
        R.dryRun ? '' : 'Run Import again to finish: the records already imported are left as they are.'));
  } else if (R.dryRun) {
    summary = h('div', { class: `banner ${R.bad ? 'banner-warn' : 'banner-ok'}` }, h('span', { class: 'ico', html: R.bad ? ICON.alert : ICON.check }),
      h('span', {}, h('strong', {}, 'Dry run: nothing was written. '),
        `${n(R.good)} of ${n(R.total)} records are good and would load`,
        R.bad ? `; ${plural(R.bad, 'bad record')} would be skipped (listed below).` : '.'));
  } else {
    const wrote = R.created + R.updated;
    summary = h('div', { class: `banner ${R.bad ? 'banner-warn' : 'banner-ok'}` }, h('span', { class: 'ico', html: R.bad ? ICON.alert : ICON.check }),
      h('span', {}, h('strong', {}, 'Import done. '),
        wrote ? `${n(R.created)} created, ${n(R.updated)} updated` : 'Nothing new to write',
        R.unchanged ? `${wrote ? ', ' : ': '}${n(R.unchanged)} ${wrote ? '' : 'records '}already here and unchanged` : '',
        R.bad ? `; ${plural(R.bad, 'bad record')} skipped (listed below): fix them in the file and import it again.` : '.'));
  }
  $('#report-summary').replaceChildren(summary);
  $('#report-wrap').hidden = !R.problems.length;
  $('#report-body').replaceChildren(...R.problems.map((p) => h('tr', { dataset: { col: p.col, index: String(p.index) } },
    h('td', {}, COL_NAME[p.col] || p.col),
    h('td', { class: 'idx mono' }, `${p.col}[${p.index}]`),
    h('td', { class: 'mono' }, p.id ?? h('span', { class: 'dim' }, 'none')),
    // A schema's refusal: the fields and why (as `livedb import` prints it).
    p.fields?.length
      ? h('td', { title: p.reason }, p.fields.map((f, i) => [i ? '; ' : '', h('strong', {}, f.field), ` ${f.reason}`]))
      : h('td', {}, p.reason))));
  const dl = $('#download');
  dl.hidden = !R.problems.length;
  dl.replaceChildren(h('span', { class: 'ico', html: ICON.download }), 'Download the report (CSV)');
  card.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
}

function downloadReport() {
  const R = S.report;
  if (!R) return;
  const cell = (v) => {
    const s = v == null ? '' : String(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const lines = [['collection', 'index', 'id', 'reason', 'fields'].join(',')];
  for (const p of R.problems) {
    lines.push([p.col, p.index, p.id, p.reason, (p.fields || []).map((f) => `${f.field}: ${f.reason}`).join('; ')].map(cell).join(','));
  }
  const blob = new Blob([lines.join('\r\n') + '\r\n'], { type: 'text/csv' });
  const a = h('a', { href: URL.createObjectURL(blob), download: `import-report-${R.dryRun ? 'dry-run-' : ''}${new Date(R.startedAt).toISOString().slice(0, 19).replace(/:/g, '')}.csv` });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}
