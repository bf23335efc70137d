// The studio dashboard (/studio/): creators (`users`) and jobs, live.
//
// - Data comes through data.js: live from the server, else the browser's
//   saved copy (with its age; out of date after 5 minutes), else the static
//   snapshot the server publishes (--snapshot-dir). Every change fires
//   `usersDataChanged` / `jobsDataChanged` on `document` (see data.js).
// - Search and filters (creators: status, skill, city; jobs: status,
//   client, assignee), counts by status, sortable columns.
// - Admins add and edit creators and jobs; staff add and edit jobs only (the
//   server's rules say the same; a 403 is explained, not thrown). Edits
//   send only the fields changed, with the version they started from: a
//   save over someone else's newer change is refused and shown.
// - Assigning: an open job and an active creator -> db.call('assign_job').
// - Offline: the page's files are kept by sw.js, so a reload without the
//   server opens the page with the saved copy.
//
// window.studio = {db, data} for the browser tests and devtools.
import { h, $, $$, flash, moneyShort, day, when, ago, plural, ICON, toast, bindConnection, errorText, fieldErrors, keepOffline, savedAccount, openFor } from '../client/ui.js';
import {
  CFG, getDb, probe, pageHref, wireLogin, showLogin, canWrite, canAssign, isAdmin, ROLES,
  USER_STATUS, JOB_STATUS, statusBadge, fillIcons,
} from './common.js';
import { StudioData, COLLECTIONS, FRESH_MS } from './data.js';

const db = getDb();
const data = new StudioData(db, { snapshotUrl: CFG.snapshot });
window.studio = { db, data };

const PAGE = 100; // rows shown at a time (Show more adds as many again)
const ACTIVE_JOB = new Set(['assigned', 'in_progress']);

const S = {
  account: null,
  mode: null,            // 'session' (signed in) | 'snapshot' (no session, server down)
  view: 'users',
  f: {
    users: { q: '', status: '', skill: '', city: '', sort: 'name', dir: 1, limit: PAGE },
    jobs: { q: '', status: '', client: '', assignee: '', sort: 'due', dir: 1, limit: PAGE },
  },
  flash: { users: new Set(), jobs: new Set() }, // ids changed live, to highlight at the next render
  rows: { users: new Map(), jobs: new Map() },  // id -> {tr, key}
  renderQueued: false,
  editing: null,         // {col, id, version, doc} of the open form
  assign: null,          // {job, user} chosen in the assign dialog
  serverUp: null,        // snapshot mode: is the server back?
};

boot();

async function boot() {
  buildSheets();
  keepOffline('sw.js');
  fillIcons(ICON);
  $('#logout').innerHTML = ICON.logout;
  $('#test-link').innerHTML = ICON.flask;
  $('#test-link').href = pageHref('test.html');
  $('#tab-migrate').href = pageHref('migrate.html');
  for (const b of $$('.sheet-x')) b.innerHTML = ICON.close;
  $('#add-user').replaceChildren(h('span', { class: 'ico', html: ICON.plus }), 'Add creator');
  $('#add-job').replaceChildren(h('span', { class: 'ico', html: ICON.plus }), 'Add job');
  $('#assign-job').replaceChildren(h('span', { class: 'ico', html: ICON.link }), 'Assign a job');
  wireStatic();
  wireLogin(db, (account) => start(account));
  db.on('auth', () => signedOut('Your session has ended. Please sign in again.'));
  const account = await savedAccount(db);
  if (account) {
    $('#boot').hidden = true;
    start(account);
    return;
  }
  // No session: sign in when the server is there; else its snapshot.
  const p = await probe();
  $('#boot').hidden = true;
  if (p.ok) showLogin();
  else startSnapshotOnly();
}

// A <dialog class="sheet" data-title data-submit> in the page holds only
// what is particular to it; this gives it what every sheet has: its form
// (#user-dialog: #user-form), a head with the title (#user-dialog-title)
// and a close button, then the page's part, then a foot with Cancel and the
// submit button ([data-save], or the id in data-submit-id).
function buildSheets() {
  for (const d of $$('dialog.sheet[data-title]')) {
    const titleId = `${d.id}-title`;
    d.setAttribute('aria-labelledby', titleId);
    const submit = d.dataset.submitId ? { id: d.dataset.submitId } : { 'data-save': true };
    d.replaceChildren(h('form', { id: d.id.replace(/-dialog$/, '-form'), method: 'dialog', novalidate: true },
      h('div', { class: 'sheet-head' },
        h('h2', { id: titleId }, d.dataset.title),
        h('button', { class: 'icon-btn sheet-x', type: 'button', 'data-close': true, 'aria-label': 'Close' })),
      h('div', { class: 'sheet-body' }, ...d.childNodes),
      h('div', { class: 'sheet-foot' },
        h('button', { class: 'btn', type: 'button', 'data-close': true }, 'Cancel'),
        h('button', { class: 'btn btn-primary', type: 'submit', ...submit }, d.dataset.submit))));
  }
}

// ------------------------------------------------------------ sessions

function start(account) {
  S.account = account;
  S.mode = 'session';
  $('#login').hidden = true;
  if (!openFor(account, ROLES.has(account.role))) return;
  $('#signin').hidden = true;
  $('#logout').hidden = false;
  renderWho();
  applyRole();
  wireData();
  if (!S.connWired) { // once a page, though a session that ended may sign in again
    S.connWired = true;
    bindConnection(db, $('#conn'), onState);
  }
  data.start(account);
  route();
  renderSource();
}

// No session and no server: the published snapshot, read-only; the page
// keeps asking the server and offers to sign in once it is back.
function startSnapshotOnly() {
  S.mode = 'snapshot';
  S.account = null;
  $('#app').hidden = false;
  $('#who-name').textContent = 'Not signed in';
  $('#who-role').textContent = 'read-only';
  $('#logout').hidden = true;
  $('#signin').hidden = false;
  $('#conn').dataset.state = 'offline';
  $('#conn').textContent = 'Offline';
  applyRole();
  wireData();
  const check = async () => {
    if (S.mode !== 'snapshot') return;
    const p = await probe();
    if (S.mode !== 'snapshot') return;
    if (p.ok !== S.serverUp) {
      S.serverUp = p.ok;
      $('#conn').dataset.state = p.ok ? 'connecting' : 'offline';
      $('#conn').textContent = p.ok ? 'Server is back' : 'Offline';
      renderSource();
    }
  };
  S.probeTimer = setInterval(check, 10_000);
  data.startSnapshotOnly();
  route();
  renderSource();
}

