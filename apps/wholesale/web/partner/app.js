// The partner portal: a live catalog (stock and prices change on screen as
// the warehouse changes them), a cart that checks out through the
// place_order server function, and the partner's own orders with their
// status live. Works offline for browsing (the SDK's cache, and the page
// files kept by sw.js); an order placed offline is queued by the SDK and
// sent once when the connection is back.
import { LiveDB } from '/client/livedb.js';
import {
  h, $, flash, money, when, orderNo, plural, statusBadge, newestFirst, ICON, icon, toast,
  bindConnection, errorText, keepOffline, wireLogin, showLogin, logOut,
  resumeSession, openFor, syncChildren,
} from '/shared/wholesale.js';

const db = new LiveDB({ name: 'wholesale' });
window.__portal = { db }; // for the browser tests and for poking around in devtools

const LOW_STOCK = 10;
const small = matchMedia('(max-width: 900px)');

const S = {
  account: null,
  products: new Map(),   // id -> doc, active and inactive
  productsStale: false,
  productsFromCache: false,
  orders: [],            // newest first
  ordersStale: false,
  status: new Map(),     // order id -> last status seen (to notify on change)
  ordersLoaded: false,
  cart: new Map(),       // product id -> qty
  coid: null,            // client_order_id of the order being placed (a retry reuses it)
  shortOf: new Map(),    // product id -> available, from the last insufficient_stock
  q: '',
  cat: '',
  view: 'catalog',
  queued: [],            // calls the SDK holds until it is back online
  unseenOrders: 0,
  subs: [],
};

// ------------------------------------------------------------ start

boot();

async function boot() {
  keepOffline('/partner/sw.js');
  setIcons();
  wireStatic();
  db.on('auth', () => signedOut('Your session has ended. Please sign in again.'));
  await resumeSession(db, start, showSignIn);
}

function setIcons() {
  $('#cart-icon').innerHTML = ICON.cart;
  $('#logout-icon').innerHTML = ICON.logout;
  $('#search-icon').innerHTML = ICON.search;
  $('#cart-close-icon').innerHTML = ICON.close;
}

function showSignIn(message) {
  showLogin(message, ['#app', '#not-partner']);
}

function start(account) {
  S.account = account;
  if (!openFor(account, account.role === 'partner', { card: '#not-partner', who: '#np-who' })) return;
  $('#who-name').textContent = account.name || '';
  $('#who-email').textContent = account.email || '';
  loadCart();
  if (!S.wired) { // once a page, though a session that ended may sign in again
    S.wired = true;
    bindConnection(db, $('#conn'), renderNotices);
    db.on('queue', onQueue);
    db.on('call', onQueuedCallDone);
  }
  S.subs.push(db.collection('products').onSnapshot(onProducts));
  S.subs.push(db.collection('orders').where('partner_id', 'eq', account.id).onSnapshot(onOrders));
  route();
}

function signedOut(message) {
  for (const u of S.subs.splice(0)) u();
  S.account = null;
  // What was shown belonged to that session.
  S.products = new Map();
  S.orders = [];
  S.status.clear();
  S.ordersLoaded = false;
  $('#products').replaceChildren();
  $('#order-list').replaceChildren();
  showSignIn(message);
}

// ------------------------------------------------------------ static wiring

function wireStatic() {
  wireLogin(db, start);
  const logout = () => logOut(db, S.subs);
  $('#logout').addEventListener('click', logout);
  $('#np-logout').addEventListener('click', logout);
  $('#search').addEventListener('input', (e) => { S.q = e.target.value.trim().toLowerCase(); renderCatalog(); });
  $('#checkout').addEventListener('click', checkout);
  $('#cart-open').addEventListener('click', () => openCart(true));
  $('#cart-bar').addEventListener('click', () => openCart(true));
  $('#cart-close').addEventListener('click', () => openCart(false));
  $('#scrim').addEventListener('click', () => openCart(false));
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && $('#cart').classList.contains('open')) openCart(false); });
  $('#cart-notes').addEventListener('input', () => saveCart());
  addEventListener('hashchange', route);
  small.addEventListener('change', () => openCart(false));
  // Another tab of this portal changed the cart: show the same cart here.
  addEventListener('storage', (e) => {
    if (S.account && e.key === cartKey()) { loadCart(); renderCart(); renderCatalog(); }
  });
}

