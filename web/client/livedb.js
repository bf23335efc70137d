/*
 * livedb.js: the browser client SDK for livedb. One ES module, no
 * dependencies, no build step; every page of the portals uses it.
 *
 *   import { LiveDB, LiveDBError } from '/client/livedb.js';
 *   const db = new LiveDB({ name: 'wholesale' });
 *   const account = await db.restore() ?? await db.login(email, password);
 *   db.on('state', (s) => badge.textContent = s);
 *   const stop = db.collection('products').where('active', 'eq', true)
 *     .onSnapshot(({ docs, changes, stale }) => render(docs));
 *   await db.call('place_order', { items, client_order_id }, { queue: true });
 *
 * Interface
 * ---------
 *   new LiveDB({url = location.origin, name = 'default', transports = ['ws','sse'], ...tuning})
 *       name namespaces localStorage, IndexedDB, the BroadcastChannel and
 *       the Web Locks; tuning: see DEFAULTS below (heartbeatMs, backoff...).
 *   db.login(email, password) -> account      db.restore() -> account | null
 *   db.logout()          db.account           db.token           db.close()
 *   db.state             'connecting' | 'live' | 'reconnecting' | 'offline'
 *   db.on(event, cb) -> off()      db.off(event, cb)
 *       'state' (state), 'auth' (null: the session ended), 'error' (LiveDBError),
 *       'queue' (the queued calls), 'call' (entry, result | LiveDBError)
 *   db.collection(col).where(field, op, value)... .onSnapshot(cb, onError) -> unsubscribe
 *       cb({docs (by id), changes: [{op: 'added'|'modified'|'removed', id, doc}],
 *           stale, fromCache, seq}); a removed change carries the document as
 *           it was last shown. .get() -> docs (one HTTP read).
 *   db.doc(col, id).onSnapshot(cb, onError) -> unsubscribe
 *       cb({doc | null, changes, stale, fromCache, seq}). .get() -> doc | null.
 *   db.call(fn, args, {queue = false, timeout}) -> result | {queued: true, id}
 *       throws LiveDBError {code, message, status, details}
 *   db.pending() -> the queued calls [{id, fn, args, at, account, tab}]
 *   db.resync()  db.presence(state)  db.report(action, data)
 *   db.api(method, path, body) -> JSON (REST with the session's token)
 *   db.stats     counters: connects, subscribes, resumes, resyncs, snapshots, changes, calls
 * Documents given to callbacks are shared with the SDK: read, do not modify.
 *
 * How it works
 * ------------
 * Session. login() keeps {token, account} in localStorage (key
 * `livedb:NAME:session`); restore() takes it back, asks /v1/auth/me when
 * the server answers, and trusts the cached account when it does not, so
 * that a reload without a network still shows the cached data.
 *
 * Transports. The WebSocket (/v1/realtime?token=) carries everything:
 * subscriptions, calls, presence. Each listener (an onSnapshot) is one
 * server subscription; it remembers the last seq it processed and, after a
 * reconnect, subscribes again with `since` = that seq, so the server sends
 * exactly the changes it missed, then `synced`. Heartbeat: a {"t":"ping"}
 * every 10 s; a connection silent for two intervals after a ping is dead.
 * When the WebSocket cannot be opened although HTTP works (twice in a row,
 * e.g. a proxy that blocks upgrades), or with transports: ['sse'], the SDK
 * falls back to HTTP: list pages for snapshots, GET /v1/changes (JSON) to
 * catch up from a seq, and an EventSource on /v1/changes?col= per
 * collection for live changes, filtered here with the same `where`
 * semantics as the server; calls go to POST /v1/fn/NAME. It stays on SSE
 * until the page reloads.
 *
 * State machine (db.state, the 'state' event):
 *   connecting    a session exists and the first connection is being made
 *   live          connected; listeners are (or are about to be) in sync
 *   reconnecting  the connection dropped; retrying with exponential backoff
 *                 and jitter (250 ms doubling to 10 s)
 *   offline       navigator.onLine is false, several attempts in a row
 *                 failed, or there is no session: data shown is the cache
 * Close codes: 4003 (access changed) asks /v1/auth/me again (401: the
 * session is over, 'auth' fires) and re-snapshots every listener, since
 * what the account may see may have changed; 4008 (read too slowly)
 * reconnects at once and resumes with `since`.
 *
 * Listeners keep the documents they hold (`docs`) apart from what their
 * callback last saw (`emitted`); every emission is the difference of the
 * two. So a resync, a `resync_required`, a reconnect or a cache load all
 * give the callback exactly the changes relative to what it showed, and a
 * change that arrives twice (from another tab and from the server) is
 * emitted once.
 *
 * Cache. IndexedDB database `livedb:NAME`, store `cache`: per account and
 * per query, the documents and the seq they reflect, written shortly after
 * each change. A listener shows its cached documents first (fromCache,
 * stale) and then resumes from the cached seq. Logging out (or the server
 * ending the session) deletes the account's cache.
 *
 * Queue. call(fn, args, {queue: true}) while not live (or when the network
 * fails) stores the call in the `queue` store and answers {queued, id}.
 * When live, one tab at a time (a Web Lock, `livedb:NAME:queue`) reads the
 * queue and sends each call, oldest first; an answered call (result or
 * error) is deleted before the lock is released, so no two tabs send the
 * same entry. A call whose answer was lost (the connection died) stays
 * queued and is sent again: place_order is deduplicated by the server by
 * client_order_id (the SDK adds one when the caller did not).
 *
 * Tabs. A BroadcastChannel `livedb:NAME` carries each change a tab
 * receives (the others apply it to their listeners of that collection at
 * once, so tabs never show different data, even while one of them is
 * reconnecting), queue changes ('queue' fires in every tab), call outcomes
 * and logout. A queued call's outcome ('call') fires once: in the tab that
 * queued it when that tab is still open (each tab holds a Web Lock named
 * after it while it lives), else in the tab that sent it.
 *
 * Activity. One 'page_view' {path, load_ms} per page load, and every
 * uncaught error and unhandled rejection as 'client_error', plus report():
 * batched (every 2 s or 20 events), at most 120 a minute per session
 * across tabs (the count lives in localStorage, under a Web Lock), sent
 * with fetch keepalive on pagehide.
 *
 * Callbacks of the page are called inside try/catch: an exception there is
 * logged and reported, never thrown into the SDK's own event handlers.
 */

// ---------------------------------------------------------------- constants

const CACHE_MAX_AGE_MS = 30 * 24 * 3600 * 1000; // queries not seen for a month go

const DEFAULTS = {
  heartbeatMs: 10_000,        // client ping interval; dead after 2 silent intervals
  backoffMinMs: 250,
  backoffMaxMs: 10_000,
  offlineAfter: 3,            // failed attempts in a row before 'offline'
  wsFailuresBeforeProbe: 2,   // never-opened WebSockets before asking HTTP
  connectTimeoutMs: 10_000,   // a WebSocket not open by then has failed
  callTimeoutMs: 30_000,
  cacheWriteMs: 300,          // cache writes are coalesced this long
  reportEveryMs: 2_000,
  reportBatch: 20,
  reportPerMinute: 120,
};

// HTTP status for each error code, for errors that arrive over the
// WebSocket (which carries the code, not the status).
const STATUS = {
  bad_request: 400, unauthorized: 401, forbidden: 403, not_found: 404,
  method_not_allowed: 405, conflict: 409, invalid_transition: 409,
  resync_required: 410, precondition_failed: 412, payload_too_large: 413,
  invalid: 422, insufficient_stock: 422, rate_limited: 429, internal: 500,
  unavailable: 503, storage_full: 507,
};

// Failures after which a call may be sent again: it was not answered (or
// the server did not run it).
const RETRYABLE = new Set(['network', 'timeout', 'unavailable']);