function wireData() {
  if (S.dataWired) return;
  S.dataWired = true;
  data.on('change', onData);
  data.on('error', ({ col, error }) => {
    if (error.code === 'forbidden') toast(`Your role cannot read ${col === 'users' ? 'creators' : 'jobs'}.`, { kind: 'error', key: `read-${col}` });
  });
  data.on('snapshot', () => renderSource());
  setInterval(renderSource, 15_000); // the ages shown
}

function signInFromSnapshot() {
  clearInterval(S.probeTimer);
  data.clear();
  resetView();
  S.mode = null;
  showLogin();
}

async function logout() {
  data.stop();
  try { await db.logout(); } catch { /* gone anyway */ }
  location.hash = '';
  location.reload();
}

function signedOut(message) {
  if (S.mode !== 'session') return;
  closeDialogs();
  data.clear();
  resetView();
  S.account = null;
  S.mode = null;
  showLogin(message);
}

function resetView() {
  for (const col of COLLECTIONS) {
    S.rows[col].clear();
    $(`#${col}-body`).replaceChildren();
  }
  $('#app').hidden = true;
}

// The account's role can change while the page is open (the server ends
// the connection and the SDK asks again): what it may do follows.
function onState(state) {
  if (S.mode === 'session' && db.account && S.account && db.account.role !== S.account.role) {
    S.account = db.account;
    renderWho();
    applyRole();
    scheduleRender();
    toast(`Your role is now ${S.account.role}.`, { kind: 'info', key: 'role' });
  }
  renderSource(state);
}

function renderWho() {
  $('#who-name').textContent = S.account.name || S.account.email;
  $('#who-role').textContent = S.account.role === 'admin' ? 'Admin' : 'Staff';
}

function applyRole() {
  const a = S.account;
  $('#add-user').hidden = !canWrite(a, 'users');
  $('#add-job').hidden = !canWrite(a, 'jobs');
  $('#assign-job').hidden = !canAssign(a);
  $('#tab-migrate').hidden = !isAdmin(a);
  document.body.dataset.role = a?.role || 'none';
}

// ------------------------------------------------------------ static wiring

function wireStatic() {
  $('#logout').addEventListener('click', logout);
  $('#fb-logout').addEventListener('click', logout);
  $('#signin').addEventListener('click', signInFromSnapshot);
  addEventListener('hashchange', route);
  for (const col of COLLECTIONS) {
    const f = S.f[col];
    $(`#${col}-q`).addEventListener('input', (e) => { f.q = e.target.value.trim().toLowerCase(); f.limit = PAGE; scheduleRender(); });
    const selects = col === 'users' ? ['skill', 'city'] : ['client', 'assignee'];
    for (const k of selects) {
      $(`#${col}-${k}`).addEventListener('change', (e) => { f[k] = e.target.value; f.limit = PAGE; scheduleRender(); });
    }
    $(`#${col}-clear`).addEventListener('click', () => {
      f.q = f.status = '';
      for (const k of selects) f[k] = '';
      $(`#${col}-q`).value = '';
      for (const k of selects) $(`#${col}-${k}`).value = '';
      f.limit = PAGE;
      scheduleRender();
    });
    $(`#${col}-status`).addEventListener('click', (e) => {
      const chip = e.target.closest('.chip');
      if (!chip) return;
      f.status = chip.dataset.status;
      f.limit = PAGE;
      scheduleRender();
    });
    // Sortable columns: the header cells get a button each.
    for (const th of $$(`#${col}-table th[data-sort]`)) {
      const b = h('button', { type: 'button', class: 'sort' }, th.textContent, h('span', { class: 'sort-ind', 'aria-hidden': 'true' }));
      th.replaceChildren(b);
      b.addEventListener('click', () => {
        const key = th.dataset.sort;
        if (f.sort === key) f.dir = -f.dir;
        else { f.sort = key; f.dir = 1; }
        scheduleRender();
      });
    }
    $(`#${col}-foot`).addEventListener('click', (e) => {
      if (e.target.closest('.more')) { f.limit += PAGE; scheduleRender(); }
    });
    $(`#${col}-body`).addEventListener('click', (e) => onRowClick(col, e));
  }
  $('#add-user').addEventListener('click', () => openEditor('users', null));
  $('#add-job').addEventListener('click', () => openEditor('jobs', null));
  $('#assign-job').addEventListener('click', () => openAssign(null));
  for (const d of $$('dialog')) {
    d.addEventListener('click', (e) => {
      if (e.target.closest('[data-close]') || e.target === d) d.close();
    });
    d.addEventListener('close', () => { if (d.id !== 'assign-dialog') S.editing = null; else S.assign = null; });
  }
  $('#user-form').addEventListener('submit', (e) => { e.preventDefault(); saveEditor('users'); });
  $('#job-form').addEventListener('submit', (e) => { e.preventDefault(); saveEditor('jobs'); });
  $('#job-form [name=status]').addEventListener('change', () => renderAssigneeLine());
  $('#assign-form').addEventListener('submit', (e) => { e.preventDefault(); submitAssign(); });
  $('#assign-job-q').addEventListener('input', () => renderAssign());
  $('#assign-user-q').addEventListener('input', () => renderAssign());
  $('#assign-job-select').addEventListener('change', (e) => { S.assign.job = e.target.value; renderAssign(); });
  $('#assign-user-select').addEventListener('change', (e) => { S.assign.user = e.target.value; renderAssign(); });
}

function route() {
  const v = (location.hash || '#users').slice(1);
  S.view = v === 'jobs' ? 'jobs' : 'users';
  for (const name of COLLECTIONS) {
    $(`#view-${name}`).hidden = name !== S.view;
    const tab = $(`#tab-${name}`);
    if (name === S.view) tab.setAttribute('aria-current', 'page'); else tab.removeAttribute('aria-current');
  }
  document.title = `${S.view === 'jobs' ? 'Jobs' : 'Creators'} · Studio`;
  scheduleRender();
}

// ------------------------------------------------------------ data in

