// data.js: the studio's data, from the best place that has it (the seed's
// "real-time data manager" and its fallback chain, made real):
//
//   1. live      the SDK's subscriptions to `users` and `jobs`: a snapshot,
//                then every change as it commits.
//   2. cache     the SDK's IndexedDB copy of the last data this browser saw
//                (also what stays on screen when the connection drops). Its
//                age is when the data was last known to be current; within
//                FRESH_MS (5 minutes) it is a recent "saved copy", after
//                that it is out of date.
//   3. snapshot  the static JSON the server keeps (`livedb serve
//                --snapshot-dir DIR` writes DIR/studio.json after every
//                change batch), fetched from CFG.snapshot when the server
//                cannot be reached and there is no cache, or when it is
//                newer (a higher seq) than the cache.
//
// Events: on `document`, after every change of what is shown:
//   usersDataChanged  detail {users: [docs by id], changes, source}
//   jobsDataChanged   detail {jobs: [docs by id], changes, source}
// changes: [{op: 'added'|'modified'|'removed', id, doc}] relative to what
// the previous event carried (the first event of a page: every document
// 'added'); source: 'live' | 'cache' | 'snapshot'. An event fires when the
// documents changed, and also when only the source changed (changes: []),
// e.g. live -> cache when the connection drops. Documents are shared: read
// them, do not modify them.
//
//   const data = new StudioData(db, {snapshotUrl});
//   data.start(account);            // subscriptions (signed in)
//   data.startSnapshotOnly();       // no session, server down: the snapshot
//   data.docs('users') -> Map id -> doc       data.info('jobs') -> {source, seq, at, fresh}
//   data.on('change', ({col, changes, source}) => ...)   data.stop()
export const COLLECTIONS = ['users', 'jobs'];
export const FRESH_MS = 5 * 60 * 1000;
const SNAPSHOT_RETRY_MS = 30_000;
const LIVE_MARK_MS = 10_000;
const RECONNECT_GRACE_MS = 2_000;

export class StudioData {
  constructor(db, { snapshotUrl = null, target = document } = {}) {
    this.db = db;
    this.snapshotUrl = snapshotUrl;
    this.target = target;
    this.handlers = new Set();
    this.snapshot = null;         // {seq, generated_at, users, jobs} once fetched
    this.snapshotError = null;    // why the last fetch failed
    this.snapshotAt = 0;          // when it was last fetched
    this.snapshotLoading = null;
    this.serverGone = false;      // signed in: not live, and not just a reconnect (see _onState)
    this._graceTimer = null;
    this.account = null;
    this.subs = [];
    this.timers = [];
    this.c = {};
    for (const col of COLLECTIONS) this.c[col] = this._fresh(col);
  }

  _fresh(col) {
    return {
      col,
      map: new Map(),     // what is shown: id -> doc
      list: [],           // the same, by id
      source: null,       // 'live' | 'cache' | 'snapshot' | null (nothing yet)
      fromSdk: false,     // map equals the SDK listener's last emission
      sdk: null,          // the SDK's last emission {docs, changes, stale, fromCache, seq}
      sdkHasData: false,  // the SDK holds a real result (live now or before, or cached)
      error: null,        // the subscription was refused (LiveDBError)
      events: 0,
    };
  }

  on(event, cb) {
    const entry = { event, cb };
    this.handlers.add(entry);
    return () => this.handlers.delete(entry);
  }

  _emit(event, arg) {
    for (const h of [...this.handlers]) {
      if (h.event !== event) continue;
      try { h.cb(arg); } catch (e) { console.error('studio: a data handler threw:', e); }
    }
  }

  docs(col) { return this.c[col].map; }
  list(col) { return this.c[col].list; }

  // Where a collection's data is from and how old it is:
  // {source, seq, at (ms: when it was last known current; null when live or
  // unknown), fresh (at within FRESH_MS), error}
  info(col) {
    const c = this.c[col];
    let at = null;
    if (c.source === 'cache') at = this._lastLive()[col] ?? null;
    else if (c.source === 'snapshot') at = Date.parse(this.snapshot?.generated_at) || null;
    const seq = c.source === 'snapshot' ? this.snapshot?.seq ?? null : c.sdk?.seq ?? null;
    return { source: c.source, seq, at, fresh: at !== null && Date.now() - at <= FRESH_MS, error: c.error };
  }