function route() {
  const view = location.hash === '#orders' ? 'orders' : 'catalog';
  S.view = view;
  $('#view-catalog').hidden = view !== 'catalog';
  $('#view-orders').hidden = view !== 'orders';
  $('#tab-catalog').toggleAttribute('aria-current', false);
  $('#tab-orders').toggleAttribute('aria-current', false);
  $(`#tab-${view}`).setAttribute('aria-current', 'page');
  if (view === 'orders') {
    S.unseenOrders = 0;
    renderOrdersBadge();
    openCart(false);
  }
  renderCartBar();
  if (S.account) presence();
}

function presence() {
  try {
    db.presence({ page: 'partner', view: S.view, name: S.account.name, email: S.account.email, cart: cartCount() });
  } catch { /* not connected: the SDK sends it on reconnect, or the next change will */ }
}

// ------------------------------------------------------------ products

function onProducts(snap) {
  const first = S.products.size === 0;
  S.productsStale = !!snap.stale;
  S.productsFromCache = !!snap.fromCache;
  const before = S.products;
  S.products = new Map(snap.docs.map((d) => [d.id, d]));
  if (!snap.stale && !snap.fromCache) markLive();
  renderCatalog();
  // What changed, visibly: the price or stock that moved flashes.
  if (!first) {
    for (const c of snap.changes || []) {
      if (c.op !== 'modified') continue;
      const old = before.get(c.id);
      const card = document.querySelector(`.product[data-id="${CSS.escape(c.id)}"]`);
      if (!old || !card || !c.doc) continue;
      if (old.price_cents !== c.doc.price_cents) priceMoved(card, old.price_cents, c.doc.price_cents);
      if (old.stock !== c.doc.stock) flash(card.querySelector('.p-stock'));
      flash(card);
    }
  }
  renderCart();
  renderNotices();
}

function priceMoved(card, from, to) {
  const was = card.querySelector('.p-was');
  was.textContent = `was ${money(from)}`;
  was.dataset.dir = to > from ? 'up' : 'down';
  was.hidden = false;
  flash(card.querySelector('.p-price'));
  clearTimeout(was._t);
  was._t = setTimeout(() => { was.hidden = true; }, 15000);
  if (S.cart.has(card.dataset.id)) {
    toast(`${card.querySelector('.p-name').textContent} is now ${money(to)} (was ${money(from)}).`,
      { title: 'Price changed for an item in your cart', kind: 'warn' });
  }
}

function visibleProducts() {
  const all = [...S.products.values()].filter((p) => p.active !== false);
  return all.filter((p) => (!S.cat || p.category === S.cat) &&
    (!S.q || `${p.name} ${p.sku} ${p.category || ''}`.toLowerCase().includes(S.q)))
    .sort((a, b) => (a.category || '').localeCompare(b.category || '') || a.name.localeCompare(b.name));
}

function renderCatalog() {
  renderCategories();
  const list = visibleProducts();
  const box = $('#products');
  syncChildren(box, list, productCard, fillProduct);
  $('#no-products').hidden = list.length > 0 || S.products.size === 0;
  const active = [...S.products.values()].filter((p) => p.active !== false).length;
  $('#catalog-count').textContent = S.products.size === 0 ? 'Loading…'
    : list.length === active ? plural(active, 'product') : `${list.length} of ${plural(active, 'product')}`;
  box.classList.toggle('stale-mark', isStale());
}

function renderCategories() {
  const counts = new Map();
  for (const p of S.products.values()) {
    if (p.active === false) continue;
    counts.set(p.category || 'other', (counts.get(p.category || 'other') || 0) + 1);
  }
  const cats = [...counts.keys()].sort();
  const box = $('#categories');
  const key = cats.map((c) => `${c}:${counts.get(c)}`).join(',') + '|' + S.cat;
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  const chip = (value, label, n) => h('button', {
    type: 'button', class: 'chip', 'aria-pressed': String(S.cat === value),
    onclick: () => { S.cat = value; renderCatalog(); },
  }, label, h('span', { class: 'count' }, n));
  box.replaceChildren(chip('', 'All', total), ...cats.map((c) => chip(c, cap(c), counts.get(c))));
}

const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);