function onData({ col, changes, source }) {
  // Changes that arrive live are highlighted; a first load or a switch of
  // source is not (everything would flash).
  if (source === 'live' && data.c[col].events > 1 && changes.length && changes.length < 50) {
    for (const ch of changes) if (ch.op !== 'removed') S.flash[col].add(ch.id);
  }
  scheduleRender();
  if (S.editing?.col === col) noteEditedElsewhere(changes);
  if (S.assign) scheduleAssignRender();
  renderSource();
}

function scheduleRender() {
  if (S.renderQueued) return;
  S.renderQueued = true;
  requestAnimationFrame(() => {
    S.renderQueued = false;
    render();
  });
}

function render() {
  renderUsers();
  renderJobs();
  $('#tab-users-count').textContent = data.docs('users').size ? data.docs('users').size.toLocaleString('en-US') : '';
  $('#tab-jobs-count').textContent = data.docs('jobs').size ? data.docs('jobs').size.toLocaleString('en-US') : '';
  renderDatalists();
}

// ------------------------------------------------------------ where the data is from

function agoText(at) {
  const a = ago(at);
  return a === 'just now' ? 'a moment ago' : a;
}

function renderSource(state = db.state) {
  const pill = $('#source');
  const box = $('#notice');
  const infos = COLLECTIONS.map((c) => data.info(c));
  const sources = infos.map((i) => i.source);
  const body = document.body;
  let kind = null;
  let pillText = '';
  let text = [];
  if (S.mode === 'session' && sources.every((s) => s === 'live')) {
    kind = 'live';
  } else if (sources.every((s) => s === null)) {
    if (S.mode === 'session' && (state === 'connecting' || state === 'live')) {
      kind = 'loading';
    } else if (S.mode === 'snapshot' && data.snapshotLoading) {
      kind = 'loading';
    } else if (S.mode) {
      kind = 'none';
      text = [h('strong', {}, 'Nothing to show yet. '),
        S.mode === 'snapshot'
          ? 'The server cannot be reached, you are not signed in, and no snapshot could be loaded'
          : 'The server cannot be reached and this browser has no saved copy; no snapshot could be loaded either',
        data.snapshotError ? ` (${data.snapshotError}).` : '.',
        ' This page tries again by itself.'];
    }
  } else {
    const snapInfo = infos.find((i) => i.source === 'snapshot');
    const info = snapInfo || infos.filter((i) => i.source === 'cache')
      .reduce((a, b) => (a === null || (b.at ?? 0) < (a.at ?? 0) ? b : a), null) || infos[0];
    const fresh = info.at !== null && Date.now() - info.at <= FRESH_MS;
    const age = info.at !== null ? agoText(info.at) : null;
    const clock = info.at !== null ? ` (${when(info.at)})` : '';
    const down = S.mode === 'snapshot' ? (S.serverUp ? 'The server is back.' : 'The server cannot be reached.')
      : state === 'connecting' ? 'Connecting…'
        : state === 'reconnecting' ? 'The connection was lost; reconnecting…' : 'The server cannot be reached.';
    if (info.source === 'snapshot') {
      kind = fresh ? 'snapshot' : 'old';
      pillText = fresh ? `Snapshot from ${age}` : `Out of date: snapshot from ${age ?? 'an unknown time'}`;
      text = [h('strong', {}, down + ' '),
        S.mode === 'snapshot' ? 'Showing the published snapshot' : 'This browser has no newer saved copy; showing the published snapshot',
        age ? ` from ${age}${clock}` : '', '.',
        fresh ? '' : ' It is out of date.',
        S.mode === 'snapshot' ? ' Read-only until you sign in.' : ' Changes made since then are not shown.'];
    } else {
      kind = fresh ? 'cache' : 'old';
      pillText = age === null ? 'Saved copy' : fresh ? `Saved copy from ${age}` : `Out of date: saved ${age}`;
      text = [h('strong', {}, down + ' '),
        age ? `Showing the saved copy from ${age}${clock}` : 'Showing the saved copy',
        fresh ? '; changes made since then are not shown.' : '. It is out of date: more than 5 minutes old.',
        ' The page updates by itself when the connection is back.'];
    }
  }
  body.dataset.source = kind || 'none';
  const stale = !['live', 'loading', null].includes(kind);
  body.classList.toggle('is-stale', stale);
  pill.hidden = !pillText;
  pill.dataset.kind = kind || '';
  if (pillText) pill.replaceChildren(h('span', { class: 'ico', html: ICON.clock }), pillText);
  box.hidden = !text.length;
  box.className = `banner ${kind === 'old' || kind === 'none' ? 'banner-danger' : 'banner-warn'}`;
  if (text.length) {
    const kids = [h('span', { class: 'ico', html: ICON.cloudOff }), h('span', { class: 'notice-text' }, ...text)];
    if (S.mode === 'snapshot' && S.serverUp) {
      kids.push(h('button', { class: 'btn btn-sm btn-primary', type: 'button', onclick: signInFromSnapshot }, 'Sign in'));
    } else if (S.mode === 'session' && state !== 'live') {
      kids.push(h('button', { class: 'btn btn-sm', type: 'button', onclick: () => db.resync() }, 'Try now'));
    }
    box.replaceChildren(...kids);
  }
}

// ------------------------------------------------------------ creators

function jobLoad() {
  // user id -> number of jobs assigned to them and not yet done
  const n = new Map();
  for (const j of data.docs('jobs').values()) {
    if (j.assigned_to && ACTIVE_JOB.has(j.status)) n.set(j.assigned_to, (n.get(j.assigned_to) || 0) + 1);
  }
  return n;
}

const skillsOf = (u) => (Array.isArray(u.skills) ? u.skills.filter((s) => typeof s === 'string') : []);
const str = (v) => (typeof v === 'string' ? v : v == null ? '' : String(v));

function userMatches(u, f, ignoreStatus = false) {
  if (!ignoreStatus && f.status && u.status !== f.status) return false;
  if (f.skill && !skillsOf(u).includes(f.skill)) return false;
  if (f.city && str(u.city) !== f.city) return false;
  if (f.q) {
    const hay = `${str(u.name)} ${str(u.email)} ${str(u.city)} ${skillsOf(u).join(' ')} ${u.id}`.toLowerCase();
    if (!f.q.split(/\s+/).every((w) => hay.includes(w))) return false;
  }
  return true;
}

function compare(a, b) {
  if (a == null || a === '') return b == null || b === '' ? 0 : 1; // blanks last
  if (b == null || b === '') return -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b), 'en', { sensitivity: 'base', numeric: true });
}

