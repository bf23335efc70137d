/*
 * livedb.js: the browser client SDK for livedb. ES modules, no
 * dependencies, no build step; every page of the portals uses it. This file
 * is the front door (the LiveDB class: session, connection state machine,
 * listeners, calls, HTTP); the parts it is made of are in ./livedb/:
 *
 *   errors.js    LiveDBError, the status of each error code, what is retryable
 *   util.js      random ids, localStorage as JSON, the cross-tab lock
 *   report.js    activity reports, page views, uncaught errors; safely, guard
 *   where.js     the `where` semantics, document order; Query and DocRef
 *   cache.js     the IndexedDB stores, and loading/saving a listener's cache
 *   listener.js  one Listener per onSnapshot: held vs emitted documents
 *   transport.js what both transports share (isOpen, the end told once)
 *   ws.js        the WebSocket transport
 *   sse.js       the HTTP/SSE fallback transport
 *   tabs.js      the BroadcastChannel and the tab locks
 *   queue.js     the offline queue of calls
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

import { LiveDBError, RETRYABLE } from './livedb/errors.js';
import { randomId, storageGet, storageSet } from './livedb/util.js';
import {
  ACTION_RE, SERVER_ACTIONS, Reporter, fitData, guard, hookPage, instances, safely, sendPageView,
} from './livedb/report.js';
import { COLLECTION_RE, DocRef, Query } from './livedb/where.js';
import { CACHE_MAX_AGE_MS, Store, cacheMethods } from './livedb/cache.js';
import { Listener } from './livedb/listener.js';
import { WsTransport } from './livedb/ws.js';
import { SseTransport } from './livedb/sse.js';
import { tabMethods } from './livedb/tabs.js';
import { queueMethods } from './livedb/queue.js';

export { LiveDBError };

// ---------------------------------------------------------------- constants

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

// db.on(event, cb) / db.off(event, cb); a callback's exception is reported (safely).
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

  async _subscribe(L) {
    if (!L.ready && this.account) this._prepare(L);
    await L.ready;
    const t = this._transport;
    if (!t?.isOpen || L.closed || L.subId) return;
    t.subscribe(L);
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

  // The calls waiting in the queue for this account, oldest first.
  async pending() {
    if (!this.account) return [];
    const all = await this._store.all('queue').catch(() => []);
    return all.filter((e) => e.account === this.account.id).sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1));
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

// The cache, tab and queue machinery live in their own files (./livedb/)
// but are LiveDB's methods: installed here, like those above (not
// enumerable), so that `this` is the db in each.
for (const part of [cacheMethods, tabMethods, queueMethods]) {
  for (const [k, d] of Object.entries(Object.getOwnPropertyDescriptors(part))) {
    Object.defineProperty(LiveDB.prototype, k, { ...d, enumerable: false });
  }
}

export default LiveDB;
