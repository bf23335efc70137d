// The admin portal: orders arrive live with a chime and an unread count
// (in the tab and the window title); an order's detail moves it along
// set_order_status; stock and prices are edited inline (adjust_inventory,
// set_price); the dashboard charts orders, revenue, top products and client
// errors, lists the partners online (_presence), streams the activity log
// (_activity) and shows the server's health (/v1/health, /metrics).
import { LiveDB } from '/client/livedb.js';
import {
  h, $, $$, flash, money, when, ago, orderNo, plural, statusBadge, newestFirst, STATUSES, STATUS_TEXT, NEXT,
  ICON, icon, toast, bindConnection, errorText, keepOffline, wireLogin, showLogin, logOut,
  resumeSession, openFor, syncChildren,
} from '/shared/wholesale.js';

const db = new LiveDB({ name: 'wholesale' });
window.__portal = { db };
window.__chimes = 0; // how many times the new-order chime played (the browser tests read it)

const LOW_STOCK = 10;
const small = matchMedia('(max-width: 1000px)');

const S = {
  account: null,
  orders: new Map(),     // id -> doc
  ordersLoaded: false,
  ordersStale: false,
  unread: new Set(),     // ids of orders that arrived while watching and are not opened yet
  filter: 'all',
  selected: null,        // order id shown in the detail pane
  products: new Map(),
  productsLoaded: false,
  productsStale: false,
  invQ: '',
  invLow: false,
  presence: new Map(),   // connection id -> {account, role, state, since}
  activity: [],          // newest first
  names: new Map(),      // account id -> name (from /v1/accounts, presence, orders)
  errorsAt: [],          // times of client_error events
  view: 'orders',
  subs: [],
  health: null,
  lastMetrics: null,
  muted: false,
};

boot();

async function boot() {
  keepOffline('/admin/sw.js');
  $('#logout').innerHTML = ICON.logout;
  $('#inv-search-icon').innerHTML = ICON.search;
  $('#detail-empty-icon').innerHTML = ICON.box;
  try { S.muted = localStorage.getItem('wholesale.admin.muted') === '1'; } catch { /* default: on */ }
  renderSound();
  wireStatic();
  db.on('auth', () => signedOut('Your session has ended. Please sign in again.'));
  await resumeSession(db, start, showSignIn);
}

function showSignIn(message) {
  showLogin(message); // hides #app and #forbidden
  document.title = 'Admin · Wholesale';
}

function start(account) {
  S.account = account;
  // Partners (and anyone else) see none of this portal's data: nothing is
  // subscribed, and the server refuses them anyway (403).
  if (!openFor(account, account.role === 'admin')) return;
  $('#who-name').textContent = account.name || '';
  $('#who-email').textContent = account.email || '';
  S.names.set(account.id, account.name || account.email);
  if (!S.wired) { // once a page, though a session that ended may sign in again
    S.wired = true;
    bindConnection(db, $('#conn'), renderNotices);
    setInterval(tick, 5000);
    let beats = 0; // the activity log: every 2 s on the dashboard, every 10 s elsewhere
    setInterval(() => { if (S.view === 'dashboard' || ++beats % 5 === 0) pollActivity(); }, 2000);
  }
  S.subs.push(db.collection('orders').onSnapshot(onOrders));
  S.subs.push(db.collection('products').onSnapshot(onProducts));
  S.subs.push(db.collection('_presence').onSnapshot(onPresence));
  S.subs.push(db.collection('_activity').onSnapshot(onActivity));
  loadNames();
  route();
  tick();
  pollActivity();
}

function signedOut(message) {
  for (const u of S.subs.splice(0)) u();
  S.account = null;
  // What was shown belonged to that session.
  S.orders = new Map();
  S.ordersLoaded = false;
  S.unread.clear();
  S.products = new Map();
  S.productsLoaded = false;
  S.presence = new Map();
  S.selected = null;
  activity.clear();
  S.activity = [];
  $('#feed').replaceChildren();
  $('#inv-body').replaceChildren();
  showSignIn(message);
}

function wireStatic() {
  $('#login-form').addEventListener('submit', unlockAudio); // in the gesture, before signing in
  wireLogin(db, start);
  const logout = () => logOut(db, S.subs);
  $('#logout').addEventListener('click', logout);
  $('#fb-logout').addEventListener('click', logout);
  $('#sound').addEventListener('click', () => {
    S.muted = !S.muted;
    try { localStorage.setItem('wholesale.admin.muted', S.muted ? '1' : '0'); } catch { /* no storage */ }
    renderSound();
    if (!S.muted) chime(true);
  });
  $('#mark-read').addEventListener('click', () => { S.unread.clear(); renderFeed(); renderUnread(); });
  $('#inv-search').addEventListener('input', (e) => { S.invQ = e.target.value.trim().toLowerCase(); renderInventory(); });
  $('#inv-low').addEventListener('change', (e) => { S.invLow = e.target.checked; renderInventory(); });
  addEventListener('hashchange', route);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && small.matches && S.selected) select(null);
  });
  // A user gesture lets the audio context start (browsers' autoplay rule).
  for (const ev of ['pointerdown', 'keydown']) addEventListener(ev, unlockAudio, { once: true, capture: true });
}