function renderUsers() {
  const f = S.f.users;
  const load = jobLoad();
  const all = data.list('users');
  const base = all.filter((u) => userMatches(u, f, true));
  renderChips('users', base, USER_STATUS);
  const rows = base.filter((u) => !f.status || u.status === f.status);
  const key = f.sort === 'jobs' ? (u) => load.get(u.id) || 0 : (u) => u[f.sort];
  rows.sort((a, b) => f.dir * compare(key(a), key(b)) || compare(a.name, b.name) || (a.id < b.id ? -1 : 1));
  const canEdit = canWrite(S.account, 'users');
  const shown = rows.slice(0, f.limit);
  const trs = shown.map((u) => userRow(u, load.get(u.id) || 0, canEdit));
  putRows('users', trs, rows.length, all.length, 'creator');
  renderFilterOptions('users', all);
  const filtered = !!(f.q || f.status || f.skill || f.city);
  $('#users-clear').hidden = !filtered;
  const active = all.filter((u) => u.status === 'active').length;
  $('#users-sub').textContent = all.length
    ? `${plural(all.length, 'creator')}, ${active.toLocaleString('en-US')} active. Updates by itself.`
    : 'Everyone who can take a job.';
  sortIndicators('users');
}

function userRow(u, jobs, canEdit) {
  const key = `${u.version}|${u.updated_at}|${jobs}|${canEdit}`;
  const had = S.rows.users.get(u.id);
  if (had && had.key === key && had.doc === u) return had.tr;
  const skills = skillsOf(u);
  const tr = h('tr', { dataset: { id: u.id, status: u.status || 'none' } },
    h('td', { class: 'c-name' },
      h('div', { class: 'cell-main' },
        h('span', { class: 'avatar', 'aria-hidden': 'true' }, initials(u.name)),
        h('div', { class: 'cell-text' },
          h('strong', { class: 'u-name' }, str(u.name) || '(no name)'),
          u.email ? h('span', { class: 'sub' }, str(u.email)) : h('span', { class: 'sub mono' }, u.id)))),
    h('td', { class: 'c-skills' }, skills.length
      ? h('ul', { class: 'tags', 'aria-label': 'Skills' }, skills.slice(0, 4).map((s) => h('li', {}, s)),
        skills.length > 4 ? h('li', { class: 'more-tags' }, `+${skills.length - 4}`) : null)
      : h('span', { class: 'dim' }, '—')),
    h('td', { class: 'c-city' }, u.city ? str(u.city) : h('span', { class: 'dim' }, '—')),
    h('td', { class: 'c-num' }, Number.isInteger(u.day_rate_cents) ? h('span', {}, moneyShort(u.day_rate_cents), h('small', { class: 'dim' }, '/day')) : h('span', { class: 'dim' }, '—')),
    h('td', { class: 'c-num c-jobs' }, jobs ? h('span', { class: 'load', title: `${jobs} job${jobs === 1 ? '' : 's'} assigned or in progress` }, String(jobs)) : h('span', { class: 'dim' }, '0')),
    h('td', { class: 'c-status' }, statusBadge('users', u.status)),
    // One line of the above for narrow screens, where the table is cards.
    h('td', { class: 'c-meta' }, [u.city ? str(u.city) : null,
      Number.isInteger(u.day_rate_cents) ? `${moneyShort(u.day_rate_cents)}/day` : null,
      jobs ? plural(jobs, 'job') : null].filter(Boolean).join(' · ')),
    h('td', { class: 'c-act' }, canEdit
      ? h('button', { class: 'btn btn-sm btn-ghost edit', type: 'button', 'aria-label': `Edit ${str(u.name)}`, html: ICON.edit })
      : null));
  S.rows.users.set(u.id, { tr, key, doc: u });
  return tr;
}

function initials(name) {
  const parts = str(name).trim().split(/\s+/).filter(Boolean);
  return ((parts[0]?.[0] || '?') + (parts.length > 1 ? parts[parts.length - 1][0] : '')).toUpperCase();
}

// ------------------------------------------------------------ jobs

function jobMatches(j, f, users, ignoreStatus = false) {
  if (!ignoreStatus && f.status && j.status !== f.status) return false;
  if (f.client && str(j.client) !== f.client) return false;
  if (f.assignee === '-') { if (j.assigned_to) return false; } else if (f.assignee && j.assigned_to !== f.assignee) return false;
  if (f.q) {
    const who = j.assigned_to ? str(users.get(j.assigned_to)?.name) : '';
    const hay = `${str(j.title)} ${str(j.client)} ${j.id} ${who}`.toLowerCase();
    if (!f.q.split(/\s+/).every((w) => hay.includes(w))) return false;
  }
  return true;
}

function renderJobs() {
  const f = S.f.jobs;
  const users = data.docs('users');
  const all = data.list('jobs');
  const base = all.filter((j) => jobMatches(j, f, users, true));
  renderChips('jobs', base, JOB_STATUS);
  const rows = base.filter((j) => !f.status || j.status === f.status);
  const key = f.sort === 'assignee' ? (j) => (j.assigned_to ? str(users.get(j.assigned_to)?.name) || j.assigned_to : null) : (j) => j[f.sort];
  rows.sort((a, b) => f.dir * compare(key(a), key(b)) || compare(a.title, b.title) || (a.id < b.id ? -1 : 1));
  const canEdit = canWrite(S.account, 'jobs');
  const assign = canAssign(S.account);
  const today = new Date().toISOString().slice(0, 10);
  const trs = rows.slice(0, f.limit).map((j) => jobRow(j, users, canEdit, assign, today));
  putRows('jobs', trs, rows.length, all.length, 'job');
  renderFilterOptions('jobs', all);
  $('#jobs-clear').hidden = !(f.q || f.status || f.client || f.assignee);
  const open = all.filter((j) => j.status === 'open').length;
  $('#jobs-sub').textContent = all.length
    ? `${plural(all.length, 'job')}, ${open.toLocaleString('en-US')} open. Updates by itself.`
    : 'Every production, from open to done.';
  sortIndicators('jobs');
}

