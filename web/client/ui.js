// ui.js: small page helpers any livedb page may share (served at
// /client/ui.js, beside livedb.js and ui.css): a DOM builder, time and
// money formats, inline icons, toasts, the connection pill, readable error
// sentences, the sign-in form and the offline page cache (a service worker,
// /client/sw-core.js). The studio and both wholesale portals use it. No
// dependencies; nothing here knows an app's collections.
//
//   import { h, $, toast, bindConnection, errorText } from '../client/ui.js';
//   list.append(h('li', { class: 'row', dataset: { id } }, name, h('small', {}, email)));
//   toast('Saved', { kind: 'ok' });

// ------------------------------------------------------------ DOM

// h('div', {class: 'x', onclick: fn, dataset: {id: 1}}, 'text', child, [more])
// Text is always text (never parsed as HTML); `html` is for trusted constants
// (the icons below) only.
export function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'style' && typeof v === 'object') Object.assign(e.style, v);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'html') e.innerHTML = v;
    else if (k === 'value' && 'value' in e) e.value = v;
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, v);
  }
  append(e, kids);
  return e;
}

function append(e, kids) {
  for (const k of kids) {
    if (k == null || k === false) continue;
    if (Array.isArray(k)) append(e, k);
    else e.append(k instanceof Node ? k : String(k));
  }
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

// Makes box's children one element per item, in order, keyed by item.id
// (the element's data-id): made once by make(item), filled on every call
// by fill(el, item); the others go. Nodes move only when the order differs,
// since moving one drops its focus.
export function syncChildren(box, items, make, fill) {
  const old = new Map([...box.children].map((e) => [e.dataset.id, e]));
  const want = items.map((item) => {
    const e = old.get(item.id) || make(item);
    old.delete(item.id);
    fill(e, item);
    return e;
  });
  for (const e of old.values()) e.remove();
  const same = want.length === box.children.length && want.every((e, i) => box.children[i] === e);
  if (!same) want.forEach((e) => box.append(e));
}

// Restarts a CSS animation class on an element (the live-change highlight).
export function flash(el, cls = 'flash') {
  if (!el) return;
  el.classList.remove(cls);
  void el.offsetWidth; // reflow, so the animation starts again
  el.classList.add(cls);
  clearTimeout(el._flashTimer);
  el._flashTimer = setTimeout(() => el.classList.remove(cls), 2600);
}

// ------------------------------------------------------------ formats

const moneyFmt = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });
const moneyWhole = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', maximumFractionDigits: 0 });
export const money = (cents) => moneyFmt.format((cents || 0) / 100);
// $1,500 for whole dollars, $1,500.50 otherwise.
export const moneyShort = (cents) => ((cents || 0) % 100 ? moneyFmt : moneyWhole).format((cents || 0) / 100);

const timeFmt = new Intl.DateTimeFormat('en-US', { hour: 'numeric', minute: '2-digit' });
const dateFmt = new Intl.DateTimeFormat('en-US', { month: 'short', day: 'numeric' });
const dayFmt = new Intl.DateTimeFormat('en-US', { month: 'short', day: 'numeric', year: 'numeric' });
export function when(t) {
  if (t == null || t === '') return '';
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return '';
  return d.toDateString() === new Date().toDateString() ? timeFmt.format(d)
    : `${dateFmt.format(d)}, ${timeFmt.format(d)}`;
}
// "2026-12-14" -> "Dec 14, 2026" (a date without a time, read as a day).
export function day(s) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s || '');
  if (!m) return s || '';
  return dayFmt.format(new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
}
// How long ago t (an ISO string or ms) was: "just now", "40 s ago", "3 min ago";
// a day or more: "yesterday", "3 days ago", or past(t) when given.
export function ago(t, now = Date.now(), { past } = {}) {
  if (t == null || t === '') return '';
  const ms = typeof t === 'number' ? t : new Date(t).getTime();
  if (Number.isNaN(ms)) return '';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 10) return 'just now';
  if (s < 60) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const hr = Math.round(m / 60);
  if (hr < 24) return `${hr} h ago`;
  if (past) return past(t);
  const d = Math.round(hr / 24);
  return d === 1 ? 'yesterday' : `${d} days ago`;
}