function route() {
  const v = (location.hash || '#orders').slice(1).split('/')[0];
  S.view = ['orders', 'inventory', 'dashboard'].includes(v) ? v : 'orders';
  for (const name of ['orders', 'inventory', 'dashboard']) {
    $(`#view-${name}`).hidden = name !== S.view;
    const tab = $(`#tab-${name}`);
    if (name === S.view) tab.setAttribute('aria-current', 'page'); else tab.removeAttribute('aria-current');
  }
  if (S.view === 'dashboard') renderDashboard();
  if (S.account) {
    try { db.presence({ page: 'admin', view: S.view, name: S.account.name, email: S.account.email }); } catch { /* offline */ }
  }
}

// ------------------------------------------------------------ REST helper

// The few plain HTTP endpoints with no realtime form (accounts, health,
// metrics). /metrics is text, which db.api() does not return, so that one
// request carries the session's token itself.
function authHeaders() {
  const token = db.token;
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function loadNames() {
  try {
    const { accounts } = await db.api('GET', '/v1/accounts');
    for (const a of accounts) S.names.set(a.id, a.name || a.email);
    renderFeed();
    if (S.selected) renderDetail();
    renderOnline();
    renderActivity();
  } catch { /* offline: names come from presence, or ids are shown */ }
}

const nameOf = (id) => S.names.get(id) || (id ? `Account …${id.slice(-5)}` : 'the server');

// ------------------------------------------------------------ sound

let audioCtx = null;
function unlockAudio() {
  try {
    if (!audioCtx) audioCtx = new (window.AudioContext || window.webkitAudioContext)();
    if (audioCtx.state === 'suspended') audioCtx.resume();
  } catch { /* no Web Audio: no sound */ }
}

// A short two-note chime, synthesized (no audio file).
function chime(force) {
  if (S.muted && !force) return;
  unlockAudio();
  if (!audioCtx) return;
  window.__chimes++;
  const t0 = audioCtx.currentTime + 0.01;
  for (const [freq, at] of [[880, 0], [1318.5, 0.13]]) {
    const osc = audioCtx.createOscillator();
    const gain = audioCtx.createGain();
    osc.type = 'sine';
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, t0 + at);
    gain.gain.exponentialRampToValueAtTime(0.22, t0 + at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t0 + at + 0.55);
    osc.connect(gain).connect(audioCtx.destination);
    osc.start(t0 + at);
    osc.stop(t0 + at + 0.6);
  }
}

function renderSound() {
  const b = $('#sound');
  b.innerHTML = S.muted ? ICON.mute : ICON.sound;
  b.setAttribute('aria-pressed', String(!S.muted));
  b.setAttribute('aria-label', `Sound for new orders: ${S.muted ? 'off' : 'on'}`);
  b.title = S.muted ? 'Sound is off: click to turn it on' : 'Sound is on: click to mute';
}

// ------------------------------------------------------------ orders

function onOrders(snap) {
  const before = S.orders;
  S.orders = new Map(snap.docs.map((d) => [d.id, d]));
  S.ordersStale = !!snap.stale;
  const fresh = [];
  if (S.ordersLoaded) {
    for (const c of snap.changes || []) {
      if (c.op === 'added' && !before.has(c.id) && c.doc) fresh.push(c.doc);
    }
  }
  S.ordersLoaded = true;
  for (const o of fresh) S.unread.add(o.id);
  renderFeed();
  for (const o of fresh) flash(document.querySelector(`.feed-item[data-id="${CSS.escape(o.id)}"]`));
  for (const c of snap.changes || []) {
    if (c.op === 'modified') flash(document.querySelector(`.feed-item[data-id="${CSS.escape(c.id)}"]`));
  }
  if (S.selected && (snap.changes || []).some((c) => c.id === S.selected)) renderDetail();
  if (fresh.length) {
    chime();
    const o = fresh[fresh.length - 1];
    toast(`${nameOf(o.partner_id)} · ${plural(o.items?.length || 0, 'line')} · ${money(o.total_cents)}`,
      { title: fresh.length === 1 ? `New order ${orderNo(o.id)}` : `${fresh.length} new orders`, kind: 'ok' });
    if (fresh.some((f) => !S.names.has(f.partner_id))) loadNames();
  }
  renderUnread();
  renderNotices();
  if (S.view === 'dashboard') renderDashboard();
}

function renderUnread() {
  for (const id of S.unread) if (!S.orders.has(id)) S.unread.delete(id);
  const n = S.unread.size;
  const b = $('#unread-badge');
  b.hidden = n === 0;
  b.textContent = n > 99 ? '99+' : String(n);
  $('#tab-orders').setAttribute('aria-label', n ? `Orders, ${n} unread` : 'Orders');
  $('#mark-read').hidden = n === 0;
  document.title = `${n ? `(${n}) ` : ''}Admin · Wholesale`;
}

function renderFilter() {
  const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  for (const o of S.orders.values()) counts[o.status] = (counts[o.status] || 0) + 1;
  const chip = (value, label, n) => h('button', {
    type: 'button', class: 'chip', 'aria-pressed': String(S.filter === value), dataset: { filter: value },
    onclick: () => { S.filter = value; renderFeed(); },
  }, label, h('span', { class: 'count' }, n));
  $('#status-filter').replaceChildren(chip('all', 'All', S.orders.size),
    ...STATUSES.map((s) => chip(s, STATUS_TEXT[s], counts[s])));
}