function jobRow(j, users, canEdit, assign, today) {
  const who = j.assigned_to ? users.get(j.assigned_to) : null;
  const key = `${j.version}|${j.updated_at}|${who ? `${who.version}|${who.name}` : '-'}|${canEdit}|${assign}|${today}`;
  const had = S.rows.jobs.get(j.id);
  if (had && had.key === key && had.doc === j) return had.tr;
  const late = typeof j.due === 'string' && j.due < today && ['open', 'assigned', 'in_progress'].includes(j.status);
  const tr = h('tr', { dataset: { id: j.id, status: j.status || 'none' } },
    h('td', { class: 'c-name' },
      h('div', { class: 'cell-text' },
        h('strong', { class: 'j-title' }, str(j.title) || '(no title)'),
        h('span', { class: 'sub mono' }, j.id))),
    h('td', { class: 'c-client' }, j.client ? str(j.client) : h('span', { class: 'dim' }, '—')),
    h('td', { class: 'c-assignee' }, j.assigned_to
      ? (who ? h('span', { class: 'assignee' }, h('span', { class: 'avatar avatar-sm', 'aria-hidden': 'true' }, initials(who.name)), str(who.name))
        : h('span', { class: 'dim mono', title: 'No creator with this id' }, j.assigned_to))
      : h('span', { class: 'dim' }, 'Unassigned')),
    h('td', { class: 'c-due' }, j.due ? h('span', { class: late ? 'late' : '', title: late ? 'Past due' : null }, day(str(j.due))) : h('span', { class: 'dim' }, '—')),
    h('td', { class: 'c-num' }, Number.isInteger(j.budget_cents) ? moneyShort(j.budget_cents) : h('span', { class: 'dim' }, '—')),
    h('td', { class: 'c-status' }, statusBadge('jobs', j.status)),
    h('td', { class: 'c-meta' }, [j.client ? str(j.client) : null,
      j.due ? `due ${day(str(j.due))}${late ? ' (late)' : ''}` : null,
      Number.isInteger(j.budget_cents) ? moneyShort(j.budget_cents) : null].filter(Boolean).join(' · ')),
    h('td', { class: 'c-act' },
      assign && j.status === 'open' ? h('button', { class: 'btn btn-sm assign', type: 'button', 'aria-label': `Assign ${str(j.title)}` }, 'Assign') : null,
      canEdit ? h('button', { class: 'btn btn-sm btn-ghost edit', type: 'button', 'aria-label': `Edit ${str(j.title)}`, html: ICON.edit }) : null));
  S.rows.jobs.set(j.id, { tr, key, doc: j });
  return tr;
}

// ------------------------------------------------------------ tables, chips, filters

function putRows(col, trs, matching, total, noun) {
  const body = $(`#${col}-body`);
  const same = body.children.length === trs.length && trs.every((tr, i) => body.children[i] === tr);
  if (!same) body.replaceChildren(...trs);
  // Rows no longer shown are forgotten (their docs may be gone).
  const shown = new Set(trs.map((tr) => tr.dataset.id));
  for (const id of S.rows[col].keys()) if (!shown.has(id)) S.rows[col].delete(id);
  for (const id of S.flash[col]) flash(S.rows[col].get(id)?.tr);
  S.flash[col].clear();
  const empty = $(`#${col}-empty`);
  empty.hidden = trs.length > 0;
  if (!trs.length) {
    const info = data.info(col);
    empty.textContent = info.error ? `Your role cannot read these (${errorText(info.error)})`
      : total ? `No ${noun}s match. Try other filters.`
        : info.source ? `No ${noun}s yet.` : 'Loading…';
  }
  const foot = $(`#${col}-foot`);
  if (matching > trs.length) {
    foot.replaceChildren(h('span', {}, `Showing ${trs.length.toLocaleString('en-US')} of ${matching.toLocaleString('en-US')}`),
      h('button', { class: 'btn btn-sm more', type: 'button' }, `Show ${Math.min(PAGE, matching - trs.length)} more`));
  } else {
    foot.replaceChildren(matching ? h('span', {}, matching === total ? `All ${plural(total, noun)}` : `${plural(matching, noun)} of ${total.toLocaleString('en-US')}`) : '');
  }
  foot.hidden = !matching;
}

function renderChips(col, base, names) {
  const f = S.f[col];
  const counts = new Map();
  for (const d of base) counts.set(d.status, (counts.get(d.status) || 0) + 1);
  const chips = [['', 'All', base.length]];
  for (const [s, label] of Object.entries(names)) chips.push([s, label, counts.get(s) || 0]);
  for (const [s, n] of counts) if (!(s in names)) chips.push([s ?? '', s ? String(s) : 'No status', n]);
  const box = $(`#${col}-status`);
  const html = chips.map(([s, label, n]) => `${s}:${label}:${n}:${f.status === s}`).join('|');
  if (box.dataset.sig === html) return;
  box.dataset.sig = html;
  box.replaceChildren(...chips.map(([s, label, n]) => h('button', {
    class: 'chip', type: 'button', 'aria-pressed': String(f.status === s), dataset: { status: s ?? '' },
  }, s ? h('span', { class: 'dot', dataset: { status: s } }) : null, label, h('span', { class: 'count' }, n.toLocaleString('en-US')))));
}

function renderFilterOptions(col, all) {
  if (col === 'users') {
    const skills = new Set(), cities = new Set();
    for (const u of all) {
      for (const s of skillsOf(u)) skills.add(s);
      if (typeof u.city === 'string' && u.city) cities.add(u.city);
    }
    setOptions($('#users-skill'), 'Any skill', [...skills].sort().map((s) => [s, s]));
    setOptions($('#users-city'), 'Any city', [...cities].sort().map((s) => [s, s]));
  } else {
    const clients = new Set(), assignees = new Set();
    for (const j of all) {
      if (typeof j.client === 'string' && j.client) clients.add(j.client);
      if (j.assigned_to) assignees.add(j.assigned_to);
    }
    const users = data.docs('users');
    setOptions($('#jobs-client'), 'Any client', [...clients].sort().map((s) => [s, s]));
    const people = [...assignees].map((id) => [id, users.get(id) ? str(users.get(id).name) : id])
      .sort((a, b) => compare(a[1], b[1]));
    setOptions($('#jobs-assignee'), 'Anyone', [['-', 'Unassigned'], ...people]);
  }
}