export const plural = (n, one, many = one + 's') => `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;

// ------------------------------------------------------------ icons (inline SVG, constants)

const svg = (body) => `<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false">${body}</svg>`;
export const ICON = {
  logout: svg('<path d="M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4"/><path d="m16 17 5-5-5-5"/><path d="M21 12H9"/>'),
  search: svg('<circle cx="11" cy="11" r="7"/><path d="m20 20-3.5-3.5"/>'),
  close: svg('<path d="M18 6 6 18"/><path d="m6 6 12 12"/>'),
  check: svg('<path d="M20 6 9 17l-5-5"/>'),
  alert: svg('<path d="M10.3 3.9 1.8 18a2 2 0 0 0 1.7 3h17a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0z"/><path d="M12 9v4"/><path d="M12 17h.01"/>'),
  info: svg('<circle cx="12" cy="12" r="10"/><path d="M12 16v-4"/><path d="M12 8h.01"/>'),
  cloudOff: svg('<path d="m2 2 20 20"/><path d="M5.8 5.8A7 7 0 0 0 6.5 19H17a4.5 4.5 0 0 0 2.9-.9"/><path d="M21.5 15.4A4.5 4.5 0 0 0 17.5 10h-1.3A7 7 0 0 0 9.9 5.4"/>'),
  plus: svg('<path d="M12 5v14"/><path d="M5 12h14"/>'),
  edit: svg('<path d="M12 20h9"/><path d="M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4z"/>'),
  clock: svg('<circle cx="12" cy="12" r="9"/><path d="M12 7v5l3 2"/>'),
  users: svg('<path d="M16 21v-2a4 4 0 0 0-4-4H6a4 4 0 0 0-4 4v2"/><circle cx="9" cy="7" r="4"/><path d="M22 21v-2a4 4 0 0 0-3-3.9"/><path d="M16 3.1a4 4 0 0 1 0 7.8"/>'),
  briefcase: svg('<rect x="2" y="7" width="20" height="14" rx="2"/><path d="M16 7V5a2 2 0 0 0-2-2h-4a2 2 0 0 0-2 2v2"/><path d="M2 13h20"/>'),
  link: svg('<path d="M10 13a5 5 0 0 0 7.5.5l3-3a5 5 0 0 0-7-7l-1.7 1.7"/><path d="M14 11a5 5 0 0 0-7.5-.5l-3 3a5 5 0 0 0 7 7l1.7-1.7"/>'),
  upload: svg('<path d="M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4"/><path d="m17 8-5-5-5 5"/><path d="M12 3v12"/>'),
  file: svg('<path d="M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8z"/><path d="M14 2v6h6"/>'),
  download: svg('<path d="M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4"/><path d="m7 10 5 5 5-5"/><path d="M12 15V3"/>'),
  play: svg('<path d="m6 4 14 8-14 8z"/>'),
  back: svg('<path d="m15 18-6-6 6-6"/>'),
  database: svg('<ellipse cx="12" cy="5" rx="8" ry="3"/><path d="M4 5v14c0 1.7 3.6 3 8 3s8-1.3 8-3V5"/><path d="M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3"/>'),
  flask: svg('<path d="M9 3h6"/><path d="M10 3v6L4.5 18.5A2 2 0 0 0 6.2 21.5h11.6a2 2 0 0 0 1.7-3L14 9V3"/><path d="M7 15h10"/>'),
  x: svg('<circle cx="12" cy="12" r="9"/><path d="m15 9-6 6"/><path d="m9 9 6 6"/>'),
  checkCircle: svg('<circle cx="12" cy="12" r="9"/><path d="m8 12 3 3 5-6"/>'),
  minusCircle: svg('<circle cx="12" cy="12" r="9"/><path d="M8 12h8"/>'),
};
// An app's own icons (name -> the SVG's inner markup), beside these.
export function addIcons(more) {
  for (const [name, body] of Object.entries(more)) ICON[name] = svg(body);
}
export const icon = (name, cls) => h('span', { class: 'ico' + (cls ? ' ' + cls : ''), html: ICON[name] });