function renderFeed() {
  renderFilter();
  const list = [...S.orders.values()].filter((o) => S.filter === 'all' || o.status === S.filter).sort(newestFirst);
  const ul = $('#feed');
  const focusId = document.activeElement?.closest?.('.feed-item')?.dataset.id;
  const items = list.slice(0, 300).map(feedItem);
  ul.replaceChildren(...items);
  if (focusId) ul.querySelector(`.feed-item[data-id="${CSS.escape(focusId)}"] button`)?.focus();
  $('#feed-empty').hidden = items.length > 0;
  const open = [...S.orders.values()].filter((o) => o.status === 'pending').length;
  $('#orders-sub').textContent = S.orders.size
    ? `${plural(S.orders.size, 'order')} · ${open} waiting to confirm · new ones arrive with a chime`
    : 'New orders appear here with a chime.';
}

function feedItem(o) {
  const unread = S.unread.has(o.id);
  const units = (o.items || []).reduce((a, it) => a + it.qty, 0);
  const btn = h('button', {
    type: 'button', class: 'feed-btn', 'aria-current': S.selected === o.id ? 'true' : null,
    'aria-label': `Order ${orderNo(o.id)} from ${nameOf(o.partner_id)}, ${o.status}, ${money(o.total_cents)}${unread ? ', unread' : ''}`,
    onclick: () => select(o.id),
  },
  h('span', { class: 'dot', 'aria-hidden': 'true' }),
  h('span', { class: 'f-main' },
    h('span', { class: 'f-top' }, h('strong', {}, orderNo(o.id)), h('span', { class: 'f-partner' }, nameOf(o.partner_id))),
    h('span', { class: 'f-sub muted small' }, `${plural(units, 'unit')} · `, h('time', { datetime: o.created_at, class: 'ago' }, ago(o.created_at)))),
  h('span', { class: 'f-side' }, h('strong', { class: 'num' }, money(o.total_cents)), statusBadge(o.status)));
  return h('li', { class: 'feed-item' + (unread ? ' unread' : '') + (S.selected === o.id ? ' selected' : ''), dataset: { id: o.id } }, btn);
}

function select(id) {
  S.selected = id;
  if (id && S.unread.delete(id)) renderUnread();
  renderFeed();
  renderDetail();
  const d = $('#detail');
  d.classList.toggle('open', !!id);
  // On phones the detail covers the list: a modal dialog while open.
  if (id && small.matches) { d.setAttribute('role', 'dialog'); d.setAttribute('aria-modal', 'true'); }
  else { d.removeAttribute('role'); d.removeAttribute('aria-modal'); }
  document.body.classList.toggle('sheet-open', !!id && small.matches);
  if (id && small.matches) d.querySelector('.detail-close')?.focus();
}

function renderDetail() {
  const o = S.selected && S.orders.get(S.selected);
  $('#detail-empty').hidden = !!o;
  const body = $('#detail-body');
  body.hidden = !o;
  if (!o) { body.replaceChildren(); return; }
  const items = o.items || [];
  const actions = (NEXT[o.status] || []).map(([to, label]) => h('button', {
    type: 'button', class: 'btn ' + (to === 'cancelled' ? 'btn-danger' : 'btn-primary'), dataset: { to },
    onclick: (e) => move(o, to, e.currentTarget),
  }, label));
  body.replaceChildren(
    h('div', { class: 'detail-head' },
      h('button', { type: 'button', class: 'icon-btn detail-close', 'aria-label': 'Back to the orders', html: ICON.close, onclick: () => select(null) }),
      h('div', {}, h('h2', { id: 'detail-title' }, `Order ${orderNo(o.id)}`),
        h('div', { class: 'muted small' }, `${nameOf(o.partner_id)} · placed ${when(o.created_at)}`)),
      statusBadge(o.status)),
    h('div', { class: 'detail-actions' }, actions.length ? actions
      : h('span', { class: 'muted small' }, o.status === 'delivered' ? 'Delivered: nothing left to do.' : 'Cancelled: the stock went back.')),
    h('table', { class: 'lines' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Product'), h('th', { scope: 'col', class: 'r' }, 'Qty'),
        h('th', { scope: 'col', class: 'r' }, 'Price'), h('th', { scope: 'col', class: 'r' }, 'Total'))),
      h('tbody', {}, items.map((it) => h('tr', {},
        h('td', {}, it.name, h('div', { class: 'muted small mono' }, S.products.get(it.product_id)?.sku || it.product_id)),
        h('td', { class: 'r num' }, it.qty), h('td', { class: 'r num' }, money(it.price_cents)),
        h('td', { class: 'r num' }, money(it.qty * it.price_cents))))),
      h('tfoot', {}, h('tr', {}, h('th', { scope: 'row', colspan: '3' }, 'Total'), h('td', { class: 'r num' }, money(o.total_cents))))),
    o.notes ? h('div', { class: 'notes' }, h('strong', {}, 'Notes from the partner'), h('p', {}, o.notes)) : null,
    h('h3', { class: 'sub' }, 'History'),
    h('ol', { class: 'timeline' }, (o.history || []).map((ev) => h('li', { dataset: { status: ev.status } },
      h('span', { class: 'tl-dot' }),
      h('div', {}, h('strong', {}, STATUS_TEXT[ev.status] || ev.status), ' by ', nameOf(ev.by),
        h('div', { class: 'muted small' }, h('time', { datetime: ev.at }, when(ev.at))))))),
    h('p', { class: 'muted small mono' }, `id ${o.id} · version ${o.version}`));
}