function productCard(p) {
  const qtyId = `qty-${p.id}`;
  const qty = h('input', { class: 'qty-input num', id: qtyId, type: 'number', min: '1', step: '1', value: '1', inputmode: 'numeric' });
  const minus = h('button', { type: 'button', class: 'step', 'aria-label': 'One less', html: ICON.minus });
  const plus = h('button', { type: 'button', class: 'step', 'aria-label': 'One more', html: ICON.plus });
  minus.addEventListener('click', () => { qty.value = Math.max(1, (parseInt(qty.value, 10) || 1) - 1); });
  plus.addEventListener('click', () => { qty.value = (parseInt(qty.value, 10) || 0) + 1; });
  const add = h('button', { type: 'button', class: 'btn btn-primary btn-sm add' }, 'Add to cart');
  add.addEventListener('click', () => {
    const n = parseInt(qty.value, 10);
    if (!(n >= 1)) { qty.value = 1; qty.focus(); return; }
    addToCart(p.id, n);
    qty.value = 1;
  });
  qty.addEventListener('keydown', (e) => { if (e.key === 'Enter') add.click(); });
  return h('article', { class: 'product', dataset: { id: p.id } },
    h('div', { class: 'p-top' }, h('span', { class: 'p-cat' }), h('span', { class: 'p-sku mono' })),
    h('h3', { class: 'p-name' }),
    h('div', { class: 'p-unit' }),
    h('div', { class: 'p-price-row' }, h('span', { class: 'p-price num' }), h('span', { class: 'p-was', hidden: true })),
    h('div', { class: 'p-stock' }),
    h('div', { class: 'p-actions' },
      h('label', { class: 'sr-only', for: qtyId }, `Quantity of ${p.name}`),
      h('div', { class: 'stepper' }, minus, qty, plus), add),
    h('div', { class: 'p-incart' }));
}

function fillProduct(card, p) {
  const set = (sel, text) => { const e = card.querySelector(sel); if (e.textContent !== text) e.textContent = text; };
  set('.p-cat', p.category || 'other');
  set('.p-sku', p.sku);
  set('.p-name', p.name);
  set('.p-unit', p.unit ? `per ${p.unit}` : '');
  set('.p-price', money(p.price_cents));
  const stock = card.querySelector('.p-stock');
  const level = p.stock <= 0 ? 'out' : p.stock <= LOW_STOCK ? 'low' : 'ok';
  stock.dataset.level = level;
  set('.p-stock', level === 'out' ? 'Out of stock' : level === 'low' ? `Only ${p.stock} left` : `${p.stock} in stock`);
  card.classList.toggle('out', level === 'out');
  card.querySelector('.add').disabled = level === 'out';
  const inCart = S.cart.get(p.id) || 0;
  set('.p-incart', inCart ? `${inCart} in your cart` : '');
}

// ------------------------------------------------------------ cart

const cartKey = () => `wholesale.cart.${S.account?.id}`;

function loadCart() {
  S.cart = new Map();
  try {
    const saved = JSON.parse(localStorage.getItem(cartKey()) || '{}');
    for (const [id, n] of Object.entries(saved.items || {})) if (n > 0) S.cart.set(id, n);
    $('#cart-notes').value = saved.notes || '';
    S.coid = saved.coid || null;
  } catch { /* a bad saved cart is an empty one */ }
}

function saveCart() {
  try {
    localStorage.setItem(cartKey(), JSON.stringify({
      items: Object.fromEntries(S.cart), notes: $('#cart-notes').value, coid: S.coid,
    }));
  } catch { /* storage full or denied: the cart lives in memory only */ }
}

const cartCount = () => [...S.cart.values()].reduce((a, b) => a + b, 0);

function cartChanged() {
  S.coid = null; // a different order now: a new client_order_id when placed
  saveCart();
  renderCart();
  renderCatalog();
  presence();
}

function addToCart(id, n) {
  S.cart.set(id, (S.cart.get(id) || 0) + n);
  S.shortOf.delete(id);
  cartChanged();
  const p = S.products.get(id);
  const badge = $('#cart-badge');
  flash(badge, 'bump');
  if (small.matches) toast(`${n} × ${p?.name || id}`, { title: 'Added to your cart', kind: 'ok', ms: 2500, key: 'added' });
}

function setQty(id, n) {
  if (n > 0) S.cart.set(id, n); else S.cart.delete(id);
  S.shortOf.delete(id);
  if (!S.shortOf.size) showCartError(null);
  cartChanged();
}

