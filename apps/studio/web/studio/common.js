// common.js: what the studio's pages (the dashboard, the import page, the
// test page) share: where the API and the snapshot are, the SDK instance,
// the sign-in form, the statuses and who may write what.
//
// Where things are (one page, several deployments):
//   API      <meta name="livedb-api" content="https://db.example:8443"> or
//            ?api=https://db.example:8443; neither: the page's own origin
//            (the livedb server that served it). Only the origin is kept.
//   snapshot <meta name="livedb-snapshot" content="snapshot/studio.json"> or
//            ?snapshot=URL, relative to the page (the file that
//            `livedb serve --snapshot-dir DIR` keeps as DIR/studio.json).
// Links between the pages keep the query string, so ?api= and ?snapshot=
// follow the user from page to page.
import { LiveDB } from '../client/livedb.js';
import { h, $, wireLogin as uiWireLogin, showLogin } from '../client/ui.js';

export { showLogin };

// ------------------------------------------------------------ configuration

function meta(name) {
  return document.querySelector(`meta[name="${name}"]`)?.getAttribute('content')?.trim() || '';
}

export function config() {
  const q = new URLSearchParams(location.search);
  let api = location.origin;
  const rawApi = q.get('api') || meta('livedb-api');
  if (rawApi) {
    try {
      const u = new URL(rawApi, location.href);
      if (u.protocol === 'http:' || u.protocol === 'https:') api = u.origin;
    } catch { /* a bad value: the page's own origin */ }
  }
  let snapshot = null;
  try {
    snapshot = new URL(q.get('snapshot') || meta('livedb-snapshot') || 'snapshot/studio.json', location.href).href;
  } catch { /* none */ }
  const own = api === location.origin;
  // The SDK's name keys the session and the cache: a page that talks to
  // another server keeps that server's session (and token) apart.
  return { api, snapshot, own, name: own ? 'studio' : `studio@${new URL(api).host}` };
}

export const CFG = config();

// A link to another studio page that keeps ?api= and ?snapshot=.
export function pageHref(file) {
  return file + location.search;
}

let dbInstance = null;
export function getDb() {
  if (!dbInstance) dbInstance = new LiveDB({ url: CFG.api, name: CFG.name });
  return dbInstance;
}

// Is the server there? GET /v1/health (no token needed), with a time limit.
// -> {ok, ms, status, body, error}
export async function probe(ms = 5000) {
  const t0 = performance.now();
  try {
    const res = await fetch(new URL('/v1/health', CFG.api), { cache: 'no-store', signal: AbortSignal.timeout(ms) });
    let body = null;
    try { body = await res.json(); } catch { /* not JSON */ }
    return { ok: res.ok || res.status === 503, up: res.ok, ms: Math.round(performance.now() - t0), status: res.status, body };
  } catch (e) {
    return { ok: false, up: false, ms: Math.round(performance.now() - t0), status: 0, body: null, error: e };
  }
}

// ------------------------------------------------------------ who may do what

export const ROLES = new Set(['admin', 'staff']);
// app.json: staff reads both collections and writes jobs; admin writes all.
export function canWrite(account, col) {
  if (!account) return false;
  if (account.role === 'admin') return true;
  return account.role === 'staff' && col === 'jobs';
}
export const canAssign = (account) => !!account && ROLES.has(account.role);
export const isAdmin = (account) => account?.role === 'admin';

// ------------------------------------------------------------ statuses

export const USER_STATUS = { active: 'Active', inactive: 'Inactive' };
export const JOB_STATUS = {
  open: 'Open', assigned: 'Assigned', in_progress: 'In progress', completed: 'Completed', cancelled: 'Cancelled',
};
export function statusBadge(kind, s) {
  const text = (kind === 'users' ? USER_STATUS : JOB_STATUS)[s] || s || 'No status';
  return h('span', { class: 'status', dataset: { status: s || 'none' } }, text);
}

// ------------------------------------------------------------ sign-in form

// Wires the #login-form of a page (ui.js wireLogin): onSignedIn(account)
// after a good login. The form names the server when it is not the page's.
export function wireLogin(db, onSignedIn) {
  if (!CFG.own) {
    const p = $('#login-server');
    if (p) {
      p.hidden = false;
      p.replaceChildren('Signing in to ', h('strong', {}, new URL(CFG.api).host));
    }
  }
  const test = $('#login-test-link');
  if (test) test.href = pageHref('test.html');
  uiWireLogin(db, onSignedIn, { networkText: 'The server cannot be reached. Please try again in a moment.' });
}

// Icons given in markup as <span data-icon="name"> (the pages' HTML holds
// no SVG: the icons live in ui.js).
export function fillIcons(ICON, root = document) {
  for (const el of root.querySelectorAll('[data-icon]')) {
    if (!el.firstChild) el.innerHTML = ICON[el.dataset.icon] || '';
  }
}