async function move(o, to, btn) {
  const buttons = $$('.detail-actions button');
  buttons.forEach((b) => { b.disabled = true; });
  const label = btn.textContent;
  btn.textContent = 'Saving…';
  try {
    await db.call('set_order_status', { order_id: o.id, status: to });
    toast(`${orderNo(o.id)} is now ${STATUS_TEXT[to].toLowerCase()}.`, { kind: 'ok', ms: 3000 });
  } catch (err) {
    const cur = S.orders.get(o.id)?.status;
    toast(err.code === 'invalid_transition'
      ? `It is ${cur || 'no longer ' + o.status} now (changed elsewhere); it cannot become ${to}.`
      : errorText(err), { title: `${orderNo(o.id)} was not changed`, kind: 'error' });
    btn.textContent = label;
    buttons.forEach((b) => { b.disabled = false; });
  }
}

// ------------------------------------------------------------ inventory

function onProducts(snap) {
  const before = S.products;
  S.products = new Map(snap.docs.map((d) => [d.id, d]));
  S.productsStale = !!snap.stale;
  const first = !S.productsLoaded;
  S.productsLoaded = true;
  renderInventory();
  if (!first) {
    for (const c of snap.changes || []) {
      if (c.op !== 'modified' || !c.doc) continue;
      const row = document.querySelector(`#inv-body tr[data-id="${CSS.escape(c.id)}"]`);
      const old = before.get(c.id);
      if (!row || !old) continue;
      if (old.stock !== c.doc.stock) flash(row.querySelector('.stock-val'));
      if (old.price_cents !== c.doc.price_cents) flash(row.querySelector('.price-edit'));
    }
  }
  renderNotices();
  if (S.view === 'dashboard') renderDashboard();
}

function renderInventory() {
  const all = [...S.products.values()].sort((a, b) => (a.category || '').localeCompare(b.category || '') || a.name.localeCompare(b.name));
  const low = all.filter((p) => p.active !== false && p.stock <= LOW_STOCK);
  const lb = $('#low-badge');
  lb.hidden = low.length === 0;
  lb.textContent = String(low.length);
  $('#tab-inventory').setAttribute('aria-label', low.length ? `Inventory, ${low.length} low on stock` : 'Inventory');
  const list = all.filter((p) => (!S.invLow || p.stock <= LOW_STOCK) &&
    (!S.invQ || `${p.name} ${p.sku} ${p.category || ''}`.toLowerCase().includes(S.invQ)));
  $('#inv-summary').textContent = `${plural(all.length, 'product')} · ${low.length} low on stock`;
  const body = $('#inv-body');
  syncChildren(body, list, invRow, fillRow);
  if (!list.length) body.replaceChildren(h('tr', { class: 'none' }, h('td', { colspan: '4', class: 'empty' }, S.products.size ? 'No product matches.' : 'Loading…')));
  else body.querySelector('tr.none')?.remove();
}

function invRow(p) {
  const id = p.id;
  const priceId = `price-${id}`;
  const price = h('input', { class: 'input price-edit num', id: priceId, inputmode: 'decimal', autocomplete: 'off' });
  const priceBox = h('div', { class: 'price-box' }, h('span', { class: 'cur', 'aria-hidden': 'true' }, '$'), price);
  const savePrice = async () => {
    const p0 = S.products.get(id);
    const cents = parseMoney(price.value);
    if (cents == null) {
      price.setAttribute('aria-invalid', 'true');
      toast('Write a price like 12.50.', { title: 'Not a price', kind: 'error', ms: 4000 });
      return;
    }
    price.removeAttribute('aria-invalid');
    if (!p0 || cents === p0.price_cents) { price.value = (p0.price_cents / 100).toFixed(2); return; }
    // Enter and the change event that follows it are one edit.
    if (price.dataset.saving === String(cents)) return;
    price.dataset.saving = String(cents);
    price.readOnly = true; // not disabled: that would take the focus away
    try {
      await db.call('set_price', { product_id: id, price_cents: cents });
      toast(`${p0.name}: ${money(p0.price_cents)} → ${money(cents)}`, { title: 'Price changed', kind: 'ok', ms: 3000 });
      price.dataset.dirty = '';
      price.value = (cents / 100).toFixed(2);
    } catch (err) {
      toast(errorText(err), { title: `${p0.name}: price not changed`, kind: 'error' });
    } finally {
      price.dataset.saving = '';
      price.readOnly = false;
      fillRow(price.closest('tr'), S.products.get(id));
    }
  };
  price.addEventListener('input', () => { price.dataset.dirty = '1'; });
  price.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { e.preventDefault(); savePrice(); }
    if (e.key === 'Escape') { price.dataset.dirty = ''; fillRow(price.closest('tr'), S.products.get(id)); price.blur(); }
  });
  price.addEventListener('change', savePrice);

  const adjust = async (delta, btn) => {
    const p0 = S.products.get(id);
    if (!delta) return;
    if (btn) btn.disabled = true;
    try {
      await db.call('adjust_inventory', { product_id: id, delta });
      return true;
    } catch (err) {
      toast(err.code === 'insufficient_stock' ? `Only ${p0?.stock ?? 0} in stock: cannot take away ${-delta}.` : errorText(err),
        { title: `${p0?.name || id}: stock not changed`, kind: 'error' });
      return false;
    } finally {
      if (btn) btn.disabled = false;
    }
  };
  const minus = h('button', { type: 'button', class: 'step', 'aria-label': `One less ${p.name} in stock`, html: ICON.minus });
  const plus = h('button', { type: 'button', class: 'step', 'aria-label': `One more ${p.name} in stock`, html: ICON.plus });
  minus.addEventListener('click', () => adjust(-1, minus));
  plus.addEventListener('click', () => adjust(1, plus));
  const deltaId = `delta-${id}`;
  const delta = h('input', { class: 'input delta num', id: deltaId, inputmode: 'numeric', placeholder: '+10 or -5', autocomplete: 'off' });
  const apply = h('button', { type: 'button', class: 'btn btn-sm' }, 'Apply');
  const doApply = async () => {
    const n = parseInt(delta.value.replace(/\s+/g, ''), 10);
    if (!Number.isFinite(n) || n === 0) { delta.setAttribute('aria-invalid', 'true'); delta.focus(); return; }
    delta.removeAttribute('aria-invalid');
    if (await adjust(n, apply)) delta.value = '';
  };
  apply.addEventListener('click', doApply);
  delta.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); doApply(); } });
  return h('tr', { dataset: { id } },
    h('td', { class: 'c-prod' }, h('div', { class: 'prod-name' }), h('div', { class: 'prod-meta muted small' })),
    h('td', { class: 'c-price' }, h('label', { class: 'sr-only', for: priceId }, `Price of ${p.name} in dollars`), priceBox),
    h('td', { class: 'c-stock' }, h('div', { class: 'stock-cell' },
      h('div', { class: 'stepper' }, minus, h('span', { class: 'stock-val num', 'aria-live': 'polite' }), plus),
      h('span', { class: 'stock-tag' }))),
    h('td', { class: 'c-adjust' }, h('label', { class: 'sr-only', for: deltaId }, `Stock to add to ${p.name} (negative to remove)`),
      h('div', { class: 'adjust' }, delta, apply)));
}