function cartLine(id, qty) {
  const p = S.products.get(id);
  const name = p?.name || 'A product no longer in the catalog';
  const price = p?.price_cents ?? 0;
  const input = h('input', {
    class: 'qty-input num', type: 'number', min: '0', step: '1', value: String(qty),
    'aria-label': `Quantity of ${name}`,
  });
  input.addEventListener('change', () => setQty(id, Math.max(0, parseInt(input.value, 10) || 0)));
  const minus = h('button', { type: 'button', class: 'step', 'aria-label': `One less ${name}`, html: ICON.minus, onclick: () => setQty(id, qty - 1) });
  const plus = h('button', { type: 'button', class: 'step', 'aria-label': `One more ${name}`, html: ICON.plus, onclick: () => setQty(id, qty + 1) });
  const remove = h('button', { type: 'button', class: 'icon-btn remove', 'aria-label': `Remove ${name}`, html: ICON.trash, onclick: () => setQty(id, 0) });
  // "only N left": from the server's insufficient_stock answer, or already
  // visible in the live stock before the order is placed.
  let warn = null;
  const avail = S.shortOf.has(id) ? S.shortOf.get(id) : p && qty > p.stock ? p.stock : null;
  if (!p) warn = 'No longer available';
  else if (p.active === false) warn = 'No longer available';
  else if (avail != null) warn = avail <= 0 ? 'Out of stock' : `Only ${avail} left`;
  return h('li', { class: 'line' + (warn ? ' short' : ''), dataset: { id } },
    h('div', { class: 'line-main' },
      h('div', { class: 'line-name' }, name),
      h('div', { class: 'line-sub muted small num' }, `${money(price)} each`),
      warn ? h('div', { class: 'line-warn', role: 'note' }, icon('alert'), warn) : null),
    h('div', { class: 'line-qty' }, h('div', { class: 'stepper stepper-sm' }, minus, input, plus), remove),
    h('div', { class: 'line-total num' }, money(price * qty)));
}

function renderCart() {
  const lines = [...S.cart].map(([id, qty]) => cartLine(id, qty));
  const ul = $('#cart-lines');
  // Keep the focused quantity box focused across a re-render.
  const focused = document.activeElement?.closest?.('.line');
  const focusId = focused?.dataset.id;
  const focusSel = focused && document.activeElement.classList.contains('qty-input') ? '.qty-input' : null;
  ul.replaceChildren(...lines);
  if (focusId && focusSel) ul.querySelector(`.line[data-id="${CSS.escape(focusId)}"] ${focusSel}`)?.focus();
  const n = cartCount();
  $('#cart-empty').hidden = n > 0;
  $('#cart-foot').hidden = n === 0;
  let total = 0;
  for (const [id, qty] of S.cart) total += (S.products.get(id)?.price_cents || 0) * qty;
  $('#cart-total').textContent = money(total);
  const badge = $('#cart-badge');
  badge.hidden = n === 0;
  badge.textContent = n > 99 ? '99+' : String(n);
  $('#cart-open').setAttribute('aria-label', n ? `Cart, ${plural(n, 'item')}` : 'Cart, empty');
  $('#cart-bar-count').textContent = plural(n, 'item');
  $('#cart-bar-total').textContent = money(total);
  renderCartBar();
  const offline = db.state !== 'live';
  $('#checkout').textContent = offline ? 'Place order (sends when online)' : 'Place order';
}

function renderCartBar() {
  $('#cart-bar').hidden = !(S.view === 'catalog' && cartCount() > 0);
}

function openCart(open) {
  const cart = $('#cart');
  const wasOpen = cart.classList.contains('open');
  if (!small.matches) {
    cart.classList.remove('open');
    sheet(cart, false);
    $('#scrim').hidden = true;
    document.body.classList.remove('sheet-open');
    if (open) {
      if (S.view !== 'catalog') location.hash = '#catalog';
      cart.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
      flash(cart, 'ring');
      ($('#checkout').offsetParent ? $('#checkout') : $('#cart-close')).focus({ preventScroll: true });
    }
    return;
  }
  if (open && S.view !== 'catalog') location.hash = '#catalog';
  cart.classList.toggle('open', open);
  sheet(cart, open);
  $('#scrim').hidden = !open;
  document.body.classList.toggle('sheet-open', open);
  $('#cart-open').setAttribute('aria-expanded', String(open));
  if (open) $('#cart-close').focus();
  else if (wasOpen) $('#cart-open').focus();
}