  // ---- signed in: the SDK

  start(account) {
    this.stop();
    this.account = account;
    for (const col of COLLECTIONS) {
      const c = this.c[col];
      c.sdk = null;
      c.sdkHasData = false;
      c.error = null;
      this.subs.push(this.db.collection(col).onSnapshot((snap) => this._onSdk(col, snap), (err) => this._onSdkError(col, err)));
    }
    this.subs.push(this.db.on('state', (s) => this._onState(s)));
    // While live, remember now and then that the data is current: a reload
    // without the server then knows how old its saved copy is.
    this.timers.push(setInterval(() => this._markLive(), LIVE_MARK_MS));
    this._onPagehide = () => this._markLive();
    addEventListener('pagehide', this._onPagehide);
    this._onState(this.db.state);
  }

  stop() {
    for (const u of this.subs.splice(0)) u();
    for (const t of this.timers.splice(0)) { clearInterval(t); clearTimeout(t); }
    clearTimeout(this._graceTimer);
    this._graceTimer = null;
    this.serverGone = false;
    if (this._onPagehide) removeEventListener('pagehide', this._onPagehide);
    this._onPagehide = null;
  }

  // The session ended: nothing of it stays on screen.
  clear() {
    this.stop();
    for (const col of COLLECTIONS) {
      const c = this.c[col];
      this._apply(col, null, [], null);
      this.c[col] = { ...this._fresh(col), events: c.events };
    }
    this.account = null;
  }

  _onSdk(col, snap) {
    const c = this.c[col];
    c.sdk = snap;
    c.error = null;
    if (snap.stale && c.source === 'live') this._markLive(col); // current until now
    if (!snap.stale) {
      c.sdkHasData = true;
      this._markLive(col);
      this._apply(col, 'live', snap.docs, c.fromSdk ? snap.changes : null);
      return;
    }
    if (snap.fromCache) c.sdkHasData = true;
    this._decide(col);
  }

  _onSdkError(col, err) {
    const c = this.c[col];
    c.error = err;
    this._emit('error', { col, error: err });
    this._emit('change', { col, changes: [], source: c.source });
  }

  // The connection is gone: the snapshot may be newer than the cache (or
  // there is no cache). Not while first connecting: that is quick, and a
  // page served by livedb itself has no snapshot beside it. Nor at once on
  // 'reconnecting': the server also ends connections it is well able to
  // serve (a role changed, a client too slow), and the SDK is back within
  // moments; only still not live after RECONNECT_GRACE_MS (or 'offline',
  // which the SDK says after a few failed attempts) is the server gone.
  _onState(s) {
    clearTimeout(this._graceTimer);
    this._graceTimer = null;
    if (s === 'offline') {
      this.serverGone = true;
    } else if (s === 'reconnecting') {
      if (!this.serverGone) {
        this._graceTimer = setTimeout(() => {
          this._graceTimer = null;
          if (this.db.state !== 'reconnecting' && this.db.state !== 'offline') return;
          this.serverGone = true;
          this._wantSnapshot();
        }, RECONNECT_GRACE_MS);
      }
    } else {
      this.serverGone = false;
    }
    if (this.serverGone) this._wantSnapshot();
  }

  // Not live: the cache, the snapshot, or whichever of them is newer.
  _decide(col) {
    const c = this.c[col];
    const snap = c.sdk;
    if (snap && !snap.stale) return;
    const cache = c.sdkHasData ? snap : null;
    const shot = this.snapshot && Array.isArray(this.snapshot[col]) ? this.snapshot : null;
    if (!shot && this.serverGone) this._wantSnapshot();
    if (cache && (!shot || !(shot.seq > (cache.seq ?? -1)))) {
      this._apply(col, 'cache', cache.docs, c.fromSdk ? cache.changes : null);
    } else if (shot) {
      this._apply(col, 'snapshot', shot[col], null);
    } else if (snap && c.source === null && this.db.state === 'offline') {
      // Nothing anywhere (yet): say so once, as an empty saved copy.
      this._emit('change', { col, changes: [], source: null });
    }
  }

  // ---- the static snapshot