function fillRow(r, p) {
  if (!r || !p) return;
  const set = (sel, t) => { const e = r.querySelector(sel); if (e.textContent !== t) e.textContent = t; };
  set('.prod-name', p.name);
  set('.prod-meta', `${p.sku} · ${p.category || 'other'}${p.unit ? ' · per ' + p.unit : ''}${p.active === false ? ' · inactive' : ''}`);
  const price = r.querySelector('.price-edit');
  // Never overwrite what the admin is typing; a live change shows after.
  if (document.activeElement !== price && price.dataset.dirty !== '1') price.value = (p.price_cents / 100).toFixed(2);
  set('.stock-val', String(p.stock));
  const level = p.stock <= 0 ? 'out' : p.stock <= LOW_STOCK ? 'low' : 'ok';
  r.dataset.level = level;
  set('.stock-tag', level === 'out' ? 'Out of stock' : level === 'low' ? 'Low stock' : '');
}

function parseMoney(s) {
  const t = String(s).replace(/[$,\s]/g, '');
  if (!/^\d+(\.\d{1,2})?$/.test(t)) return null;
  return Math.round(parseFloat(t) * 100);
}

// ------------------------------------------------------------ presence

function onPresence(snap) {
  S.presence = new Map(snap.docs.map((d) => [d.id, d]));
  for (const d of snap.docs) if (d.state?.name && d.account) S.names.set(d.account, d.state.name);
  renderOnline();
  renderKpis();
}

function onlinePartners() {
  const by = new Map(); // account -> {tabs, views, since}
  for (const d of S.presence.values()) {
    if (d.role !== 'partner') continue;
    const e = by.get(d.account) || { account: d.account, tabs: 0, views: new Set(), since: d.since, cart: 0, email: d.state?.email };
    e.tabs++;
    if (d.state?.view) e.views.add(d.state.view);
    if (d.state?.cart) e.cart = Math.max(e.cart, d.state.cart);
    if (d.since && (!e.since || d.since < e.since)) e.since = d.since;
    by.set(d.account, e);
  }
  return [...by.values()].sort((a, b) => nameOf(a.account).localeCompare(nameOf(b.account)));
}

function renderOnline() {
  const list = onlinePartners();
  $('#online-count').textContent = list.length ? plural(list.length, 'partner') : '';
  $('#online-empty').hidden = list.length > 0;
  $('#online').replaceChildren(...list.map((e) => h('li', {},
    h('span', { class: 'avatar', 'aria-hidden': 'true' }, initials(nameOf(e.account))),
    h('div', { class: 'o-main' }, h('strong', {}, nameOf(e.account)),
      h('div', { class: 'muted small' }, [...e.views].map((v) => v === 'orders' ? 'their orders' : 'the catalog').join(', ') || 'the portal',
        e.cart ? ` · ${plural(e.cart, 'item')} in cart` : '')),
    h('span', { class: 'muted small o-side' }, e.tabs > 1 ? `${e.tabs} tabs · ` : '', e.since ? `since ${when(e.since)}` : ''))));
}

const initials = (name) => name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join('') || '?';

// ------------------------------------------------------------ activity

const ACTIONS = {
  login: 'signed in', logout: 'signed out', login_failed: 'failed to sign in',
  create: 'created', update: 'updated', delete: 'deleted', page_view: 'opened',
};

// Entries are kept by their seq. The subscription brings them live; a
// read of GET /v1/activity every few seconds fills in what it misses: the
// SDK keys documents by `id` and sees a change by `version`, and activity
// entries have neither of their own (an entry's `id` is the document it
// wrote), so through the SDK most entries collapse into a few.
const activity = new Map(); // seq -> entry

function onActivity(snap) {
  addActivity(snap.docs);
  addActivity((snap.changes || []).map((c) => c.doc));
}