// Replaces a select's options when they differ, keeping its value.
function setOptions(sel, first, pairs) {
  const sig = pairs.map((p) => p.join('\u0001')).join('\u0002');
  if (sel.dataset.sig === sig) return;
  sel.dataset.sig = sig;
  const value = sel.value;
  sel.replaceChildren(h('option', { value: '' }, first), ...pairs.map(([v, t]) => h('option', { value: v }, t)));
  if (value && !pairs.some(([v]) => v === value)) sel.append(h('option', { value }, value));
  sel.value = value;
}

function sortIndicators(col) {
  const f = S.f[col];
  for (const th of $$(`#${col}-table th[data-sort]`)) {
    if (th.dataset.sort === f.sort) th.setAttribute('aria-sort', f.dir > 0 ? 'ascending' : 'descending');
    else th.removeAttribute('aria-sort');
  }
}

function renderDatalists() {
  const skills = new Set(), cities = new Set(), clients = new Set();
  for (const u of data.list('users')) {
    for (const s of skillsOf(u)) skills.add(s);
    if (typeof u.city === 'string' && u.city) cities.add(u.city);
  }
  for (const j of data.list('jobs')) if (typeof j.client === 'string' && j.client) clients.add(j.client);
  for (const [id, set] of [['#skill-list', skills], ['#city-list', cities], ['#client-list', clients]]) {
    const el = $(id);
    const sig = [...set].sort().join('|');
    if (el.dataset.sig === sig) continue;
    el.dataset.sig = sig;
    el.replaceChildren(...[...set].sort().map((v) => h('option', { value: v })));
  }
}

function onRowClick(col, e) {
  const tr = e.target.closest('tr[data-id]');
  if (!tr) return;
  const doc = data.docs(col).get(tr.dataset.id);
  if (!doc) return;
  if (e.target.closest('.edit')) openEditor(col, doc);
  else if (e.target.closest('.assign')) openAssign(doc.id);
}

// ------------------------------------------------------------ add and edit

const FORM = { users: '#user-form', jobs: '#job-form' };
const NOUN = { users: 'creator', jobs: 'job' };

function openEditor(col, doc) {
  if (S.mode !== 'session' || !canWrite(S.account, col)) {
    toast(col === 'users' ? 'Only admins can add or change creators.' : 'Your role cannot change jobs.', { kind: 'error' });
    return;
  }
  const form = $(FORM[col]);
  const dlg = form.closest('dialog');
  form.reset();
  clearFormErrors(form);
  S.editing = { col, id: doc?.id ?? null, version: doc?.version ?? null, doc };
  $(`#${col === 'users' ? 'user' : 'job'}-dialog-title`).textContent = doc ? `Edit ${NOUN[col]}` : `New ${NOUN[col]}`;
  fillForm(col, form, doc);
  form.querySelector('[data-save]').textContent = doc ? 'Save changes' : `Add ${NOUN[col]}`;
  form.querySelector('[data-save]').disabled = false;
  if (!dlg.open) dlg.showModal();
  form.querySelector('input').focus();
}

function fillForm(col, form, doc) {
  const el = form.elements;
  if (col === 'users') {
    el.name.value = str(doc?.name);
    el.email.value = str(doc?.email);
    el.skills.value = doc ? skillsOf(doc).join(', ') : '';
    el.city.value = str(doc?.city);
    el.day_rate.value = Number.isInteger(doc?.day_rate_cents) ? String(doc.day_rate_cents / 100) : '';
    el.status.value = doc?.status === 'inactive' ? 'inactive' : 'active';
  } else {
    el.title.value = str(doc?.title);
    el.client.value = str(doc?.client);
    el.due.value = /^\d{4}-\d{2}-\d{2}$/.test(doc?.due || '') ? doc.due : '';
    el.budget.value = Number.isInteger(doc?.budget_cents) ? String(doc.budget_cents / 100) : '';
    el.status.value = doc?.status && doc.status in JOB_STATUS ? doc.status : 'open';
  }
  const meta = form.querySelector('[data-meta]');
  meta.textContent = doc ? `${doc.id} · version ${doc.version ?? '?'}${doc.updated_at ? ` · changed ${when(doc.updated_at)}` : ''}` : '';
  if (col === 'jobs') renderAssigneeLine();
}

function renderAssigneeLine() {
  const line = $('#job-form [data-assignee]');
  const doc = S.editing?.doc;
  const status = $('#job-form [name=status]').value;
  if (!doc?.assigned_to && status === 'open') {
    line.hidden = !doc;
    line.replaceChildren(doc ? h('span', { class: 'muted' }, 'Not assigned yet. Use ', h('strong', {}, 'Assign'), ' to give it to a creator.') : '');
    return;
  }
  line.hidden = false;
  if (!doc?.assigned_to) {
    line.replaceChildren(h('span', { class: 'warn-text' }, 'A job that is not open needs a creator: save it as open and use Assign.'));
    return;
  }
  const who = data.docs('users').get(doc.assigned_to);
  line.replaceChildren('Assigned to ', h('strong', {}, who ? str(who.name) : doc.assigned_to),
    status === 'open' ? h('span', { class: 'warn-text' }, '. Saving as open takes the job back from them.') : '.');
}

function clearFormErrors(form) {
  for (const e of form.querySelectorAll('.field-error')) e.textContent = '';
  for (const e of form.querySelectorAll('[aria-invalid]')) e.removeAttribute('aria-invalid');
  const top = form.querySelector('.form-error');
  top.hidden = true;
  top.replaceChildren();
}

function showFormError(form, message, fields = new Map()) {
  const top = form.querySelector('.form-error');
  const FIELD_INPUT = { day_rate_cents: 'day_rate', budget_cents: 'budget' };
  let shown = 0;
  for (const [field, reason] of fields) {
    const slot = form.querySelector(`.field-error[data-for="${field}"]`);
    if (!slot) continue;
    slot.textContent = reason;
    const input = form.elements[FIELD_INPUT[field] || field];
    if (input) input.setAttribute('aria-invalid', 'true');
    shown++;
  }
  const rest = [...fields].filter(([field]) => !form.querySelector(`.field-error[data-for="${field}"]`));
  if (message || rest.length) {
    top.hidden = false;
    top.replaceChildren(h('span', { class: 'ico', html: ICON.alert }),
      h('span', {}, message || 'Please check the form.', rest.map(([f, r]) => ` ${f}: ${r}.`)));
  }
  const first = form.querySelector('[aria-invalid="true"]');
  if (first) first.focus();
  else if (!shown) top.scrollIntoView({ block: 'nearest' });
}

