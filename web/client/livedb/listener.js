// listener.js: one Listener per onSnapshot: the documents it holds, what
// its callback last saw, its seq and its state (cached, catching up, live),
// and the emission of the difference between the two.
// Part of the browser SDK; the interface is in ../livedb.js.
import { condHolds, olderThan, sameDoc } from './where.js';
import { safely } from './report.js';

// ---------------------------------------------------------------- listeners
//
// One per onSnapshot. `docs` is what it holds now, `emitted` what its
// callback saw last; `dirty` the ids that may differ between the two.

export class Listener {
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