function addActivity(entries) {
  let added = false;
  for (const e of entries) {
    if (!e || typeof e.seq !== 'number' || activity.has(e.seq)) continue;
    activity.set(e.seq, e);
    added = true;
  }
  if (!added) return;
  const docs = [...activity.values()].sort((a, b) => b.seq - a.seq);
  for (const d of docs.slice(500)) activity.delete(d.seq);
  S.activity = docs.slice(0, 200);
  S.errorsAt = docs.filter((d) => d.action === 'client_error').map((d) => Date.parse(d.at));
  renderActivity();
  if (S.view === 'dashboard') { renderCharts(); renderHealth(); }
}

let activityBusy = false;
async function pollActivity() {
  if (activityBusy || !S.account || db.state !== 'live') return;
  activityBusy = true;
  try {
    const { entries } = await db.api('GET', '/v1/activity?limit=100');
    addActivity(entries || []);
  } catch { /* next time */ }
  activityBusy = false;
}

function describe(e) {
  const who = e.role === 'system' ? 'The server' : nameOf(e.account);
  const d = e.data || {};
  const code = (t) => h('span', { class: 'mono' }, t);
  switch (e.action) {
    case 'call': return [who, ' called ', code(d.fn || 'a function'), d.ok === false ? ` — refused: ${(d.error || 'error').replace(/_/g, ' ')}` : ''];
    case 'create': case 'update': case 'delete':
      if (e.col === 'orders') {
        const verb = { create: ' placed order ', update: ' updated order ', delete: ' deleted order ' }[e.action];
        return [who, verb, h('strong', {}, orderNo(e.id))];
      }
      if (e.col === 'products') {
        return [who, ` ${ACTIONS[e.action]} `, S.products.get(e.id)?.name || code(e.id)];
      }
      return [who, ` ${ACTIONS[e.action]} `, code(`${e.col}/${e.id}`)];
    case 'page_view': return [who, ' opened ', code(d.path || d.page || 'a page')];
    case 'client_error': return [who, ' hit a page error: ', code(String(d.message || '').slice(0, 120))];
    case 'login_failed': return ['Failed sign-in', d.email ? ` for ${d.email}` : ''];
    default: return [who, ` ${ACTIONS[e.action] || e.action.replace(/_/g, ' ')}`];
  }
}

function renderActivity() {
  const ol = $('#activity');
  const top = ol.firstElementChild?.dataset.seq;
  ol.replaceChildren(...S.activity.slice(0, 60).map((e) => h('li', {
    dataset: { seq: e.seq, action: e.action }, class: e.action === 'client_error' || e.action === 'login_failed' || e.data?.ok === false ? 'bad' : '',
  },
  h('time', { datetime: e.at, class: 'num' }, new Date(e.at).toLocaleTimeString('en-GB')),
  h('span', { class: 'a-text' }, describe(e)))));
  if (top && ol.firstElementChild && ol.firstElementChild.dataset.seq !== top) {
    for (const li of ol.children) {
      if (li.dataset.seq === top) break;
      li.classList.add('new');
    }
  }
  $('#activity-empty').hidden = S.activity.length > 0;
  $('#act-count').textContent = S.activity.length ? `${S.activity.length} recent` : '';
}

// ------------------------------------------------------------ dashboard

function todays() {
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);
  return [...S.orders.values()].filter((o) => Date.parse(o.created_at) >= midnight.getTime());
}

function renderKpis() {
  const today = todays();
  const live = today.filter((o) => o.status !== 'cancelled');
  const revenue = live.reduce((a, o) => a + (o.total_cents || 0), 0);
  const pending = [...S.orders.values()].filter((o) => o.status === 'pending');
  const online = onlinePartners();
  const set = (id, t) => {
    const e = $(id);
    if (e.textContent === t) return;
    if (e.textContent !== '–') flash(e.closest('.kpi'));
    e.textContent = t;
  };
  set('#kpi-orders', String(today.length));
  $('#kpi-orders-sub').textContent = today.length - live.length ? `${today.length - live.length} cancelled` : 'since midnight';
  set('#kpi-revenue', money(revenue));
  $('#kpi-revenue-sub').textContent = live.length ? `avg ${money(revenue / live.length)} per order` : 'no orders yet';
  set('#kpi-pending', String(pending.length));
  const oldest = pending.sort((a, b) => a.created_at.localeCompare(b.created_at))[0];
  $('#kpi-pending-sub').textContent = oldest ? `oldest ${ago(oldest.created_at)}` : 'all caught up';
  set('#kpi-online', String(online.length));
  $('#kpi-online-sub').textContent = online.length ? online.slice(0, 2).map((e) => nameOf(e.account)).join(', ') + (online.length > 2 ? '…' : '') : 'nobody right now';
}

function renderDashboard() {
  renderKpis();
  renderCharts();
  renderOnline();
  renderActivity();
  renderHealth();
}

const charts = {};
const TEAL = '#0f766e';

function chartDefaults() {
  const C = window.Chart;
  C.defaults.font.family = getComputedStyle(document.body).fontFamily;
  C.defaults.font.size = 12;
  C.defaults.color = '#4b5a69';
  C.defaults.plugins.legend.display = false;
  C.defaults.maintainAspectRatio = false;
  C.defaults.animation.duration = 300;
}

function minuteLabels(n) {
  const now = Date.now();
  const start = Math.floor(now / 60000) - (n - 1);
  return Array.from({ length: n }, (_, i) => {
    const d = new Date((start + i) * 60000);
    return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  });
}