// On phones the cart is a sheet over the page: a modal dialog while open.
function sheet(el, open) {
  if (open) {
    el.setAttribute('role', 'dialog');
    el.setAttribute('aria-modal', 'true');
  } else {
    el.removeAttribute('role');
    el.removeAttribute('aria-modal');
  }
}

function showCartError(message) {
  const box = $('#cart-error');
  box.hidden = !message;
  box.replaceChildren();
  if (message) box.append(icon('alert'), h('div', {}, message));
}

async function checkout() {
  if (!cartCount()) return;
  const btn = $('#checkout');
  const items = [...S.cart].map(([product_id, qty]) => ({ product_id, qty }));
  const notes = $('#cart-notes').value.trim();
  if (!S.coid) S.coid = newId();
  saveCart();
  const args = { items, client_order_id: S.coid };
  if (notes) args.notes = notes;
  btn.disabled = true;
  btn.textContent = 'Placing order…';
  showCartError(null);
  try {
    const res = await db.call('place_order', args, { queue: true });
    if (res && res.queued) {
      toast('It will be sent as soon as the connection is back. You can keep browsing.',
        { title: 'Order saved on this device', kind: 'warn', ms: 8000 });
    } else {
      const o = res?.order;
      toast(h('span', {}, `${plural(o?.items?.length || items.length, 'line')}, ${money(o?.total_cents)}. `,
        h('a', { href: '#orders' }, 'Track it in My orders')),
      { title: `Order ${orderNo(o?.id)} placed`, kind: 'ok' });
    }
    S.cart.clear();
    S.shortOf.clear();
    S.coid = null;
    $('#cart-notes').value = '';
    saveCart();
    renderCart();
    renderCatalog();
    presence();
    if (small.matches) openCart(false);
  } catch (err) {
    orderFailed(err);
  } finally {
    btn.disabled = false;
    renderCart();
  }
}

// An order the server refused: say why, next to the lines concerned.
function orderFailed(err, queued) {
  S.shortOf.clear();
  if (err?.code === 'insufficient_stock' && Array.isArray(err.details)) {
    const parts = [];
    for (const d of err.details) {
      S.shortOf.set(d.product_id, d.available);
      const name = S.products.get(d.product_id)?.name || d.product_id;
      parts.push(d.available > 0 ? `${name}: only ${d.available} left (you asked for ${d.requested})`
        : `${name}: out of stock`);
    }
    showCartError(h('div', {}, h('strong', {}, queued ? 'Your saved order could not be placed: not enough stock.' : 'Not enough stock for your order.'),
      h('ul', { class: 'short-list' }, parts.map((t) => h('li', {}, t))),
      h('button', { type: 'button', class: 'btn btn-sm fix', onclick: fitToStock }, 'Change to what is available')));
  } else if (err?.code === 'not_found') {
    showCartError('A product in your cart is no longer in the catalog. Remove it and try again.');
  } else if (err?.code === 'invalid') {
    showCartError(`The order was refused: ${err.message}`);
  } else {
    showCartError(`The order was not placed. ${errorText(err)}`);
  }
  S.coid = null;
  saveCart();
  renderCart();
  if (small.matches) openCart(true);
  else $('#cart-error').scrollIntoView({ block: 'nearest' });
}

function fitToStock() {
  for (const [id, avail] of S.shortOf) {
    if (avail > 0) S.cart.set(id, avail); else S.cart.delete(id);
  }
  S.shortOf.clear();
  showCartError(null);
  cartChanged();
}

function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
}

// ------------------------------------------------------------ queued (offline) orders

function onQueue(pending) {
  S.queued = (Array.isArray(pending) ? pending : []).filter((e) => (e.fn || e.name) === 'place_order');
  renderQueued();
}

function onQueuedCallDone(entry, outcome) {
  if ((entry?.fn || entry?.name) !== 'place_order') return;
  const failed = outcome instanceof Error || (outcome && outcome.code && !outcome.order);
  if (failed) {
    // Put the lines back in the cart, so the partner can fix and resend.
    for (const it of entry.args?.items || []) S.cart.set(it.product_id, (S.cart.get(it.product_id) || 0) + it.qty);
    saveCart();
    renderCatalog();
    orderFailed(outcome, true);
    toast(errorText(outcome), { title: 'A saved order could not be placed', kind: 'error', ms: 10000 });
  } else {
    const o = outcome?.order;
    toast(`${money(o?.total_cents)} — now with the warehouse.`, { title: `Saved order ${orderNo(o?.id)} sent`, kind: 'ok' });
  }
}