// ------------------------------------------------------------ toasts

let toastRegion;
// toast('Body', {title, kind: 'info'|'ok'|'warn'|'error', ms, key})
// A toast with the key of one still shown replaces it.
export function toast(body, { title, kind = 'info', ms = 6000, key } = {}) {
  if (!toastRegion) {
    toastRegion = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(toastRegion);
  }
  const ic = { error: 'alert', warn: 'alert', ok: 'check', info: 'info' }[kind] || 'info';
  const close = h('button', { type: 'button', 'aria-label': 'Dismiss notification' }, '×');
  const t = h('div', { class: 'toast', dataset: { kind } },
    h('span', { class: 'toast-icon', html: ICON[ic] }),
    h('div', {}, title ? h('strong', {}, title) : null, body),
    close);
  const remove = () => {
    if (!t.isConnected) return;
    t.classList.add('leaving');
    setTimeout(() => t.remove(), 220);
  };
  close.addEventListener('click', remove);
  if (key) {
    t.dataset.key = key;
    for (const old of toastRegion.querySelectorAll('.toast')) if (old.dataset.key === key) old.remove();
  }
  toastRegion.append(t);
  while (toastRegion.children.length > 3) toastRegion.firstElementChild.remove();
  if (ms) setTimeout(remove, ms);
  return t;
}

// ------------------------------------------------------------ connection

const STATE_TEXT = {
  connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…', offline: 'Offline',
};
// Keeps a pill element showing db.state (styled by ui.css .conn); calls
// onChange(state) too. Returns the function that stops it.
export function bindConnection(db, pill, onChange) {
  const show = (s) => {
    pill.dataset.state = s;
    pill.textContent = STATE_TEXT[s] || s;
    pill.title = s === 'live' ? 'Connected: changes arrive as they happen'
      : s === 'offline' ? 'No connection: showing saved data'
        : 'Connection lost: trying again';
    if (onChange) onChange(s);
  };
  show(db.state || 'connecting');
  return db.on('state', show);
}

// ------------------------------------------------------------ errors

// A person's sentence for an SDK error (LiveDBError).
export function errorText(err) {
  if (!err) return 'Something went wrong.';
  switch (err.code) {
    case 'unauthorized': return 'Your session has ended. Please sign in again.';
    case 'forbidden': return 'You are not allowed to do that.';
    case 'rate_limited': return 'Too many attempts. Please wait a minute and try again.';
    case 'unavailable': return 'The server is busy or restarting. Please try again in a moment.';
    case 'network': case 'offline': return 'No connection to the server.';
    case 'timeout': return 'The server took too long to answer. Please try again.';
    case 'payload_too_large': return 'That is too large to send (over 1 MiB).';
    default: return err.message || 'Something went wrong.';
  }
}

// The field errors of a 422 (details [{field, reason}]) as a Map.
export function fieldErrors(err) {
  const out = new Map();
  const list = Array.isArray(err?.details) ? err.details : Array.isArray(err?.details?.fields) ? err.details.fields : [];
  for (const d of list) if (d && d.field) out.set(String(d.field), String(d.reason || 'is not valid'));
  return out;
}

// ------------------------------------------------------------ sign-in form