function perMinute(times, n) {
  const start = Math.floor(Date.now() / 60000) - (n - 1);
  const out = new Array(n).fill(0);
  for (const t of times) {
    const i = Math.floor(t / 60000) - start;
    if (i >= 0 && i < n) out[i]++;
  }
  return out;
}

function makeChart(id, config) {
  if (charts[id]) return charts[id];
  const C = window.Chart;
  if (!C) return null;
  if (!makeChart.init) { chartDefaults(); makeChart.init = true; }
  const grid = { color: '#eef1f4' };
  config.options = {
    responsive: true,
    scales: { x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } }, y: { beginAtZero: true, grid, ticks: { precision: 0 } } },
    ...config.options,
  };
  charts[id] = new C($(`#${id}`), config);
  return charts[id];
}

function renderCharts() {
  if (!window.Chart || S.view !== 'dashboard') return;
  const N = 30;
  const labels = minuteLabels(N);
  // Orders per minute, last 30 minutes.
  const opm = perMinute([...S.orders.values()].map((o) => Date.parse(o.created_at)), N);
  const c1 = makeChart('chart-opm', {
    type: 'bar',
    data: { labels, datasets: [{ label: 'Orders', data: opm, backgroundColor: TEAL, borderRadius: 4, maxBarThickness: 18 }] },
  });
  if (c1) { c1.data.labels = labels; c1.data.datasets[0].data = opm; c1.update('none'); }

  // Revenue today, cumulative by hour.
  // From the first order's hour (or 6 hours back, whichever is earlier).
  const hourNow = new Date().getHours();
  const today = todays().filter((o) => o.status !== 'cancelled');
  const first = Math.min(Math.max(0, hourNow - 6), ...today.map((o) => new Date(o.created_at).getHours()));
  // Each point is the total at the end of its hour; the last one is now.
  const hours = Array.from({ length: hourNow - first + 1 }, (_, i) =>
    (first + i === hourNow ? 'now' : `${String(first + i + 1).padStart(2, '0')}:00`));
  const byHour = new Array(hours.length).fill(0);
  for (const o of today) byHour[new Date(o.created_at).getHours() - first] += o.total_cents / 100;
  let run = 0;
  const cum = byHour.map((v) => (run += v));
  $('#rev-total').textContent = money(run * 100);
  const c2 = makeChart('chart-rev', {
    type: 'line',
    data: { labels: hours, datasets: [{ label: 'Revenue', data: cum, borderColor: '#2563eb', backgroundColor: 'rgba(37,99,235,.12)', fill: true, cubicInterpolationMode: 'monotone', pointRadius: 0, pointHoverRadius: 4 }] },
    options: { scales: { x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 16 } }, y: { beginAtZero: true, grid: { color: '#eef1f4' }, ticks: { callback: (v) => '$' + Number(v).toLocaleString('en-US') } } },
      plugins: { tooltip: { callbacks: { label: (c) => money(c.parsed.y * 100) } } } },
  });
  if (c2) { c2.data.labels = hours; c2.data.datasets[0].data = cum; c2.update('none'); }

  // Top products by units ordered (orders not cancelled).
  const units = new Map();
  for (const o of S.orders.values()) {
    if (o.status === 'cancelled') continue;
    for (const it of o.items || []) units.set(it.name, (units.get(it.name) || 0) + it.qty);
  }
  const top = [...units].sort((a, b) => b[1] - a[1]).slice(0, 6);
  const c3 = makeChart('chart-top', {
    type: 'bar',
    data: { labels: top.map((t) => t[0]), datasets: [{ label: 'Units', data: top.map((t) => t[1]), backgroundColor: '#7c3aed', borderRadius: 4, maxBarThickness: 16 }] },
    options: { indexAxis: 'y', scales: { x: { beginAtZero: true, grid: { color: '#eef1f4' }, ticks: { precision: 0 } }, y: { grid: { display: false }, ticks: { autoSkip: false, callback(v) { const l = this.getLabelForValue(v); return l.length > 22 ? l.slice(0, 21) + '…' : l; } } } } },
  });
  if (c3) { c3.data.labels = top.map((t) => t[0]); c3.data.datasets[0].data = top.map((t) => t[1]); c3.update('none'); }

  // Client errors per minute (client_error activity events).
  const epm = perMinute(S.errorsAt, N);
  const c4 = makeChart('chart-err', {
    type: 'bar',
    data: { labels, datasets: [{ label: 'Errors', data: epm, backgroundColor: '#dc2626', borderRadius: 4, maxBarThickness: 18 }] },
  });
  if (c4) { c4.data.labels = labels; c4.data.datasets[0].data = epm; c4.update('none'); }
}

// ------------------------------------------------------------ health

async function tick() {
  // Relative times and the minute charts move on by themselves.
  for (const t of $$('time.ago')) t.textContent = ago(t.getAttribute('datetime'));
  if (S.view === 'dashboard') { renderKpis(); renderCharts(); }
  if (!S.account || document.hidden && S.view !== 'dashboard') return;
  const [health, metrics] = await Promise.all([
    db.api('GET', '/v1/health').catch(() => null),
    fetch('/metrics', { headers: authHeaders(), cache: 'no-store' }).then((r) => (r.ok ? r.text() : null)).catch(() => null),
  ]);
  const m = metrics ? parseMetrics(metrics) : null;
  const prev = S.lastMetrics;
  S.health = { health, m, prev, at: Date.now() };
  if (m) S.lastMetrics = { m, at: Date.now() };
  if (S.view === 'dashboard') renderHealth();
}