const OPS = new Set(['eq', 'ne', 'lt', 'le', 'gt', 'ge', 'in', 'contains']);
const COLLECTION_RE = /^_?[a-z][a-z0-9_]{0,63}$/;
const ACTION_RE = /^[a-z_.][a-z0-9_.]{0,31}$/;
const SERVER_ACTIONS = new Set(['create', 'update', 'delete', 'login', 'login_failed', 'logout',
  'call', 'backup', 'restore', 'recovery', 'account_add', 'import']);

// ---------------------------------------------------------------- errors

export class LiveDBError extends Error {
  // code: the server's error code ('invalid', 'insufficient_stock', ...) or
  // the SDK's own: 'network' (no answer), 'timeout', 'closed' (db.close()).
  constructor(code, message, status = STATUS[code] ?? 0, details) {
    super(message || code);
    this.name = 'LiveDBError';
    this.code = code;
    this.status = status;
    this.details = details;
  }

  // From the server's {"code","message","details"}.
  static from(err, status) {
    err = err && typeof err === 'object' ? err : {};
    return new LiveDBError(err.code || 'internal', err.message || 'error', status ?? STATUS[err.code] ?? 0,
      err.details);
  }

  toJSON() {
    return { code: this.code, message: this.message, status: this.status, details: this.details };
  }
}

// ---------------------------------------------------------------- small helpers

function randomId(n = 20) {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  let s = '';
  for (const b of bytes) s += abc[b % 62];
  return s;
}

// Calls a page's callback; its exception is the page's bug: logged (so a
// developer sees it) and reported, never thrown into the SDK.
function safely(fn, ...args) {
  try {
    fn(...args);
  } catch (e) {
    console.error('livedb: a callback threw:', e);
    reportError(e);
  }
}

class Emitter {
  constructor() { this._handlers = new Map(); }

  on(event, cb) {
    if (typeof cb !== 'function') throw new TypeError('on(event, callback)');
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(cb);
    return () => this.off(event, cb);
  }

  off(event, cb) { this._handlers.get(event)?.delete(cb); }

  _emit(event, ...args) {
    for (const cb of [...(this._handlers.get(event) || [])]) safely(cb, ...args);
  }
}

function storageGet(key) {
  try { return JSON.parse(localStorage.getItem(key)); } catch { return null; }
}

function storageSet(key, value) {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch { /* private mode, quota: the session is then for this page only */ }
}

// Runs fn holding an exclusive lock shared by every tab of the origin.
// Web Locks exist only in secure contexts (https, localhost); elsewhere a
// lease in localStorage stands in (best effort: two tabs racing within a
// few milliseconds could both win; the server deduplicates place_order).
async function withLock(name, fn) {
  if (typeof navigator !== 'undefined' && navigator.locks?.request) {
    return navigator.locks.request(name, fn);
  }
  const key = `${name}:lease`, me = randomId(8);
  for (;;) {
    const lease = storageGet(key);
    if (!lease || lease.until < Date.now()) {
      storageSet(key, { owner: me, until: Date.now() + 30_000 });
      await sleep(30);
      if (storageGet(key)?.owner === me) break;
    }
    await sleep(200 + Math.random() * 300);
  }
  try {
    return await fn();
  } finally {
    if (storageGet(key)?.owner === me) storageSet(key, null);
  }
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

// Wraps the SDK's own event handlers (socket, stream, channel, window): a
// bug in here must not surface as an exception in the page's event loop.
function guard(fn) {
  return (...args) => {
    try {
      fn(...args);
    } catch (e) {
      console.error('livedb: internal error:', e);
      reportError(e, 'livedb.js');
    }
  };
}

// ---------------------------------------------------------------- where, evaluated here
//
// The server's list semantics (docs/API.md "Lists"), for the SSE fallback
// and for changes shared by other tabs: comparisons are type-strict, a
// missing field matches nothing (not even `ne`).

function fieldValue(doc, path) {
  let v = doc;
  for (const k of path.split('.')) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, k)) return undefined;
    v = v[k];
  }
  return v;
}

function isScalar(v) {
  return v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}

function scalarEq(a, b) { return isScalar(a) && isScalar(b) && a === b; }

function order(a, b) {
  const comparable = (typeof a === 'number' && typeof b === 'number') ||
    (typeof a === 'string' && typeof b === 'string');
  if (!comparable) return null;
  return a < b ? -1 : a > b ? 1 : 0;
}

function condHolds(doc, [field, op, value]) {
  const v = fieldValue(doc, field);
  if (v === undefined) return false;
  switch (op) {
    case 'eq': return scalarEq(v, value);
    case 'ne': return !scalarEq(v, value);
    case 'lt': { const c = order(v, value); return c !== null && c < 0; }
    case 'le': { const c = order(v, value); return c !== null && c <= 0; }
    case 'gt': { const c = order(v, value); return c !== null && c > 0; }
    case 'ge': { const c = order(v, value); return c !== null && c >= 0; }
    case 'in': return Array.isArray(value) && value.some((x) => scalarEq(v, x));
    case 'contains':
      if (Array.isArray(v)) return v.some((x) => scalarEq(x, value));
      return typeof v === 'string' && typeof value === 'string' && v.includes(value);
    default: return false;
  }
}

// Is `a` an older state of the document than `b`? A document deleted and
// created again starts over at version 1, so its created_at goes first.
function olderThan(a, b) {
  if (a.created_at !== b.created_at && a.created_at && b.created_at) return a.created_at < b.created_at;
  return typeof a.version === 'number' && typeof b.version === 'number' && a.version < b.version;
}

// Documents of the server's own collections (_presence, _activity) have no
// version: their content decides.
function sameDoc(a, b) {
  if (a === b) return true;
  if (typeof a.version === 'number' || typeof b.version === 'number') {
    return a.version === b.version && a.created_at === b.created_at && a.updated_at === b.updated_at;
  }
  return JSON.stringify(a) === JSON.stringify(b);
}

// ---------------------------------------------------------------- IndexedDB
//
// Two object stores: `cache` {key, account, seq, docs, at} and `queue`
// {id, account, fn, args, at, tab}. Without IndexedDB (blocked, private
// mode) the same calls work on memory, for this page only.

class Store {
  constructor(dbName) {
    this.dbName = dbName;
    this._db = null;
    this._mem = { cache: new Map(), queue: new Map() };
  }

  _open() {
    if (!this._db) {
      this._db = new Promise((resolve) => {
        let req;
        try {
          req = indexedDB.open(this.dbName, 1);
        } catch {
          resolve(null);
          return;
        }
        req.onupgradeneeded = () => {
          const d = req.result;
          if (!d.objectStoreNames.contains('cache')) d.createObjectStore('cache', { keyPath: 'key' });
          if (!d.objectStoreNames.contains('queue')) d.createObjectStore('queue', { keyPath: 'id' });
        };
        req.onsuccess = () => {
          const d = req.result;
          d.onversionchange = () => { d.close(); this._db = null; };
          resolve(d);
        };
        req.onerror = () => resolve(null);
        req.onblocked = () => resolve(null);
      });
    }
    return this._db;
  }

  // Runs fn(objectStore) in one transaction; resolves with the value of the
  // request fn returns, once the transaction has committed.
  async _tx(name, mode, fn, memFn) {
    const d = await this._open();
    if (!d) return memFn(this._mem[name]);
    return new Promise((resolve, reject) => {
      let tx;
      try {
        tx = d.transaction(name, mode);
      } catch (e) {
        reject(e);
        return;
      }
      let out;
      const r = fn(tx.objectStore(name));
      if (r) r.onsuccess = () => { out = r.result; };
      tx.oncomplete = () => resolve(out);
      tx.onerror = tx.onabort = () => reject(tx.error);
    });
  }

  get(name, key) {
    return this._tx(name, 'readonly', (s) => s.get(key), (m) => m.get(key));
  }

  put(name, value) {
    const key = value.key ?? value.id;
    return this._tx(name, 'readwrite', (s) => { s.put(value); }, (m) => { m.set(key, value); });
  }

  del(name, key) {
    return this._tx(name, 'readwrite', (s) => { s.delete(key); }, (m) => { m.delete(key); });
  }