// The form's values as a document (only the fields the form edits).
function readForm(col, form) {
  const el = form.elements;
  const errors = new Map();
  const dollars = (v, field) => {
    const t = v.trim().replace(/[$,\s]/g, '');
    if (!t) return null;
    const n = Number(t);
    if (!Number.isFinite(n) || n < 0) { errors.set(field, 'must be an amount of 0 or more'); return null; }
    return Math.round(n * 100);
  };
  let doc;
  if (col === 'users') {
    const skills = [...new Set(el.skills.value.split(',').map((s) => s.trim()).filter(Boolean))];
    doc = {
      name: el.name.value.trim(),
      email: el.email.value.trim() || null,
      skills,
      city: el.city.value.trim() || null,
      day_rate_cents: dollars(el.day_rate.value, 'day_rate_cents'),
      status: el.status.value,
    };
    if (!doc.name) errors.set('name', 'is required');
    if (doc.email && !el.email.checkValidity()) errors.set('email', 'is not an email address');
  } else {
    doc = {
      title: el.title.value.trim(),
      client: el.client.value.trim() || null,
      due: el.due.value || null,
      budget_cents: dollars(el.budget.value, 'budget_cents'),
      status: el.status.value,
    };
    if (!doc.title) errors.set('title', 'is required');
    const orig = S.editing?.doc;
    if (doc.status === 'open') {
      if (orig?.assigned_to) doc.assigned_to = null;
    } else if (!orig?.assigned_to && ['assigned', 'in_progress', 'completed'].includes(doc.status)) {
      errors.set('status', 'a job needs a creator first: save it as open, then use Assign');
    }
    if (!orig) doc.assigned_to = null;
  }
  return { doc, errors };
}

async function saveEditor(col) {
  const ed = S.editing;
  const form = $(FORM[col]);
  if (!ed || ed.col !== col) return;
  clearFormErrors(form);
  const { doc, errors } = readForm(col, form);
  if (errors.size) {
    showFormError(form, null, errors);
    return;
  }
  const btn = form.querySelector('[data-save]');
  btn.disabled = true;
  const label = btn.textContent;
  btn.textContent = 'Saving…';
  try {
    let saved;
    if (!ed.id) {
      saved = await db.api('POST', `/v1/c/${col}`, doc);
    } else {
      // Only what changed, and only over the version the form started from.
      const patch = {};
      for (const [k, v] of Object.entries(doc)) {
        if (JSON.stringify(ed.doc?.[k] ?? null) !== JSON.stringify(v ?? null)) patch[k] = v;
      }
      if (!Object.keys(patch).length) {
        form.closest('dialog').close();
        toast('Nothing changed.', { kind: 'info', ms: 2500 });
        return;
      }
      const r = await db.api('POST', '/v1/batch', { ops: [{ op: 'patch', col, id: ed.id, doc: patch, if_version: ed.version }] });
      saved = r.results[0];
    }
    form.closest('dialog').close();
    const name = col === 'users' ? saved.name : saved.title;
    toast(ed.id ? `“${name}” is saved.` : `“${name}” is added.`, { kind: 'ok', ms: 3500 });
    S.flash[col].add(saved.id);
    scheduleRender();
  } catch (err) {
    btn.disabled = false;
    btn.textContent = label;
    saveFailed(col, form, err);
  }
}

function saveFailed(col, form, err) {
  const noun = NOUN[col];
  switch (err.code) {
    case 'invalid':
      showFormError(form, `The ${noun} was not saved: some fields are not valid.`, fieldErrors(err));
      break;
    case 'precondition_failed': {
      // Someone saved this document after the form was opened.
      const now = data.docs(col).get(S.editing.id);
      if (now) {
        S.editing.version = now.version;
        S.editing.doc = now;
        fillForm(col, form, now);
      }
      showFormError(form, `Someone else changed this ${noun} while you were editing. The form now shows their version: make your change again and save.`);
      break;
    }
    case 'not_found':
      showFormError(form, `This ${noun} no longer exists: someone deleted it.`);
      break;
    case 'forbidden':
      showFormError(form, col === 'users'
        ? 'Not saved: only admins can add or change creators.'
        : 'Not saved: your role cannot change jobs.');
      // The role may have changed under the page: ask again.
      db.api('GET', '/v1/auth/me').then(({ account }) => {
        if (account && S.account && account.role !== S.account.role) {
          S.account = { ...S.account, ...account };
          renderWho();
          applyRole();
          scheduleRender();
        }
      }).catch(() => {});
      break;
    case 'conflict':
      showFormError(form, `A ${noun} with this id exists already.`);
      break;
    case 'network': case 'timeout':
      showFormError(form, `Not saved: ${errorText(err)} Your changes are still here; try again when the connection is back.`);
      break;
    default:
      showFormError(form, `Not saved: ${errorText(err)}`);
  }
}

// The document being edited changed under the form (someone else saved it).
function noteEditedElsewhere(changes) {
  const ed = S.editing;
  if (!ed?.id) return;
  const ch = changes.find((c) => c.id === ed.id);
  if (!ch) return;
  const form = $(FORM[ed.col]);
  const noun = NOUN[ed.col];
  if (ch.op === 'removed') showFormError(form, `Someone deleted this ${noun} while you were editing.`);
  else if (ch.doc?.version !== ed.version) {
    const top = form.querySelector('.form-error');
    top.hidden = false;
    top.className = 'banner banner-warn form-error';
    top.replaceChildren(h('span', { class: 'ico', html: ICON.info }),
      h('span', {}, `Someone else just changed this ${noun}. `),
      h('button', { class: 'btn btn-sm', type: 'button', onclick: () => { top.className = 'banner banner-danger form-error'; openEditor(ed.col, ch.doc); } }, 'Load their version'));
  }
}

function closeDialogs() {
  for (const d of $$('dialog')) if (d.open) d.close();
}

// ------------------------------------------------------------ assigning

function openAssign(jobId) {
  if (S.mode !== 'session' || !canAssign(S.account)) {
    toast('Your role cannot assign jobs.', { kind: 'error' });
    return;
  }
  S.assign = { job: jobId || '', user: '' };
  $('#assign-job-q').value = '';
  $('#assign-user-q').value = '';
  const err = $('#assign-error');
  err.hidden = true;
  $('#assign-submit').disabled = false;
  $('#assign-submit').textContent = 'Assign';
  renderAssign();
  const dlg = $('#assign-dialog');
  if (!dlg.open) dlg.showModal();
  (jobId ? $('#assign-user-q') : $('#assign-job-q')).focus();
}