function parseMetrics(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const [, name, labels = '', v] = m;
    (out[name] ||= []).push({ labels, value: Number(v) });
  }
  return out;
}

const metric = (m, name, pred) => (m?.[name] || []).filter((s) => !pred || pred(s.labels)).reduce((a, s) => a + s.value, 0);

function renderHealth() {
  const dl = $('#health');
  const st = $('#health-status');
  const hs = S.health;
  if (!hs) { st.textContent = '…'; return; }
  const { health, m, prev } = hs;
  const status = health?.status || (db.state === 'live' ? 'unknown' : 'unreachable');
  st.textContent = status === 'ok' ? 'All good' : status;
  st.dataset.status = status;
  const rows = [];
  const row = (label, value, sub, level) => rows.push(h('div', { class: 'hrow', dataset: { level: level || '' } },
    h('dt', {}, label), h('dd', {}, h('strong', { class: 'num' }, value), sub ? h('span', { class: 'muted small' }, sub) : null)));
  if (m) {
    const rt = metric(m, 'livedb_realtime_connections');
    const http = metric(m, 'livedb_connections_open');
    row('Connections', String(rt), `live (WebSocket) · ${http} HTTP open`);
  } else {
    row('Connections', '–', 'metrics not available');
  }
  // Commit latency: the mean over the last interval, else over all time.
  let commit = null;
  if (m) {
    const sum = metric(m, 'livedb_commit_duration_seconds_sum');
    const cnt = metric(m, 'livedb_commit_duration_seconds_count');
    const ps = prev ? metric(prev.m, 'livedb_commit_duration_seconds_sum') : 0;
    const pc = prev ? metric(prev.m, 'livedb_commit_duration_seconds_count') : 0;
    if (cnt - pc > 0) commit = ((sum - ps) / (cnt - pc)) * 1000;
    else if (cnt > 0) commit = (sum / cnt) * 1000;
  }
  const probe = health?.checks?.database?.ms;
  row('Commit latency', commit != null ? `${commit.toFixed(commit < 10 ? 2 : 0)} ms` : probe != null ? `${probe.toFixed(2)} ms` : '–',
    probe != null ? `health probe ${probe.toFixed(2)} ms` : 'mean per commit', commit != null && commit > 50 ? 'warn' : '');
  // Backup age: /v1/health's backups check (age_s once a good backup exists).
  const b = health?.checks?.backups || health?.checks?.backup || null;
  const age = b?.age_s ?? (b?.at ? (Date.now() - Date.parse(b.at)) / 1000 : null);
  const bad = b && (b.status === 'stale' || b.status === 'failing');
  if (age == null) {
    row('Backup age', 'No backups yet', b?.message ? b.message
      : b?.interval_s > 0 ? `automatic, every ${fmtAge(b.interval_s)}` : 'take one with livedb backup', bad ? 'bad' : 'warn');
  } else {
    const sub = b.status === 'failing' ? `last backup failed${b.message ? ': ' + b.message : ''}`
      : b.behind > 0 ? `${plural(b.behind, 'change')} since` : 'up to date';
    row('Backup age', fmtAge(age), b.status === 'stale' ? `${sub} · stale` : sub, bad ? 'bad' : '');
  }
  // Error rate: server errors (5xx) among HTTP answers over the interval,
  // and client_error events in the last 5 minutes.
  if (m && prev) {
    const is5 = (l) => /status="5/.test(l);
    const tot = metric(m, 'livedb_http_requests_total') - metric(prev.m, 'livedb_http_requests_total');
    const bad = metric(m, 'livedb_http_requests_total', is5) - metric(prev.m, 'livedb_http_requests_total', is5);
    const pct = tot > 0 ? (100 * bad) / tot : 0;
    row('Server error rate', `${pct.toFixed(pct && pct < 1 ? 2 : 0)}%`, `${bad} of ${tot} requests in ${Math.round((hs.at - prev.at) / 1000)} s`, pct > 1 ? 'bad' : '');
  } else {
    row('Server error rate', '–', 'measuring…');
  }
  const since = Date.now() - 5 * 60000;
  const ce = S.errorsAt.filter((t) => t >= since).length;
  row('Client errors', `${(ce / 5).toFixed(ce % 5 ? 1 : 0)}/min`, `${ce} in the last 5 min`, ce ? 'warn' : '');
  const w = health?.checks?.writer;
  if (w) row('Writer', w.status, w.queue != null ? `queue ${w.queue}` : '', w.status !== 'ok' ? 'bad' : '');
  const d = health?.checks?.disk;
  if (d) row('Disk', d.status, d.free_bytes != null ? `${fmtBytes(d.free_bytes)} free` : '', d.status !== 'ok' ? 'bad' : '');
  dl.replaceChildren(...rows);
}

function fmtAge(s) {
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}

function fmtBytes(n) {
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(n < 10 && i ? 1 : 0)} ${u[i]}`;
}

// ------------------------------------------------------------ live or stale

function renderNotices() {
  const stale = db.state !== 'live' || S.ordersStale || S.productsStale;
  const box = $('#stale');
  box.hidden = !stale || db.state === 'connecting' && !S.ordersLoaded;
  if (stale) {
    box.replaceChildren(icon('cloudOff'), h('span', {}, db.state === 'offline'
      ? 'You are offline. Orders, stock and prices shown are saved copies and may be out of date; changes cannot be made until the connection is back.'
      : 'Connection lost, reconnecting… What you see may be out of date.'));
  }
  document.body.classList.toggle('is-stale', stale);
}