  all(name) {
    return this._tx(name, 'readonly', (s) => s.getAll(), (m) => [...m.values()]);
  }

  // Deletes every record for which pred(record) holds.
  deleteWhere(name, pred) {
    return this._tx(name, 'readwrite', (s) => {
      const cur = s.openCursor();
      cur.onsuccess = () => {
        const c = cur.result;
        if (!c) return;
        if (pred(c.value)) c.delete();
        c.continue();
      };
    }, (m) => {
      for (const [k, v] of m) if (pred(v)) m.delete(k);
    });
  }
}

// ---------------------------------------------------------------- listeners
//
// One per onSnapshot. `docs` is what it holds now, `emitted` what its
// callback saw last; `dirty` the ids that may differ between the two.

class Listener {
  constructor(db, { col, where = [], docId = null }, cb, onError) {
    this.db = db;
    this.id = ++db._nextListener;
    this.col = col;
    this.where = where;
    this.docId = docId;
    this.key = JSON.stringify([col, where, docId]);
    // What tells two documents apart: the id, except in the activity log,
    // where an entry's `id` is the document it wrote and its `seq` is its
    // own (the server's change messages for _activity carry the seq as id).
    this.keyOf = col === '_activity' ? (d) => String(d.seq) : (d) => d.id;
    this.cb = cb;
    this.onError = onError;
    this.docs = new Map();
    this.emitted = new Map();
    this.dirty = new Set();
    this.seq = null;          // the last seq processed (null: none: snapshot needed)
    this.hasBase = false;     // holds a whole result (from the cache or a snapshot)
    this.live = false;        // in sync with the server now
    this.fromCache = false;   // what it holds came from the cache, not yet confirmed
    this.catchingUp = false;  // subscribed with since, `synced` not yet seen
    this.subId = null;        // the WebSocket subscription it is on
    this.attempt = 0;
    this.building = null;     // snapshot pieces (more: true) collected so far
    this.emittedOnce = false;
    this.lastStale = null;
    this.lastFromCache = null;
    this.flushQueued = false;
    this.ready = null;        // resolves once the cache was looked at
    this.closed = false;
    this.error = null;
  }

  matches(doc) {
    return !!doc && (this.docId === null || doc.id === this.docId) &&
      this.where.every((c) => condHolds(doc, c));
  }

  // ---- applying data

  put(doc) {
    const key = this.keyOf(doc);
    const held = this.docs.get(key);
    if (held && olderThan(doc, held)) return; // a late copy of a state already shown
    this.docs.set(key, doc);
    this.dirty.add(key);
  }

  remove(id) {
    if (this.docs.delete(id)) this.dirty.add(id);
  }

  replaceAll(docs) {
    for (const id of this.docs.keys()) this.dirty.add(id);
    this.docs = new Map();
    for (const d of docs) {
      this.docs.set(this.keyOf(d), d);
      this.dirty.add(this.keyOf(d));
    }
    this.hasBase = true;
  }

  // A change from the feed (SSE fallback, or another tab): {op, id, doc}
  // with op create|update|delete; whether it concerns this listener is
  // decided here.
  applyDocState(id, doc) {
    if (doc && this.matches(doc)) this.put(doc);
    else this.remove(id);
  }

  // ---- WebSocket messages

  onSnapshotPart(msg) {
    if (!this.building) this.building = [];
    for (const d of msg.docs || []) this.building.push(d);
    if (msg.more) return;
    this.replaceAll(this.building);
    this.building = null;
    this.seq = msg.seq;
    this.goLive();
  }

  onChange(msg) {
    if (msg.op === 'removed') this.remove(msg.id);
    else if (msg.doc) this.put(msg.doc);
    if (typeof msg.seq === 'number') this.seq = msg.seq;
    this.db._shareChange(this, msg.id, msg.op === 'removed' ? null : msg.doc);
    if (!this.catchingUp) this.changed();
  }

  onSynced(msg) {
    if (typeof msg.seq === 'number') this.seq = msg.seq;
    this.goLive();
  }

  goLive() {
    this.live = true;
    this.fromCache = false;
    this.catchingUp = false;
    this.hasBase = true;
    this.error = null;
    this.flush();
    this.db._saveCache(this);
  }

  // The connection under it is gone: what it shows is now stale.
  lostConnection() {
    this.subId = null;
    this.building = null;
    this.catchingUp = false;
    if (this.live) {
      this.live = false;
      this.flush();
    }
  }

  changed() {
    this.scheduleFlush();
    this.db._saveCache(this);
  }

  // ---- emitting

  scheduleFlush() {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      this.flush();
    });
  }

  // Calls back with the difference between docs and emitted (and when the
  // stale or fromCache flags changed, or force: the first emission).
  flush(force = false) {
    if (this.closed) return;
    const changes = [];
    for (const id of this.dirty) {
      const before = this.emitted.get(id), after = this.docs.get(id);
      if (after && !before) changes.push({ op: 'added', id, doc: after });
      else if (!after && before) changes.push({ op: 'removed', id, doc: before });
      else if (after && before && !sameDoc(after, before)) changes.push({ op: 'modified', id, doc: after });
      if (after) this.emitted.set(id, after);
      else this.emitted.delete(id);
    }
    this.dirty.clear();
    const stale = !this.live;
    if (!force && this.emittedOnce && !changes.length && stale === this.lastStale &&
        this.fromCache === this.lastFromCache) return;
    if (!force && !this.emittedOnce && !this.hasBase) return; // nothing to show yet
    this.emittedOnce = true;
    this.lastStale = stale;
    this.lastFromCache = this.fromCache;
    changes.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const base = { changes, stale, fromCache: this.fromCache, seq: this.seq };
    if (this.docId !== null) {
      safely(this.cb, { doc: this.docs.get(this.docId) ?? null, ...base });
    } else {
      const ids = [...this.docs.keys()].sort();
      safely(this.cb, { docs: ids.map((id) => this.docs.get(id)), ...base });
    }
  }

  fail(err) {
    this.error = err;
    if (this.onError) safely(this.onError, err);
    this.db._emit('error', err);
  }
}

// ---------------------------------------------------------------- queries

class Query {
  constructor(db, col, where = []) {
    this._db = db;
    this.col = col;
    this._where = where;
  }

  // Adds a condition (the operators of lists: eq ne lt le gt ge in
  // contains); returns a new query.
  where(field, op, value) {
    if (typeof field !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,7}$/.test(field)) {
      throw new LiveDBError('bad_request', `bad field name ${JSON.stringify(field)}`);
    }
    if (!OPS.has(op)) throw new LiveDBError('bad_request', `unknown operator ${op} (use ${[...OPS].join(' ')})`);
    if (value === undefined) throw new LiveDBError('bad_request', 'where(field, op, value): value is missing');
    return new Query(this._db, this.col, [...this._where, [field, op, value]]);
  }

  // cb(snap): {docs (by id), changes, stale, fromCache, seq}; onError(err)
  // when the server refuses the subscription. Returns the unsubscribe.
  onSnapshot(cb, onError) {
    return this._db._listen({ col: this.col, where: this._where }, cb, onError);
  }

  // One read over HTTP: every matching document (all pages), by id.
  async get() {
    return (await this._db._list(this.col, this._where)).docs;
  }
}

class DocRef {
  constructor(db, col, id) {
    this._db = db;
    this.col = col;
    this.id = id;
  }

  // cb({doc|null, changes, stale, fromCache, seq}). Returns the unsubscribe.
  onSnapshot(cb, onError) {
    return this._db._listen({ col: this.col, docId: this.id }, cb, onError);
  }

  async get() {
    try {
      return await this._db.api('GET', `/v1/c/${this.col}/${encodeURIComponent(this.id)}`);
    } catch (e) {
      if (e.code === 'not_found') return null;
      throw e;
    }
  }
}

// ---------------------------------------------------------------- WebSocket transport