  _wantSnapshot() {
    if (!this.snapshotUrl || this.snapshotLoading) return this.snapshotLoading;
    if (this.snapshot && Date.now() - this.snapshotAt < SNAPSHOT_RETRY_MS) return null;
    if (!this.snapshot && this.snapshotError && Date.now() - this.snapshotAt < SNAPSHOT_RETRY_MS / 3) return null;
    this.snapshotLoading = this._fetchSnapshot().finally(() => {
      this.snapshotLoading = null;
      for (const col of COLLECTIONS) {
        if (this.c[col].sdk?.stale === false) continue;
        if (this.account) this._decide(col);
        else if (this.snapshot) this._apply(col, 'snapshot', this.snapshot[col] || [], null);
      }
      this._emit('snapshot', { snapshot: this.snapshot, error: this.snapshotError });
    });
    return this.snapshotLoading;
  }

  async _fetchSnapshot() {
    this.snapshotAt = Date.now();
    try {
      const res = await fetch(this.snapshotUrl, { cache: 'no-store', signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new Error(`${res.status} ${res.statusText}`.trim());
      const s = await res.json();
      if (!s || typeof s !== 'object' || (s.app && s.app !== 'studio') ||
          !COLLECTIONS.some((col) => Array.isArray(s[col]))) {
        throw new Error('not a studio snapshot');
      }
      const byId = (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
      for (const col of COLLECTIONS) {
        s[col] = Array.isArray(s[col]) ? s[col].filter((d) => d && typeof d === 'object' && typeof d.id === 'string').sort(byId) : [];
      }
      if (this.snapshot && typeof this.snapshot.seq === 'number' && s.seq < this.snapshot.seq) return; // an older copy
      this.snapshot = s;
      this.snapshotError = null;
    } catch (e) {
      this.snapshotError = e.name === 'TimeoutError' ? 'no answer' : e.message || String(e);
    }
  }

  // No session and no server: the snapshot alone, fetched again now and
  // then (a static host keeps serving it while the API is away).
  startSnapshotOnly() {
    this.stop();
    this.account = null;
    this._wantSnapshot();
    this.timers.push(setInterval(() => this._wantSnapshot(), SNAPSHOT_RETRY_MS));
    return this.snapshotLoading;
  }

  // ---- what the cache's age is measured by

  _liveKey() { return `studio:${this.db.name}:lastLive:${this.account?.id}`; }

  _lastLive() {
    try { return JSON.parse(localStorage.getItem(this._liveKey())) || {}; } catch { return {}; }
  }

  // Records that col's data (or every collection shown live) is current now.
  _markLive(col) {
    if (!this.account) return;
    const rec = this._lastLive();
    const cols = col ? [col] : COLLECTIONS.filter((x) => this.c[x].source === 'live');
    if (!cols.length) return;
    for (const x of cols) rec[x] = Date.now();
    try { localStorage.setItem(this._liveKey(), JSON.stringify(rec)); } catch { /* no storage */ }
  }

  // ---- what is shown

  // Shows docs (sorted by id) from source; changes: the SDK's own (when the
  // map mirrors the SDK's last emission) or null to compute them here.
  _apply(col, source, docs, changes) {
    const c = this.c[col];
    const old = c.map;
    const map = new Map();
    for (const d of docs) map.set(d.id, d);
    if (!changes) {
      changes = [];
      for (const [id, d] of map) {
        const was = old.get(id);
        if (!was) changes.push({ op: 'added', id, doc: d });
        else if (was !== d && (was.version !== d.version || was.updated_at !== d.updated_at ||
          was.created_at !== d.created_at)) changes.push({ op: 'modified', id, doc: d });
      }
      for (const [id, d] of old) if (!map.has(id)) changes.push({ op: 'removed', id, doc: d });
      changes.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    } else {
      changes = changes.map(({ op, id, doc }) => ({ op, id, doc }));
    }
    const sourceChanged = c.source !== source;
    c.map = map;
    c.list = docs;
    c.source = source;
    c.fromSdk = source === 'live' || source === 'cache';
    if (!changes.length && !sourceChanged && c.events > 0) return;
    c.events++;
    this._emit('change', { col, changes, source });
    if (source) {
      const name = col === 'users' ? 'usersDataChanged' : 'jobsDataChanged';
      this.target.dispatchEvent(new CustomEvent(name, { detail: { [col]: docs, changes, source } }));
    }
  }
}