let assignQueued = false;
function scheduleAssignRender() {
  if (assignQueued) return;
  assignQueued = true;
  requestAnimationFrame(() => { assignQueued = false; if (S.assign) renderAssign(); });
}

function renderAssign() {
  const a = S.assign;
  if (!a) return;
  const jobs = data.docs('jobs'), users = data.docs('users');
  const load = jobLoad();
  // Jobs: the open ones (soonest due first); the one chosen stays listed
  // (marked) when it stops being open, so the user sees why it fails.
  const jq = $('#assign-job-q').value.trim().toLowerCase();
  const jobList = [...jobs.values()].filter((j) => (j.status === 'open' || j.id === a.job) &&
    (!jq || `${str(j.title)} ${str(j.client)} ${j.id}`.toLowerCase().includes(jq) || j.id === a.job))
    .sort((x, y) => compare(x.due, y.due) || compare(x.title, y.title));
  const jsel = $('#assign-job-select');
  jsel.replaceChildren(...jobList.slice(0, 300).map((j) => h('option', {
    value: j.id, disabled: j.status !== 'open' && j.id !== a.job,
  }, `${str(j.title) || j.id}${j.client ? ` · ${str(j.client)}` : ''}${j.due ? ` · due ${day(str(j.due))}` : ''}${j.status !== 'open' ? ` (now ${JOB_STATUS[j.status] || j.status})` : ''}`)));
  if (!jobList.length) jsel.append(h('option', { value: '', disabled: true }, jq ? 'No open job matches' : 'No open jobs'));
  jsel.value = a.job;
  const job = jobs.get(a.job);
  $('#assign-job-info').textContent = job
    ? `${JOB_STATUS[job.status] || job.status}${job.budget_cents != null ? ` · budget ${moneyShort(job.budget_cents)}` : ''}${job.assigned_to ? ` · assigned to ${str(users.get(job.assigned_to)?.name) || job.assigned_to}` : ''}`
    : `${jobList.filter((j) => j.status === 'open').length.toLocaleString('en-US')} open jobs`;
  // Creators: active ones by name, then the inactive ones (not selectable).
  const uq = $('#assign-user-q').value.trim().toLowerCase();
  const match = (u) => !uq || `${str(u.name)} ${skillsOf(u).join(' ')} ${str(u.city)} ${str(u.email)}`.toLowerCase().includes(uq) || u.id === a.user;
  const byName = (x, y) => compare(x.name, y.name);
  const active = [...users.values()].filter((u) => (u.status === 'active' || u.status === undefined) && match(u)).sort(byName);
  const inactive = [...users.values()].filter((u) => u.status && u.status !== 'active' && match(u)).sort(byName);
  const opt = (u, off) => h('option', { value: u.id, disabled: off && u.id !== a.user },
    `${str(u.name) || u.id}${skillsOf(u).length ? ` · ${skillsOf(u).slice(0, 3).join(', ')}` : ''}${u.city ? ` · ${str(u.city)}` : ''}${off ? ' (inactive)' : ''}`);
  const usel = $('#assign-user-select');
  usel.replaceChildren(
    ...active.slice(0, 300).map((u) => opt(u, false)),
    inactive.length ? h('optgroup', { label: 'Inactive: cannot take jobs' }, inactive.slice(0, 100).map((u) => opt(u, true))) : null);
  if (!active.length && !inactive.length) usel.append(h('option', { value: '', disabled: true }, 'No creator matches'));
  usel.value = a.user;
  const user = users.get(a.user);
  $('#assign-user-info').textContent = user
    ? `${USER_STATUS[user.status] || user.status || 'Active'}${Number.isInteger(user.day_rate_cents) ? ` · ${moneyShort(user.day_rate_cents)}/day` : ''} · ${plural(load.get(user.id) || 0, 'job')} on hand`
    : `${active.length.toLocaleString('en-US')} active creators`;
}

async function submitAssign() {
  const a = S.assign;
  if (!a) return;
  const err = $('#assign-error');
  const show = (text) => {
    err.hidden = false;
    err.replaceChildren(h('span', { class: 'ico', html: ICON.alert }), h('span', {}, text));
  };
  err.hidden = true;
  if (!a.job || !a.user) {
    show(!a.job ? 'Pick an open job first.' : 'Pick a creator to give the job to.');
    (!a.job ? $('#assign-job-select') : $('#assign-user-select')).focus();
    return;
  }
  const jobs = data.docs('jobs'), users = data.docs('users');
  const job = jobs.get(a.job), user = users.get(a.user);
  const jobName = job ? `“${str(job.title) || job.id}”` : `job ${a.job}`;
  const userName = user ? str(user.name) || user.id : a.user;
  const btn = $('#assign-submit');
  btn.disabled = true;
  btn.textContent = 'Assigning…';
  try {
    const r = await db.call('assign_job', { job_id: a.job, user_id: a.user });
    $('#assign-dialog').close();
    toast(`${jobName} is assigned to ${userName}.`, { kind: 'ok', title: 'Job assigned' });
    S.flash.jobs.add(r?.job?.id || a.job);
    scheduleRender();
  } catch (e) {
    btn.disabled = false;
    btn.textContent = 'Assign';
    show(assignErrorText(e, jobName, userName));
  }
}

function assignErrorText(e, jobName, userName) {
  switch (e.code) {
    case 'invalid': {
      const d = Array.isArray(e.details) ? e.details : [];
      if (d.some((x) => x.field === 'user_id' && /inactive/.test(x.reason))) {
        return `${userName} is inactive and cannot take jobs. Pick an active creator.`;
      }
      return `Not assigned: ${e.message}`;
    }
    case 'invalid_transition': {
      const from = e.details?.from;
      return `${jobName} is ${JOB_STATUS[from]?.toLowerCase() || from || 'not open'} now, not open: only open jobs can be assigned. Pick another job.`;
    }
    case 'not_found':
      return e.details?.user_id ? `${userName} no longer exists.` : `${jobName} no longer exists.`;
    case 'forbidden':
      return 'Your role cannot assign jobs.';
    default:
      return `Not assigned: ${errorText(e)}`;
  }
}
