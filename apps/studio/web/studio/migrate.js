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
// whole file, with the rule `livedb import` follows: an id is taken by the
// first record with it that loads (one the server did not report bad), and
// a later record with a taken id is refused ("the same id as users[42],
// which is loaded instead"); a record refused for anything else takes
// nothing, so a hand-fixed copy after a broken one loads. Whether a record
// loads is known from its slice's answer, so a record whose id is already
// in the slice being made starts the next slice, and which records of a
// slice are sent is decided when it goes. A record too large for any
// request is refused here too.
//
// Importing again adds nothing: the server upserts by id and writes
// nothing for a record equal to the stored one ("unchanged").
import { h, $, $$, ICON, plural, bindConnection, errorText, keepOffline, resumeSession, openFor } from '../client/ui.js';
import { getDb, pageHref, wireLogin, showLogin, isAdmin, fillIcons } from './common.js';

const db = getDb();
window.studio = { db };

export const SLICE_RECORDS = 400;
export const SLICE_BYTES = 900 * 1024;
const REQUEST_MAX = 1024 * 1024;
const STUDIO_COLS = ['users', 'jobs'];
const COL_NAME = { users: 'Creators', jobs: 'Jobs' };
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
  await resumeSession(db, start, showLogin);
}

function start(account) {
  S.account = account;
  $('#login').hidden = true;
  if (!openFor(account, isAdmin(account))) return;
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
  if (plan?.repeats) notes.push(`${plural(plan.repeats, 'record')} ${plan.repeats === 1 ? 'repeats' : 'repeat'} an earlier record's id: each id loads once, from its first good record, and the report will list the other copies.`);
  if (plan?.big) notes.push(`${plural(plan.big, 'record')} ${plan.big === 1 ? 'is' : 'are'} over 1 MiB, too large to import; the report will list ${plan.big === 1 ? 'it' : 'them'}.`);
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

// The file as requests: slices of each collection, in order, each item a
// record with its index in the file. Two records with one id never share a
// slice: the second waits for the answer to the first. repeats: records
// whose id an earlier one has; big: records too large for a request.
export function makePlan(cols) {
  const slices = [];
  let repeats = 0, big = 0;
  for (const { col, records } of cols) {
    const seen = new Set();
    let cur = null;
    const flush = () => { if (cur && cur.items.length) slices.push(cur); cur = null; };
    records.forEach((r, i) => {
      const id = idOf(r);
      if (id !== null) {
        if (seen.has(id)) repeats++;
        seen.add(id);
      }
      const bytes = utf8.encode(JSON.stringify(r)).length + 1;
      const tooBig = bytes + 2 > REQUEST_MAX;
      if (tooBig) big++;
      if (cur && (cur.items.length >= SLICE_RECORDS || (!tooBig && cur.bytes + bytes > SLICE_BYTES) || (id !== null && cur.ids.has(id)))) flush();
      if (!cur) cur = { col, items: [], ids: new Set(), bytes: 2 };
      cur.items.push({ record: r, index: i, id, big: tooBig });
      if (id !== null) cur.ids.add(id);
      if (!tooBig) cur.bytes += bytes;
    });
    flush();
  }
  return { slices, repeats, big };
}

// The id the server would read from a record, or null.
function idOf(r) {
  return r && typeof r === 'object' && !Array.isArray(r) && typeof r.id === 'string' ? r.id : null;
}

// A slice as it goes, given taken (id -> the index of the record in the
// file that loaded with it): the records to send, their items, and the
// records refused here.
function sliceToSend(sl, taken, dryRun) {
  const records = [], sent = [], local = [];
  for (const it of sl.items) {
    const first = it.id === null ? undefined : taken.get(it.id);
    if (first !== undefined) {
      local.push({ col: sl.col, index: it.index, id: it.id,
        reason: `the same id as ${sl.col}[${first}], which ${dryRun ? 'would load' : 'is loaded'} instead` });
    } else if (it.big) {
      local.push({ col: sl.col, index: it.index, id: it.id, reason: 'over 1 MiB' });
    } else {
      records.push(it.record);
      sent.push(it);
    }
  }
  return { records, sent, local };
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
  renderProgress(R);
  // By collection: id -> the index in the file of the record that took it.
  const taken = new Map(S.file.cols.map((c) => [c.col, new Map()]));
  try {
    for (const sl of plan.slices) {
      if (S.stopAsked) { R.stopped = 'by you'; break; }
      R.slice++;
      const ids = taken.get(sl.col);
      const { records, sent, local } = sliceToSend(sl, ids, dryRun);
      for (const p of local) addProblem(R, p);
      R.done += local.length;
      renderProgress(R);
      if (!records.length) continue;
      const answer = await sendSlice(sl.col, records, dryRun, R);
      if (!answer) break; // R.stopped says why
      R.created += answer.created || 0;
      R.updated += answer.updated || 0;
      R.unchanged += answer.unchanged || 0;
      const refused = new Set();
      for (const p of answer.problems || []) {
        refused.add(p.index);
        addProblem(R, { ...p, col: p.col || sl.col, index: sent[p.index]?.index ?? p.index });
      }
      // The records the server did not refuse take their ids.
      sent.forEach((it, k) => { if (it.id !== null && !refused.has(k)) ids.set(it.id, it.index); });
      R.done += records.length;
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
async function sendSlice(col, records, dryRun, R) {
  const q = `?collection=${encodeURIComponent(col)}${dryRun ? '&dry_run=1' : ''}`;
  for (let attempt = 0; ; attempt++) {
    try {
      return await db.api('POST', `/v1/admin/import${q}`, records);
    } catch (e) {
      const retry = ['network', 'timeout', 'unavailable', 'rate_limited'].includes(e.code) && attempt < RETRIES && !S.stopAsked;
      if (retry) {
        $('#progress-text').textContent = `${errorText(e)} Trying again…`;
        await new Promise((r) => setTimeout(r, 1000 * 2 ** attempt));
        continue;
      }
      R.stopped = e.code === 'forbidden' ? 'Only an admin can import.'
        : e.code === 'unauthorized' ? 'Your session ended. Sign in again and run the import again.'
          : e.code === 'bad_request' ? `The server refused a slice of ${col}: ${e.message}`
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