class WsTransport {
  constructor(db) {
    this.db = db;
    this.kind = 'ws';
    this.ws = null;
    this.opened = false;
    this.dead = false;
    this.calls = new Map(); // call id -> {resolve, reject, timer}
    this.subs = new Map();  // sub id -> Listener
    this.nextCall = 0;
    this.timer = null;
    this.lastRx = 0;
    this.pingSentAt = 0;
  }

  open() {
    const u = new URL('/v1/realtime', this.db.url);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    u.searchParams.set('token', this.db._token);
    let ws;
    try {
      ws = new WebSocket(u.href);
    } catch {
      queueMicrotask(() => this._ended({ code: 0 }));
      return;
    }
    this.ws = ws;
    this.timer = setTimeout(() => this._ended({ code: 0, reason: 'connect timeout' }),
      this.db.opts.connectTimeoutMs);
    ws.onopen = guard(() => {
      if (this.dead) return;
      this.opened = true;
      this.lastRx = Date.now();
      clearTimeout(this.timer);
      const hb = this.db.opts.heartbeatMs;
      this.timer = setInterval(() => this._heartbeat(), hb);
      this.db._transportOpen(this);
    });
    ws.onmessage = guard((ev) => this._message(ev.data));
    ws.onclose = guard((ev) => this._ended({ code: ev.code, reason: ev.reason }));
    ws.onerror = () => { /* onclose follows with the code */ };
  }

  get isOpen() { return this.opened && !this.dead; }

  // A ping every interval; dead when nothing came back for two intervals
  // after one. Timers of hidden tabs may run late: what counts is whether
  // anything arrived after the ping went out, not how long a tick took.
  _heartbeat() {
    const now = Date.now(), hb = this.db.opts.heartbeatMs;
    if (this.pingSentAt && this.lastRx < this.pingSentAt) {
      if (now - this.pingSentAt >= 2 * hb) this._ended({ code: 0, reason: 'no heartbeat' });
      return;
    }
    this.pingSentAt = now;
    this.send({ t: 'ping' });
  }

  // The connection is over (closed by the server, failed, dead, or timed
  // out). Tells the db once.
  _ended(info) {
    if (this.dead) return;
    this.close();
    this.db._transportClosed(this, { opened: this.opened, ...info });
  }

  // Ends it without telling the db (the db asked).
  close() {
    if (this.dead) return;
    this.dead = true;
    clearTimeout(this.timer);
    clearInterval(this.timer);
    if (this.ws) {
      this.ws.onopen = this.ws.onmessage = this.ws.onclose = null;
      try { this.ws.close(1000); } catch { /* already closing */ }
    }
    for (const [, c] of this.calls) {
      clearTimeout(c.timer);
      c.reject(new LiveDBError('network', 'the connection closed before the answer came'));
    }
    this.calls.clear();
    this.subs.clear();
  }

