// wholesale.js: what the partner and admin portals share (served at
// /shared/wholesale.js): the page helpers of /client/ui.js (the DOM
// builder, formats, icons, toasts, the connection pill, error sentences,
// the sign-in form, the offline page cache), re-exported with the
// portals' own: their icons, order numbers, the order statuses and their
// transitions. The SDK itself reports page views and uncaught errors to the
// activity log.
import { h, when, ago as uiAgo, addIcons } from '/client/ui.js';

export {
  h, $, $$, flash, money, when, ICON, icon, toast, bindConnection, errorText, keepOffline, wireLogin, showLogin,
  resumeSession, openFor, syncChildren,
} from '/client/ui.js';

// ------------------------------------------------------------ session

// The sign-out button: stops the page's listeners (subs), ends the session
// (offline too: the token is forgotten here anyway) and reloads the page at
// its first view.
export async function logOut(db, subs) {
  for (const u of subs.splice(0)) u();
  try { await db.logout(); } catch { /* gone anyway */ }
  location.hash = '';
  location.reload();
}

// ------------------------------------------------------------ formats

// "3 min ago"; a day or more: the date and time.
export const ago = (iso, now = Date.now()) => uiAgo(iso, now, { past: when });

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

// ------------------------------------------------------------ icons (beside ui.js's)

addIcons({
  cart: '<circle cx="9" cy="20" r="1.4"/><circle cx="18" cy="20" r="1.4"/><path d="M2.5 3.5h2.6l2.4 11.2a1.5 1.5 0 0 0 1.5 1.2h8.6a1.5 1.5 0 0 0 1.5-1.1l1.6-6.8H6.2"/>',
  bell: '<path d="M6 8a6 6 0 0 1 12 0c0 7 3 9 3 9H3s3-2 3-9"/><path d="M10.3 21a1.9 1.9 0 0 0 3.4 0"/>',
  sound: '<path d="M11 5 6 9H2v6h4l5 4z"/><path d="M15.5 8.5a5 5 0 0 1 0 7"/><path d="M19 5a10 10 0 0 1 0 14"/>',
  mute: '<path d="M11 5 6 9H2v6h4l5 4z"/><path d="m22 9-6 6"/><path d="m16 9 6 6"/>',
  box: '<path d="M21 8 12 3 3 8v8l9 5 9-5z"/><path d="m3 8 9 5 9-5"/><path d="M12 13v8"/>',
  minus: '<path d="M5 12h14"/>',
  trash: '<path d="M3 6h18"/><path d="M8 6V4h8v2"/><path d="M19 6l-1 14H6L5 6"/>',
  up: '<path d="m18 15-6-6-6 6"/>',
  down: '<path d="m6 9 6 6 6-6"/>',
});