function renderQueued() {
  const n = S.queued.length;
  const box = $('#queued');
  box.hidden = n === 0;
  box.replaceChildren(icon('clock'), h('span', {}, n === 1 ? '1 order is saved on this device and will be sent when the connection is back.'
    : `${n} orders are saved on this device and will be sent when the connection is back.`));
  $('#no-orders').hidden = S.orders.length > 0 || n > 0;
  const list = $('#pending-sends');
  list.replaceChildren(...S.queued.map((e) => {
    const items = e.args?.items || [];
    let total = 0;
    for (const it of items) total += (S.products.get(it.product_id)?.price_cents || 0) * it.qty;
    return h('article', { class: 'order card queued' },
      h('header', { class: 'order-head' },
        h('div', {}, h('h3', {}, 'Waiting to send'), h('div', { class: 'muted small' }, e.at ? `Saved ${when(e.at)}` : 'Saved on this device')),
        h('span', { class: 'status', dataset: { status: 'queued' } }, 'Not sent yet')),
      h('ul', { class: 'items' }, items.map((it) => h('li', {},
        h('span', { class: 'num qty' }, `${it.qty} ×`), h('span', {}, S.products.get(it.product_id)?.name || it.product_id)))),
      h('footer', { class: 'order-foot' }, h('span', { class: 'muted small' }, 'Estimated total'), h('strong', { class: 'num' }, money(total))));
  }));
}

// ------------------------------------------------------------ orders

const STATUS_NEWS = {
  confirmed: 'The warehouse confirmed your order.',
  packed: 'Your order is packed.',
  shipped: 'Your order is on its way.',
  delivered: 'Your order was delivered.',
  cancelled: 'Your order was cancelled.',
  pending: 'Your order is waiting for the warehouse.',
};

function onOrders(snap) {
  S.ordersStale = !!snap.stale;
  S.orders = [...snap.docs].sort(newestFirst);
  if (!snap.stale && !snap.fromCache) markLive();
  const changed = [];
  for (const o of S.orders) {
    const was = S.status.get(o.id);
    if (S.ordersLoaded && was && was !== o.status) changed.push(o);
    S.status.set(o.id, o.status);
  }
  S.ordersLoaded = true;
  renderOrders();
  for (const o of changed) {
    toast(STATUS_NEWS[o.status] || `Now ${o.status}.`, {
      title: `Order ${orderNo(o.id)} is ${o.status}`, kind: o.status === 'cancelled' ? 'warn' : 'info', ms: 8000, key: `order-${o.id}`,
    });
    flash(document.querySelector(`.order[data-id="${CSS.escape(o.id)}"]`));
    if (S.view !== 'orders') S.unseenOrders++;
  }
  renderOrdersBadge();
  renderNotices();
}

function renderOrdersBadge() {
  const b = $('#orders-badge');
  b.hidden = !S.unseenOrders;
  b.textContent = String(S.unseenOrders);
}

const STEPS = ['pending', 'confirmed', 'packed', 'shipped', 'delivered'];

function renderOrders() {
  const box = $('#order-list');
  const open = new Set([...box.querySelectorAll('details[open]')].map((d) => d.closest('.order').dataset.id));
  box.replaceChildren(...S.orders.map((o) => orderCard(o, open.has(o.id))));
  $('#no-orders').hidden = S.orders.length > 0 || S.queued.length > 0;
  box.classList.toggle('stale-mark', isStale());
}