  send(msg) {
    if (this.ws && this.ws.readyState === 1 && !this.dead) {
      this.ws.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }

  subscribe(L) {
    const id = `${L.id}.${++L.attempt}`;
    L.subId = id;
    L.building = null;
    this.subs.set(id, L);
    const msg = { t: 'sub', id, col: L.col };
    if (L.where.length) msg.where = L.where;
    if (L.docId !== null) msg.doc = L.docId;
    L.catchingUp = L.seq !== null;
    if (L.catchingUp) msg.since = L.seq;
    this.db.stats.subscribes++;
    if (L.catchingUp) this.db.stats.resumes++;
    this.send(msg);
  }

  unsubscribe(L) {
    if (L.subId && this.subs.delete(L.subId)) this.send({ t: 'unsub', id: L.subId });
    L.subId = null;
  }

  call(fn, args, timeoutMs) {
    return new Promise((resolve, reject) => {
      const id = `c${++this.nextCall}`;
      const timer = setTimeout(() => {
        this.calls.delete(id);
        reject(new LiveDBError('timeout', `no answer to ${fn} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.calls.set(id, { resolve, reject, timer });
      if (!this.send({ t: 'call', id, fn, args })) {
        clearTimeout(timer);
        this.calls.delete(id);
        reject(new LiveDBError('network', 'not connected'));
      }
    });
  }

  presence(state) { this.send({ t: 'presence', state }); }

  _message(text) {
    if (this.dead) return;
    this.lastRx = Date.now();
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      return;
    }
    const L = m.sub !== undefined ? this.subs.get(m.sub) : null;
    switch (m.t) {
      case 'snapshot':
        if (L) L.onSnapshotPart(m);
        if (L && !m.more) this.db.stats.snapshots++;
        break;
      case 'change':
        if (L) {
          this.db.stats.changes++;
          L.onChange(m);
        }
        break;
      case 'synced':
        if (L) L.onSynced(m);
        break;
      case 'result': {
        const c = this.calls.get(m.id);
        if (!c) break;
        this.calls.delete(m.id);
        clearTimeout(c.timer);
        if (m.ok) c.resolve(m.data);
        else c.reject(LiveDBError.from(m.error));
        break;
      }
      case 'error': {
        const err = LiveDBError.from(m.error);
        if (m.sub !== undefined) {
          if (!L) break; // a subscription since replaced
          this.subs.delete(m.sub);
          L.subId = null;
          if (err.code === 'resync_required') {
            // The feed no longer holds (or never held) our position: a
            // fresh snapshot, diffed against what the callback showed.
            L.seq = null;
            this.db.stats.resyncs++;
            this.subscribe(L);
          } else {
            L.fail(err);
          }
        } else if (m.id !== undefined && this.calls.has(m.id)) {
          const c = this.calls.get(m.id);
          this.calls.delete(m.id);
          clearTimeout(c.timer);
          c.reject(err);
        } else {
          this.db._emit('error', err);
        }
        break;
      }
      default: // pong, and anything newer than this SDK
        break;
    }
  }
}

// ---------------------------------------------------------------- SSE transport
//
// The fallback over plain HTTP. Per listener: a snapshot from list pages
// (or, when it has a seq, the JSON change feed from that seq, exact), then
// the collection's event stream. Each listener skips changes at or before
// its own seq, so one stream per collection serves listeners that joined at
// different positions. Any stream error ends the transport; the db
// reconnects with backoff and every listener resumes from its seq.

const RECENT_KEEP = 1000;

class SseTransport {
  constructor(db) {
    this.db = db;
    this.kind = 'sse';
    this.opened = false;
    this.dead = false;
    this.streams = new Map(); // col -> {es, recent: [change...]}
    this.syncing = new Set(); // listeners between subscribe and in sync
    this.abort = new AbortController();
  }

  get isOpen() { return this.opened && !this.dead; }

  async open() {
    let me;
    try {
      me = await this.db._http('GET', '/v1/auth/me', undefined, { signal: this.abort.signal });
    } catch (e) {
      if (!this.dead) this._ended({ code: e.status === 401 ? 4003 : 0 });
      return;
    }
    if (this.dead) return;
    // The server ends event streams when access changes (the WebSocket's
    // 4003): a new role sees other documents, so every listener lists again.
    const db = this.db;
    if (db.account && me.account.role !== db.account.role) {
      await db._dropCache(me.account.id);
      db.account = me.account;
      db._saveSession(storageGet(db._sessionKey)?.expires_at);
      for (const L of db._listeners) L.seq = null;
    }
    if (this.dead) return;
    this.opened = true;
    this.db._transportOpen(this);
  }

  _ended(info) {
    if (this.dead) return;
    this.close();
    this.db._transportClosed(this, { opened: this.opened, ...info });
  }

  close() {
    if (this.dead) return;
    this.dead = true;
    this.abort.abort();
    for (const s of this.streams.values()) s.es.close();
    this.streams.clear();
  }

  async subscribe(L) {
    const attempt = ++L.attempt;
    L.subId = `sse.${attempt}`;
    this.syncing.add(L);
    this.db.stats.subscribes++;
    const current = () => !this.dead && !L.closed && L.subId === `sse.${attempt}`;
    try {
      if (L.seq !== null) {
        this.db.stats.resumes++;
        L.catchingUp = true;
        try {
          await this._catchUp(L, current);
        } catch (e) {
          if (e.code !== 'resync_required') throw e;
          this.db.stats.resyncs++;
          L.seq = null;
        }
      }
      if (L.seq === null && current()) {
        const { docs, seq } = await this.db._list(L.col, L.docId !== null ? [['id', 'eq', L.docId]] : L.where,
          this.abort.signal);
        if (!current()) return;
        L.replaceAll(docs);
        L.seq = seq;
        this.db.stats.snapshots++;
        // The pages after the first may be newer than its seq: catching up
        // from it (versions decide) makes them agree.
        await this._catchUp(L, current);
      }
      // A stream of this collection opened from a later position (by a
      // listener that synced at the same time), or one that has let go of
      // changes this listener has not seen: catch up again, past it.
      for (let s = this.streams.get(L.col); s && current() && (L.seq < s.since || L.seq < s.droppedUpTo);
        s = this.streams.get(L.col)) {
        await this._catchUp(L, current);
      }
      if (!current()) return;
      this.syncing.delete(L);
      // Changes the stream brought while this listener was catching up.
      const s = this.streams.get(L.col);
      for (const ch of s ? s.recent : []) this._apply(L, ch);
      L.goLive();
      this._stream(L.col, L.seq);
    } catch (e) {
      this.syncing.delete(L);
      if (!current()) return;
      if (RETRYABLE.has(e.code)) this._ended({ code: 0 });
      else L.fail(e);
    }
  }

  unsubscribe(L) {
    L.subId = null;
    this.syncing.delete(L);
    // The last listener of a collection takes its stream with it.
    const s = this.streams.get(L.col);
    if (s && ![...this.db._listeners].some((o) => o !== L && o.col === L.col && o.subId && !o.closed)) {
      s.es.close();
      this.streams.delete(L.col);
    }
  }

  // Applies the JSON change feed after L.seq, page by page, until caught up.
  async _catchUp(L, current) {
    for (;;) {
      const q = `since=${L.seq}&col=${encodeURIComponent(L.col)}&limit=1000`;
      const page = await this.db._http('GET', `/v1/changes?${q}`, undefined, { signal: this.abort.signal });
      if (!current()) return;
      for (const ch of page.changes) this._apply(L, ch);
      if (typeof page.seq === 'number' && page.seq > L.seq) L.seq = page.seq;
      if (page.changes.length < 1000) return;
    }
  }

  _apply(L, ch) {
    if (L.seq !== null && ch.seq <= L.seq) return;
    L.applyDocState(ch.id, ch.op === 'delete' ? null : ch.doc);
    L.seq = ch.seq;
  }

  // The collection's event stream, from `since` (a new one only when none
  // is open: listeners that join later are at or past its position).
  _stream(col, since) {
    if (this.streams.has(col) || this.dead) return;
    const u = new URL('/v1/changes', this.db.url);
    u.searchParams.set('token', this.db._token);
    u.searchParams.set('col', col);
    u.searchParams.set('since', String(since));
    const es = new EventSource(u.href);
    const s = { es, since, recent: [], droppedUpTo: 0 };
    this.streams.set(col, s);
    es.onmessage = guard((ev) => {
      let ch;
      try {
        ch = JSON.parse(ev.data);
      } catch {
        return;
      }
      s.recent.push(ch);
      if (s.recent.length > RECENT_KEEP) s.droppedUpTo = s.recent.splice(0, s.recent.length - RECENT_KEEP).pop().seq;
      this.db.stats.changes++;
      for (const L of this.db._listeners) {
        if (L.col !== col || this.syncing.has(L) || !L.subId) continue;
        this._apply(L, ch);
        if (L.dirty.size) {
          this.db._shareChange(L, ch.id, L.docs.get(ch.id) ?? null);
          L.changed();
        }
      }
    });
    // Any error (the server went away, or refused: 401, 410): end it all
    // and let the db reconnect with backoff; listeners resume from their seq.
    es.onerror = () => this._ended({ code: 0 });
  }

  presence() { /* no presence over HTTP */ }
}

// ---------------------------------------------------------------- activity reports

const SENT_LOG_WINDOW_MS = 61_000; // a little over the server's minute

class Reporter {
  constructor(db) {
    this.db = db;
    this.buf = [];
    this.timer = null;
    this.sending = false;
    this.holdUntil = 0;
  }

  add(action, data) {
    this.buf.push({ action, data });
    if (this.buf.length > 500) this.buf.splice(0, this.buf.length - 500); // oldest go first
    if (this.buf.length >= this.db.opts.reportBatch) this.flush();
    else this.schedule(this.db.opts.reportEveryMs);
  }

  schedule(ms) {
    if (this.timer || this.db._closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush();
    }, ms);
  }

  get _logKey() { return `livedb:${this.db.name}:reported`; }

  // Times of events sent for this session within the window (all tabs).
  _readLog() {
    const log = storageGet(this._logKey);
    const session = this.db._token?.slice(0, 8);
    if (!log || log.session !== session || !Array.isArray(log.times)) return { session, times: [] };
    const cut = Date.now() - SENT_LOG_WINDOW_MS;
    return { session, times: log.times.filter((t) => t > cut) };
  }

  async flush() {
    clearTimeout(this.timer);
    this.timer = null;
    if (!this.buf.length || !this.db._token || this.sending) return;
    if (Date.now() < this.holdUntil) {
      this.schedule(this.holdUntil - Date.now());
      return;
    }
    this.sending = true;
    try {
      await withLock(`livedb:${this.db.name}:report`, async () => {
        const log = this._readLog();
        const budget = this.db.opts.reportPerMinute - log.times.length;
        const batch = this.buf.splice(0, Math.max(0, budget));
        for (let i = 0; i < batch.length; i++) {
          try {
            // keepalive: an event on its way when the page goes survives it.
            await this.db._http('POST', '/v1/activity', batch[i], { keepalive: true });
            log.times.push(Date.now());
          } catch (e) {
            if (e.status === 400 || e.status === 422) continue; // this event is bad; drop it
            // Rate limited, offline, logged out: keep the rest for later.
            this.buf.unshift(...batch.slice(i + (e.code === 'rate_limited' || RETRYABLE.has(e.code) ? 0 : 1)));
            if (e.code === 'rate_limited') {
              this.holdUntil = Date.now() + 1000 * (Number(e.details?.retryAfter) || 60);
            } else {
              this.holdUntil = Date.now() + 5000;
            }
            break;
          }
        }
        storageSet(this._logKey, log);
      });
    } finally {
      this.sending = false;
      if (this.buf.length) {
        const log = this._readLog();
        const full = log.times.length >= this.db.opts.reportPerMinute;
        this.schedule(full ? Math.max(250, log.times[0] + SENT_LOG_WINDOW_MS - Date.now()) : this.db.opts.reportEveryMs);
      }
    }
  }

  // The page is going away: what fits in the budget goes with keepalive.
  pagehide() {
    if (!this.buf.length || !this.db._token) return;
    const log = this._readLog();
    const budget = this.db.opts.reportPerMinute - log.times.length;
    const batch = this.buf.splice(0, Math.max(0, budget));
    for (const ev of batch) {
      log.times.push(Date.now());
      try {
        fetch(new URL('/v1/activity', this.db.url), {
          method: 'POST', keepalive: true,
          headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${this.db._token}` },
          body: JSON.stringify(ev),
        }).catch(() => {});
      } catch { /* keepalive quota */ }
    }
    storageSet(this._logKey, log);
  }
}

// Data for an activity event: an object, at most 4096 bytes of JSON.
function fitData(data) {
  if (data === undefined || data === null) return undefined;
  if (typeof data !== 'object' || Array.isArray(data)) data = { value: data };
  let text;
  try { text = JSON.stringify(data); } catch { return { note: 'data not serializable' }; }
  if (text.length <= 4000) return data;
  const out = {};
  for (const [k, v] of Object.entries(data)) {
    out[k] = typeof v === 'string' ? v.slice(0, 500) : v;
  }
  return JSON.stringify(out).length <= 4000 ? out : { note: 'data too large' };
}

// ---------------------------------------------------------------- the page's own events
//
// One page_view per page load, and the page's uncaught errors, go through
// the first LiveDB of the page that is open.

const instances = new Set();
let pageViewSent = false;
let hooked = false;

function firstInstance() {
  for (const db of instances) if (!db._closed) return db;
  return null;
}

function reportError(e, source = '', line = 0) {
  const db = firstInstance();
  if (!db) return;
  const message = String(e && e.message !== undefined ? e.message : e).slice(0, 1000);
  db._reporter.add('client_error', fitData({ message, source: String(source).slice(0, 500), line: line | 0 }));
}

function hookPage() {
  if (hooked || typeof window === 'undefined') return;
  hooked = true;
  window.addEventListener('error', (ev) => {
    // Resource load errors (img, script) have no message; skip them.
    if (!ev.message && !ev.error) return;
    reportError(ev.error ?? ev.message, ev.filename || '', ev.lineno || 0);
  });
  window.addEventListener('unhandledrejection', (ev) => {
    const r = ev.reason;
    const stackLine = typeof r?.stack === 'string' ? r.stack.split('\n')[1]?.trim() ?? '' : '';
    reportError(r instanceof Error ? r : String(r), `unhandledrejection ${stackLine}`.trim(), 0);
  });
  window.addEventListener('pagehide', () => {
    for (const db of instances) if (!db._closed) db._pagehide();
  });
}

function loadMs() {
  const nav = performance.getEntriesByType?.('navigation')?.[0];
  const ms = nav && nav.loadEventEnd > 0 ? nav.loadEventEnd : performance.now();
  return Math.round(ms);
}

function sendPageView(db) {
  if (pageViewSent) return;
  pageViewSent = true;
  const send = () => db._reporter.add('page_view', { path: location.pathname, load_ms: loadMs() });
  if (document.readyState === 'complete') send();
  else window.addEventListener('load', () => setTimeout(send, 0), { once: true });
}

// ---------------------------------------------------------------- LiveDB

export class LiveDB extends Emitter {
  constructor({ url = location.origin, name = 'default', transports = ['ws', 'sse'], ...opts } = {}) {
    super();
    this.url = String(url).replace(/\/+$/, '');
    this.name = name;
    this.transports = transports.filter((t) => t === 'ws' || t === 'sse');
    if (!this.transports.length) throw new TypeError("transports: ['ws', 'sse'], ['ws'] or ['sse']");
    this.opts = { ...DEFAULTS, ...opts };
    this.account = null;
    this.state = 'connecting';
    // Counters, for pages that show them and for tests.
    this.stats = { connects: 0, subscribes: 0, resumes: 0, resyncs: 0, snapshots: 0, changes: 0, calls: 0 };
    this._token = null;
    this._store = new Store(`livedb:${name}`);
    this._tab = randomId(10);
    this._listeners = new Set();
    this._nextListener = 0;
    this._transport = null;
    this._mode = this.transports[0];
    this._failures = 0;         // attempts in a row that failed
    this._wsBlocked = 0;        // times in a row the WebSocket failed while HTTP worked
    this._retryTimer = null;
    this._presence = undefined;
    this._closed = false;
    this._cacheTimers = new Map();
    this._flushing = false;
    this._flushAgain = false;
    this._reporter = new Reporter(this);

    this._holdTabLock();
    this._bc = typeof BroadcastChannel === 'function' ? new BroadcastChannel(`livedb:${name}`) : null;
    if (this._bc) this._bc.onmessage = guard((ev) => this._tabMessage(ev.data));
    this._onOnline = guard(() => this._online());
    this._onOffline = guard(() => this._offline());
    // A tab coming back into view does not wait out a long backoff.
    this._onVisible = guard(() => {
      if (document.visibilityState === 'visible' && this._retryTimer) this._online();
    });
    window.addEventListener('online', this._onOnline);
    window.addEventListener('offline', this._onOffline);
    document.addEventListener('visibilitychange', this._onVisible);
    instances.add(this);
    hookPage();
  }

  // The session's token (for the few requests a page makes itself).
  get token() { return this._token; }

  // ---- session

  // Logs in; keeps the session for restore(). Throws LiveDBError
  // (unauthorized, rate_limited with details.retryAfter, network).
  async login(email, password) {
    const r = await this._http('POST', '/v1/auth/login', { email, password }, { auth: false });
    this._endConnection();
    if (this.account && this.account.id !== r.account.id) this._forgetListenerData();
    this._token = r.token;
    this.account = r.account;
    this._saveSession(r.expires_at);
    this._startSession();
    return this.account;
  }

  // The stored session's account, or null. Asks the server when it
  // answers; offline, the cached account (and cached data) stand.
  async restore() {
    const s = storageGet(this._sessionKey);
    if (!s?.token) {
      this._setState('offline');
      return null;
    }
    if (typeof s.expires_at === 'number' && s.expires_at < Date.now()) {
      await this._dropSession(s.account);
      this._setState('offline');
      return null;
    }
    this._token = s.token;
    this.account = s.account;
    try {
      const me = await this._http('GET', '/v1/auth/me', undefined, { quiet401: true });
      if (me.account.role !== s.account?.role) await this._dropCache(me.account.id);
      this.account = me.account;
      this._saveSession(s.expires_at);
    } catch (e) {
      if (e.status === 401) {
        await this._dropSession(s.account);
        this._setState('offline');
        return null;
      }
      // No answer: carry on with the cached account.
    }
    if (this._closed) return null;
    this._startSession();
    return this.account;
  }

  async logout() {
    const token = this._token;
    if (token) {
      try {
        await this._http('POST', '/v1/auth/logout', undefined, { quiet401: true });
      } catch { /* offline: the token is forgotten here anyway */ }
    }
    this._broadcast({ t: 'logout', token: token?.slice(0, 8) });
    await this._sessionEnded();
  }

  get _sessionKey() { return `livedb:${this.name}:session`; }

  _saveSession(expires_at) {
    storageSet(this._sessionKey, { token: this._token, account: this.account, expires_at });
  }

  _startSession() {
    this._failures = 0;
    this._setState(typeof navigator !== 'undefined' && navigator.onLine === false ? 'offline' : 'connecting');
    for (const L of this._listeners) this._prepare(L);
    this._connect();
    this._emitQueue();
    const old = Date.now() - CACHE_MAX_AGE_MS;
    this._store.deleteWhere('cache', (r) => !(r.at > old)).catch(() => {});
    sendPageView(this);
    this._reporter.flush();
  }

  // The session is over (logout, 401, revoked): forget the token, the
  // account's cache, and what the listeners hold; 'auth' fires with null.
  async _sessionEnded() {
    // Once: a logout ends the session on the server, which closes the
    // socket as ended too, often before the logout's answer is back.
    if (!this._token && !this.account) return;
    const account = this.account;
    this._endConnection();
    this._token = null;
    this.account = null;
    this._forgetListenerData();
    this._setState('offline');
    await this._dropSession(account);
    this._emit('auth', null);
  }

  // What listeners hold belongs to the account that is gone; what their
  // callbacks saw stays, so that the next account's data comes as changes.
  _forgetListenerData() {
    for (const L of this._listeners) {
      L.docs = new Map();
      L.seq = null;
      L.hasBase = false;
      L.live = false;
      L.fromCache = false;
      L.ready = null;
    }
  }

  async _dropSession(account) {
    storageSet(this._sessionKey, null);
    if (account?.id) await this._dropCache(account.id);
  }

  _dropCache(accountId) {
    return this._store.deleteWhere('cache', (r) => r.account === accountId).catch(() => {});
  }

  // After a 4003 (or 401 on the stream): is the session still good?
  async _recheckSession() {
    try {
      const me = await this._http('GET', '/v1/auth/me', undefined, { quiet401: true });
      if (!this._token) return;
      if (me.account.role !== this.account?.role) await this._dropCache(me.account.id);
      this.account = me.account;
      const s = storageGet(this._sessionKey);
      this._saveSession(s?.expires_at);
    } catch (e) {
      if (e.status === 401) {
        await this._sessionEnded();
        return;
      }
      this._failures++;
      this._scheduleReconnect();
      return;
    }
    // What the account may see may have changed: fresh snapshots.
    for (const L of this._listeners) L.seq = null;
    this._connect();
  }

  // ---- connection state machine

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this._emit('state', s);
    if (s === 'offline') {
      // Listeners with nothing to show say so (empty, stale) once.
      for (const L of this._listeners) {
        (L.ready || Promise.resolve()).then(() => {
          if (this.state === 'offline' && !L.emittedOnce) L.flush(true);
        });
      }
    }
  }

  _connect() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (this._closed || !this._token || this._transport) return;
    if (typeof navigator !== 'undefined' && navigator.onLine === false) {
      this._setState('offline');
      return; // the 'online' event brings us back
    }
    const T = this._mode === 'sse' ? SseTransport : WsTransport;
    this._transport = new T(this);
    this.stats.connects++;
    this._transport.open();
  }

