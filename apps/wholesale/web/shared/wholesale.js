// wholesale.js: what the partner and admin portals share (served at
// /shared/wholesale.js): a tiny DOM builder, money and time formats, icons,
// toasts, the connection pill, the order statuses and their transitions,
// and the offline page cache (service worker). The SDK itself reports page
// views and uncaught errors to the activity log.

// ------------------------------------------------------------ DOM

// h('div', {class: 'x', onclick: fn, dataset: {id: 1}}, 'text', child, [more])
export function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'style' && typeof v === 'object') Object.assign(e.style, v);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'html') e.innerHTML = v; // trusted constants only (icons)
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

// Restart a CSS animation class on an element (the live-change highlight).
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
export const money = (cents) => moneyFmt.format((cents || 0) / 100);

const timeFmt = new Intl.DateTimeFormat('en-US', { hour: 'numeric', minute: '2-digit' });
const dateFmt = new Intl.DateTimeFormat('en-US', { month: 'short', day: 'numeric' });
export function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const today = new Date();
  return d.toDateString() === today.toDateString() ? timeFmt.format(d)
    : `${dateFmt.format(d)}, ${timeFmt.format(d)}`;
}
export function ago(iso, now = Date.now()) {
  if (!iso) return '';
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (s < 10) return 'just now';
  if (s < 60) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const hr = Math.round(m / 60);
  if (hr < 24) return `${hr} h ago`;
  return when(iso);
}

// A short, readable order number: "o-demo-1" -> "DEMO-1", random ids -> last 6.
export function orderNo(id) {
  if (!id) return '';
  const demo = /^o-(.+)$/.exec(id);
  return '#' + (demo ? demo[1] : id.slice(-6)).toUpperCase();
}

export const plural = (n, one, many = one + 's') => `${n} ${n === 1 ? one : many}`;

// ------------------------------------------------------------ orders

export const STATUSES = ['pending', 'confirmed', 'packed', 'shipped', 'delivered', 'cancelled'];
// set_order_status's transitions, with the button each gets in the admin portal.
export const NEXT = {
  pending: [['confirmed', 'Confirm'], ['cancelled', 'Cancel order']],
  confirmed: [['packed', 'Mark packed'], ['cancelled', 'Cancel order']],
  packed: [['shipped', 'Mark shipped']],
  shipped: [['delivered', 'Mark delivered']],
  delivered: [],
  cancelled: [],
};
export const STATUS_TEXT = {
  pending: 'Pending', confirmed: 'Confirmed', packed: 'Packed',
  shipped: 'Shipped', delivered: 'Delivered', cancelled: 'Cancelled',
};
export const statusBadge = (s) => h('span', { class: 'status', dataset: { status: s } }, STATUS_TEXT[s] || s);

export const newestFirst = (a, b) => (b.created_at || '').localeCompare(a.created_at || '') || (a.id < b.id ? 1 : -1);

// ------------------------------------------------------------ icons (inline SVG, constants)

const svg = (body) => `<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">${body}</svg>`;
export const ICON = {
  cart: svg('<circle cx="9" cy="20" r="1.4"/><circle cx="18" cy="20" r="1.4"/><path d="M2.5 3.5h2.6l2.4 11.2a1.5 1.5 0 0 0 1.5 1.2h8.6a1.5 1.5 0 0 0 1.5-1.1l1.6-6.8H6.2"/>'),
  bell: svg('<path d="M6 8a6 6 0 0 1 12 0c0 7 3 9 3 9H3s3-2 3-9"/><path d="M10.3 21a1.9 1.9 0 0 0 3.4 0"/>'),
  sound: svg('<path d="M11 5 6 9H2v6h4l5 4z"/><path d="M15.5 8.5a5 5 0 0 1 0 7"/><path d="M19 5a10 10 0 0 1 0 14"/>'),
  mute: svg('<path d="M11 5 6 9H2v6h4l5 4z"/><path d="m22 9-6 6"/><path d="m16 9 6 6"/>'),
  logout: svg('<path d="M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4"/><path d="m16 17 5-5-5-5"/><path d="M21 12H9"/>'),
  search: svg('<circle cx="11" cy="11" r="7"/><path d="m20 20-3.5-3.5"/>'),
  close: svg('<path d="M18 6 6 18"/><path d="m6 6 12 12"/>'),
  check: svg('<path d="M20 6 9 17l-5-5"/>'),
  alert: svg('<path d="M10.3 3.9 1.8 18a2 2 0 0 0 1.7 3h17a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0z"/><path d="M12 9v4"/><path d="M12 17h.01"/>'),
  info: svg('<circle cx="12" cy="12" r="10"/><path d="M12 16v-4"/><path d="M12 8h.01"/>'),
  cloudOff: svg('<path d="m2 2 20 20"/><path d="M5.8 5.8A7 7 0 0 0 6.5 19H17a4.5 4.5 0 0 0 2.9-.9"/><path d="M21.5 15.4A4.5 4.5 0 0 0 17.5 10h-1.3A7 7 0 0 0 9.9 5.4"/>'),
  box: svg('<path d="M21 8 12 3 3 8v8l9 5 9-5z"/><path d="m3 8 9 5 9-5"/><path d="M12 13v8"/>'),
  minus: svg('<path d="M5 12h14"/>'),
  plus: svg('<path d="M12 5v14"/><path d="M5 12h14"/>'),
  trash: svg('<path d="M3 6h18"/><path d="M8 6V4h8v2"/><path d="M19 6l-1 14H6L5 6"/>'),
  clock: svg('<circle cx="12" cy="12" r="9"/><path d="M12 7v5l3 2"/>'),
  up: svg('<path d="m18 15-6-6-6 6"/>'),
  down: svg('<path d="m6 9 6 6 6-6"/>'),
};
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
// Keeps a pill element showing db.state; calls onChange(state) too.
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
  db.on('state', show);
}

// ------------------------------------------------------------ errors

// A person's sentence for an SDK error.
export function errorText(err) {
  if (!err) return 'Something went wrong.';
  switch (err.code) {
    case 'unauthorized': return 'Your session has ended. Please sign in again.';
    case 'forbidden': return 'You are not allowed to do that.';
    case 'rate_limited': return 'Too many attempts. Please wait a minute and try again.';
    case 'unavailable': return 'The server is busy or restarting. Please try again in a moment.';
    case 'network': case 'offline': return 'No connection to the server.';
    default: return err.message || 'Something went wrong.';
  }
}

// ------------------------------------------------------------ offline pages

// The portal's files are kept by a service worker so that a reload without
// the server still opens the page (the SDK's cache supplies the data).
export function keepOffline(swUrl) {
  if (!('serviceWorker' in navigator)) return Promise.resolve(null);
  return navigator.serviceWorker.register(swUrl).catch(() => null);
}