// The sign-in card of a page, the same on every page: built into
// <section id="login" data-app data-portal data-icon data-lead> around
// the footer lines the page puts inside it (links, #login-server), when
// this module loads (module scripts run once the page is parsed).
function buildLoginCard() {
  const sec = document.getElementById('login');
  if (!sec || !sec.dataset.app || $('#login-form', sec)) return;
  const d = sec.dataset;
  const field = (label, attrs) => h('label', { class: 'field' }, h('span', {}, label),
    h('input', { class: 'input', required: true, ...attrs }));
  sec.replaceChildren(h('form', { id: 'login-form', class: 'card', novalidate: true },
    h('div', { class: 'brand' }, h('img', { src: d.icon || '/favicon.svg', alt: '' }),
      h('span', {}, d.app, h('small', {}, d.portal || ''))),
    h('h1', { id: 'login-title' }, 'Sign in'),
    h('p', { class: 'lead' }, d.lead || ''),
    h('div', { id: 'login-error', class: 'banner banner-danger error', role: 'alert', hidden: true }),
    field('Email', { id: 'login-email', name: 'email', type: 'email', autocomplete: 'username' }),
    field('Password', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password' }),
    h('button', { class: 'btn btn-primary btn-block', id: 'login-submit', type: 'submit' }, 'Sign in'),
    ...sec.childNodes));
}
if (typeof document !== 'undefined') buildLoginCard();

// The sign-in form of a page: #login (shown by showLogin) holding
// #login-form with #login-email, #login-password, #login-submit and
// #login-error. A good login hides #login and calls onSignedIn(account);
// networkText, when given, is the sentence for a server that cannot be reached.
export function wireLogin(db, onSignedIn, { networkText } = {}) {
  $('#login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const email = $('#login-email').value.trim();
    const password = $('#login-password').value;
    const err = $('#login-error');
    if (!email || !password) {
      err.textContent = 'Enter your email and password.';
      err.hidden = false;
      (!email ? $('#login-email') : $('#login-password')).focus();
      return;
    }
    const btn = $('#login-submit');
    btn.disabled = true;
    btn.textContent = 'Signing in…';
    try {
      const account = await db.login(email, password);
      $('#login-password').value = '';
      err.hidden = true;
      $('#login').hidden = true;
      onSignedIn(account);
    } catch (ex) {
      err.textContent = ex.code === 'unauthorized' ? 'Wrong email or password.'
        : ex.code === 'network' && networkText ? networkText : errorText(ex);
      err.hidden = false;
      $('#login-password').select();
    } finally {
      btn.disabled = false;
      btn.textContent = 'Sign in';
    }
  });
}

// The account of the session this tab kept, or null (none kept, or the
// server no longer takes it): db.restore() that does not throw.
export async function savedAccount(db) {
  try { return await db.restore(); } catch { return null; }
}

// Opens the page once it is wired: as the kept session's account
// (start(account)), or at the sign-in form (signIn()); the boot line goes.
export async function resumeSession(db, start, signIn = showLogin) {
  const account = await savedAccount(db);
  $('#boot').hidden = true;
  if (account) start(account);
  else signIn();
}

// Shows #app when allowed; else the page's card for a role it does not serve
// (card), naming the account in its who element, and returns false.
export function openFor(account, allowed, { card = '#forbidden', who = '#fb-who' } = {}) {
  if (!allowed) {
    $(who).textContent = `${account.name || account.email} (${account.role})`;
    $(card).hidden = false;
    return false;
  }
  $('#app').hidden = false;
  return true;
}

// Shows the sign-in form with message (why) in its error line, hiding the
// parts of the page given by selector (those the page has).
export function showLogin(message, hide = ['#app', '#forbidden']) {
  for (const sel of hide) { const el = $(sel); if (el) el.hidden = true; }
  $('#login').hidden = false;
  const err = $('#login-error');
  err.hidden = !message;
  err.textContent = message || '';
  $('#login-email').focus();
}

// ------------------------------------------------------------ offline pages

// The page's files are kept by a service worker (its sw.js sets
// self.PAGE_FILES and imports /client/sw-core.js) so that a reload without
// the server still opens the page; the SDK's cache supplies the data.
export function keepOffline(swUrl) {
  if (!('serviceWorker' in navigator)) return Promise.resolve(null);
  return navigator.serviceWorker.register(swUrl).catch(() => null);
}