  _scheduleReconnect() {
    if (this._closed || !this._token || this._retryTimer || this._transport) return;
    const { backoffMinMs: min, backoffMaxMs: max, offlineAfter } = this.opts;
    const base = Math.min(max, min * 2 ** Math.max(0, this._failures - 1));
    const delay = base / 2 + Math.random() * base / 2; // jitter: half to all of it
    this._setState(this._failures >= offlineAfter ? 'offline' : 'reconnecting');
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this._connect();
    }, delay);
  }

  // Closes the transport without reconnecting.
  _endConnection() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const t = this._transport;
    this._transport = null;
    if (t) t.close();
    for (const L of this._listeners) L.lostConnection();
  }

  _transportOpen(t) {
    if (t !== this._transport) return;
    this._failures = 0;
    this._wsBlocked = 0;
    this._setState('live');
    for (const L of this._listeners) this._subscribe(L);
    if (this._presence !== undefined) t.presence(this._presence);
    this._flushQueue();
    this._reporter.flush();
  }

  _transportClosed(t, { opened, code }) {
    if (t !== this._transport) return;
    this._transport = null;
    for (const L of this._listeners) L.lostConnection();
    if (this._closed || !this._token) return;
    if (code === 4003) {
      this._setState('reconnecting');
      this._recheckSession();
      return;
    }
    if (code === 4008 && opened) {
      this._setState('reconnecting');
      this._connect(); // at once; listeners resume with since
      return;
    }
    this._failures++;
    if (t.kind === 'ws' && !opened && this._failures >= this.opts.wsFailuresBeforeProbe) {
      this._probe();
      return;
    }
    this._scheduleReconnect();
  }

  // The WebSocket failed to open again: does HTTP work? If it does twice
  // in a row, WebSockets are blocked on the way: use SSE (when allowed). A
  // 401 means the session is over (a refused upgrade looks like any other
  // failure to the page).
  async _probe() {
    this._setState(this._failures >= this.opts.offlineAfter ? 'offline' : 'reconnecting');
    try {
      await this._http('GET', '/v1/auth/me', undefined, { quiet401: true });
    } catch (e) {
      if (e.status === 401) {
        await this._sessionEnded();
        return;
      }
      this._wsBlocked = 0;
      this._scheduleReconnect();
      return;
    }
    if (this._closed || !this._token || this._transport) return;
    if (++this._wsBlocked >= 2 && this.transports.includes('sse')) this._mode = 'sse';
    if (this._mode === 'ws' && this._wsBlocked >= 2) this._scheduleReconnect();
    else this._connect();
  }

  _online() {
    if (this._token && !this._transport && !this._closed) {
      this._failures = 0;
      this._connect();
    }
  }

  _offline() {
    if (!this._token) return;
    this._endConnection();
    this._setState('offline');
  }

  // ---- listeners

  collection(col) {
    if (!COLLECTION_RE.test(col)) throw new LiveDBError('bad_request', `bad collection name ${JSON.stringify(col)}`);
    return new Query(this, col);
  }

  doc(col, id) {
    if (!COLLECTION_RE.test(col)) throw new LiveDBError('bad_request', `bad collection name ${JSON.stringify(col)}`);
    if (typeof id !== 'string' || !/^[A-Za-z0-9_.-]{1,128}$/.test(id)) {
      throw new LiveDBError('bad_request', `bad document id ${JSON.stringify(id)}`);
    }
    return new DocRef(this, col, id);
  }

  _listen(spec, cb, onError) {
    if (typeof cb !== 'function') throw new TypeError('onSnapshot(callback)');
    const L = new Listener(this, spec, cb, onError);
    this._listeners.add(L);
    if (this.account) this._prepare(L);
    if (this._transport?.isOpen) this._subscribe(L);
    else if (this.state === 'offline') this._setStateOfflineHint(L);
    return () => {
      if (L.closed) return;
      L.closed = true;
      this._listeners.delete(L);
      this._transport?.unsubscribe?.(L);
    };
  }

  _setStateOfflineHint(L) {
    (L.ready || Promise.resolve()).then(() => {
      if (this.state === 'offline' && !L.emittedOnce) L.flush(true);
    });
  }

  // Shows the listener's cached documents (when it has nothing newer).
  _prepare(L) {
    const account = this.account;
    L.ready = this._store.get('cache', `${account.id}|${L.key}`).then((rec) => {
      if (!rec || L.hasBase || L.closed || this.account?.id !== account.id) return;
      L.replaceAll(rec.docs || []);
      L.seq = typeof rec.seq === 'number' ? rec.seq : null;
      L.fromCache = true;
      L.flush();
    }).catch(() => {});
  }

  async _subscribe(L) {
    if (!L.ready && this.account) this._prepare(L);
    await L.ready;
    const t = this._transport;
    if (!t?.isOpen || L.closed || L.subId) return;
    t.subscribe(L);
  }

  _saveCache(L) {
    if (!this.account || !L.hasBase || L.seq === null || L.closed) return;
    if (this._cacheTimers.has(L)) return;
    const account = this.account.id;
    // A big result is written less often (each write is all of it).
    const ms = this.opts.cacheWriteMs * (1 + Math.floor(L.docs.size / 1000));
    this._cacheTimers.set(L, setTimeout(() => {
      this._cacheTimers.delete(L);
      if (this.account?.id !== account || !L.hasBase) return;
      this._store.put('cache', {
        key: `${account}|${L.key}`, account, seq: L.seq, docs: [...L.docs.values()], at: Date.now(),
      }).catch(() => {});
    }, ms));
  }

  // "Force sync": every listener gets a fresh snapshot (its callback, the
  // difference from what it showed). Not connected: try at once.
  resync() {
    const t = this._transport;
    for (const L of this._listeners) {
      L.seq = null;
      if (t?.isOpen) {
        t.unsubscribe(L);
        this._subscribe(L);
      }
    }
    if (!t && this._token) {
      this._failures = 0;
      this._connect();
    }
  }

  // ---- tabs

  // Held while this page lives: other tabs ask whether it is still open.
  _holdTabLock() {
    if (!navigator.locks?.request) return;
    navigator.locks.request(`livedb:${this.name}:tab:${this._tab}`, () => new Promise((resolve) => {
      this._releaseTabLock = resolve;
    })).catch(() => {});
  }

  async _tabAlive(tab) {
    if (tab === this._tab) return true;
    if (!navigator.locks?.query) return false;
    try {
      const { held } = await navigator.locks.query();
      return held.some((l) => l.name === `livedb:${this.name}:tab:${tab}`);
    } catch {
      return false;
    }
  }

  _broadcast(msg) {
    try {
      this._bc?.postMessage({ ...msg, from: this._tab });
    } catch { /* closed */ }
  }

  // A listener applied a change: other tabs apply it too. `removed` ops
  // carry no document, so they count only for the same query elsewhere.
  _shareChange(L, id, doc) {
    if (!this.account) return;
    this._broadcast({ t: 'change', account: this.account.id, col: L.col, key: L.key, id, doc });
  }

  _tabMessage(m) {
    if (!m || m.from === this._tab || this._closed) return;
    switch (m.t) {
      case 'change':
        if (m.account !== this.account?.id) return;
        for (const L of this._listeners) {
          if (L.col !== m.col || !L.hasBase) continue;
          if (m.doc) L.applyDocState(m.id, m.doc);
          else if (m.key === L.key) L.remove(m.id);
          if (L.dirty.size && !L.catchingUp) L.scheduleFlush();
        }
        break;
      case 'queue':
        this._emitQueue();
        break;
      case 'call':
        if (m.to !== this._tab) return;
        this._emit('call', m.entry, m.error ? LiveDBError.from(m.error, m.error.status) : m.result);
        break;
      case 'logout':
        if (this._token && this._token.slice(0, 8) === m.token) this._sessionEnded();
        break;
      default:
        break;
    }
  }

  // ---- calls and the offline queue

  // Calls server function fn. Returns its result, or throws LiveDBError.
  // queue: true: when not live, or when no answer comes, the call is kept
  // in the offline queue and {queued: true, id} is returned; it is sent when
  // live again and its outcome comes as the 'call' event.
  async call(fn, args = {}, { queue = false, timeout } = {}) {
    if (typeof fn !== 'string' || !fn) throw new LiveDBError('bad_request', 'call(fn, args): fn is a name');
    if (args === null || typeof args !== 'object' || Array.isArray(args)) {
      throw new LiveDBError('bad_request', 'call(fn, args): args is an object');
    }
    if (!this._token) throw new LiveDBError('unauthorized', 'log in first');
    if (queue && fn === 'place_order' && args.client_order_id == null) {
      args = { ...args, client_order_id: randomId() };
    }
    if (queue && this.state !== 'live') return this._enqueue(fn, args);
    try {
      return await this._invoke(fn, args, timeout);
    } catch (e) {
      if (queue && RETRYABLE.has(e.code)) return this._enqueue(fn, args);
      throw e;
    }
  }

  async _invoke(fn, args, timeout = this.opts.callTimeoutMs) {
    this.stats.calls++;
    const t = this._transport;
    if (t?.kind === 'ws' && t.isOpen) return t.call(fn, args, timeout);
    return this._http('POST', `/v1/fn/${encodeURIComponent(fn)}`, args, { timeout });
  }

  async _enqueue(fn, args) {
    const entry = { id: randomId(), account: this.account.id, fn, args, at: Date.now(), tab: this._tab };
    await this._store.put('queue', entry);
    this._queueChanged();
    if (this.state === 'live') this._flushQueue();
    return { queued: true, id: entry.id };
  }

  // The calls waiting in the queue for this account, oldest first.
  async pending() {
    if (!this.account) return [];
    const all = await this._store.all('queue').catch(() => []);
    return all.filter((e) => e.account === this.account.id).sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1));
  }

  _queueChanged() {
    this._broadcast({ t: 'queue' });
    this._emitQueue();
  }

  async _emitQueue() {
    const list = await this.pending();
    this._emit('queue', list);
  }

  // Sends the queued calls, one tab at a time (see the header).
  _flushQueue() {
    if (this._flushing) {
      this._flushAgain = true;
      return;
    }
    if (this.state !== 'live' || !this.account) return;
    this._flushing = true;
    this._flushAgain = false;
    withLock(`livedb:${this.name}:queue`, () => this._flushLocked())
      .catch(() => {})
      .finally(() => {
        this._flushing = false;
        if (this._flushAgain) this._flushQueue();
      });
  }

  async _flushLocked() {
    for (;;) {
      if (this.state !== 'live') return;
      const entries = await this.pending();
      if (!entries.length) return;
      for (const e of entries) {
        if (this.state !== 'live' || this._closed) return;
        let result, error;
        try {
          result = await this._invoke(e.fn, e.args);
        } catch (err) {
          if (RETRYABLE.has(err.code) || !this._token) return; // stays queued: sent again when live
          error = err;
        }
        await this._store.del('queue', e.id);
        this._queueChanged();
        // The outcome goes to the tab that queued the call, if it is open.
        if (e.tab !== this._tab && await this._tabAlive(e.tab)) {
          this._broadcast({ t: 'call', to: e.tab, entry: e, result, error: error?.toJSON() });
        } else {
          this._emit('call', e, error ?? result);
        }
      }
    }
  }

  // ---- presence and activity

  // This connection's presence state (a small object), sent now when
  // connected and again after every reconnect.
  presence(state) {
    this._presence = state;
    this._transport?.isOpen && this._transport.presence(state);
  }

  // A client activity event (action: a-z 0-9 _ . , 1-32, not one the
  // server logs itself), batched and rate limited.
  report(action, data) {
    if (typeof action !== 'string' || !ACTION_RE.test(action) || SERVER_ACTIONS.has(action)) {
      throw new LiveDBError('bad_request', `bad action name ${JSON.stringify(action)}`);
    }
    this._reporter.add(action, fitData(data));
  }

  _pagehide() {
    this._reporter.pagehide();
  }

  // ---- HTTP

  // An authenticated request to the API: the answer's JSON, or a
  // LiveDBError. For pages that need REST (admin writes, accounts).
  api(method, path, body) {
    return this._http(method, path, body);
  }

  async _list(col, where = [], signal) {
    const docs = [];
    let after = null, seq = null;
    do {
      const q = new URLSearchParams();
      for (const [f, op, v] of where) q.append('where', `${f}:${op}:${JSON.stringify(v)}`);
      q.set('limit', '1000');
      if (after !== null) q.set('after', after);
      const page = await this._http('GET', `/v1/c/${col}?${q}`, undefined, { signal });
      if (seq === null) seq = page.seq;
      docs.push(...page.docs);
      after = page.next;
    } while (after !== null && after !== undefined);
    return { docs, seq };
  }

  async _http(method, path, body, { auth = true, signal, timeout = this.opts.callTimeoutMs, quiet401 = false,
    keepalive = false } = {}) {
    const headers = {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (auth) {
      if (!this._token) throw new LiveDBError('unauthorized', 'log in first');
      headers.Authorization = `Bearer ${this._token}`;
    }
    const token = this._token;
    const tsig = AbortSignal.timeout(timeout);
    let res, text;
    try {
      res = await fetch(new URL(path, this.url), {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        signal: signal ? AbortSignal.any([signal, tsig]) : tsig, cache: 'no-store', keepalive,
      });
      text = await res.text();
    } catch (e) {
      if (tsig.aborted) throw new LiveDBError('timeout', `${method} ${path}: no answer within ${timeout} ms`);
      throw new LiveDBError('network', `${method} ${path}: ${e.message || 'network error'}`);
    }
    let json;
    try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
    if (res.ok) return json;
    const err = LiveDBError.from(json?.error ?? { code: 'internal', message: `${res.status} ${res.statusText}` }, res.status);
    if (res.status === 429) {
      err.details = { ...(err.details || {}), retryAfter: Number(res.headers.get('Retry-After')) || 60 };
    }
    // A request made with this session's token was refused: it is over.
    if (res.status === 401 && auth && !quiet401 && token && token === this._token) this._sessionEnded();
    throw err;
  }

  // ---- the end

  close() {
    if (this._closed) return;
    this._reporter.pagehide();
    this._closed = true;
    this._endConnection();
    clearTimeout(this._reporter.timer);
    for (const t of this._cacheTimers.values()) clearTimeout(t);
    this._cacheTimers.clear();
    for (const L of this._listeners) L.closed = true;
    this._listeners.clear();
    this._bc?.close();
    this._releaseTabLock?.();
    window.removeEventListener('online', this._onOnline);
    window.removeEventListener('offline', this._onOffline);
    document.removeEventListener('visibilitychange', this._onVisible);
    instances.delete(this);
    this._setState('offline');
  }
}

export default LiveDB;