function orderCard(o, open) {
  const at = STEPS.indexOf(o.status);
  const track = o.status === 'cancelled'
    ? h('div', { class: 'track cancelled' }, 'Cancelled', o.history?.length ? ` · ${when(o.history[o.history.length - 1].at)}` : '')
    : h('ol', { class: 'track', 'aria-label': `Progress: ${o.status}` }, STEPS.map((s, i) =>
      h('li', { class: i < at ? 'done' : i === at ? 'now' : '', 'aria-current': i === at ? 'step' : null }, cap(s))));
  const items = o.items || [];
  const offline = db.state !== 'live';
  const cancel = o.status === 'pending'
    ? h('button', {
      type: 'button', class: 'btn btn-sm btn-danger', disabled: offline,
      title: offline ? 'Cancelling needs a connection' : null, onclick: (e) => cancelOrder(o, e.currentTarget),
    }, 'Cancel order')
    : null;
  return h('article', { class: 'order card', dataset: { id: o.id, status: o.status } },
    h('header', { class: 'order-head' },
      h('div', {}, h('h3', {}, `Order ${orderNo(o.id)}`),
        h('div', { class: 'muted small' }, `Placed ${when(o.created_at)} · ${plural(items.reduce((a, it) => a + it.qty, 0), 'unit')}`)),
      statusBadge(o.status)),
    track,
    h('details', { open: open || null },
      h('summary', {}, `${plural(items.length, 'product')}${o.notes ? ' · notes' : ''}`),
      h('ul', { class: 'items' }, items.map((it) => h('li', {},
        h('span', { class: 'num qty' }, `${it.qty} ×`), h('span', { class: 'name' }, it.name),
        h('span', { class: 'num muted' }, money(it.price_cents * it.qty))))),
      o.notes ? h('p', { class: 'notes small' }, h('strong', {}, 'Notes: '), o.notes) : null,
      h('ol', { class: 'history small muted' }, (o.history || []).map((ev) =>
        h('li', {}, h('span', {}, cap(ev.status)), h('time', { datetime: ev.at }, when(ev.at)))))),
    h('footer', { class: 'order-foot' }, cancel || h('span'), h('strong', { class: 'num' }, money(o.total_cents))));
}

// Cancelling asks once more on the button itself (no blocking dialog).
async function cancelOrder(o, btn) {
  if (btn.dataset.armed !== '1') {
    btn.dataset.armed = '1';
    btn.textContent = 'Yes, cancel it';
    clearTimeout(btn._t);
    btn._t = setTimeout(() => { btn.dataset.armed = ''; btn.textContent = 'Cancel order'; }, 4000);
    return;
  }
  clearTimeout(btn._t);
  btn.disabled = true;
  btn.textContent = 'Cancelling…';
  try {
    await db.call('set_order_status', { order_id: o.id, status: 'cancelled' });
  } catch (err) {
    btn.disabled = false;
    btn.dataset.armed = '';
    btn.textContent = 'Cancel order';
    toast(err.code === 'invalid_transition' ? 'The warehouse has already started on it.' : errorText(err),
      { title: 'The order was not cancelled', kind: 'error' });
  }
}

// ------------------------------------------------------------ live or stale

function lastLiveKey() { return `wholesale.lastLive.${S.account?.id}`; }
function markLive() {
  try { localStorage.setItem(lastLiveKey(), new Date().toISOString()); } catch { /* no storage */ }
}

const isStale = () => db.state !== 'live' || S.productsStale || S.ordersStale;

function renderNotices() {
  if (!S.account || S.account.role !== 'partner') return;
  const stale = isStale();
  const box = $('#stale');
  box.hidden = !stale || (db.state === 'connecting' && !S.productsFromCache);
  let last = null;
  try { last = localStorage.getItem(lastLiveKey()); } catch { /* none */ }
  for (const id of ['#catalog-stale', '#orders-stale']) {
    const pill = $(id);
    pill.hidden = !stale;
    if (stale) pill.replaceChildren(icon('clock'), last ? `Saved copy, ${when(last)}` : 'Saved copy');
  }
  if (stale) {
    const asOf = last ? ` as of ${when(last)}` : '';
    const text = db.state === 'offline'
      ? `You are offline. Showing saved data${asOf}: stock and prices may have changed.`
      : db.state === 'reconnecting' ? `Connection lost, reconnecting… Data shown${asOf} may be out of date.`
        : `Connecting… Showing saved data${asOf}.`;
    box.replaceChildren(icon('cloudOff'), h('span', {}, text));
  }
  if (document.body.classList.contains('is-stale') !== stale) {
    document.body.classList.toggle('is-stale', stale);
    renderOrders();
  }
  $('#products').classList.toggle('stale-mark', stale);
  $('#order-list').classList.toggle('stale-mark', stale);
  const btn = $('#checkout');
  if (!btn.disabled) btn.textContent = db.state !== 'live' ? 'Place order (sends when online)' : 'Place order';
}
