// sse.js: the HTTP fallback transport: list pages for snapshots, the JSON
// change feed to catch up from a seq, and one EventSource per collection
// for live changes.
// Part of the browser SDK; the interface is in ../livedb.js.
import { RETRYABLE } from './errors.js';
import { storageGet } from './util.js';
import { guard } from './report.js';
import { Transport } from './transport.js';

// ---------------------------------------------------------------- SSE transport
//
// The fallback over plain HTTP. Per listener: a snapshot from list pages
// (or, when it has a seq, the JSON change feed from that seq, exact), then
// the collection's event stream. Each listener skips changes at or before
// its own seq, so one stream per collection serves listeners that joined at
// different positions. Any stream error ends the transport; the db
// reconnects with backoff and every listener resumes from its seq.

const RECENT_KEEP = 1000;

export class SseTransport extends Transport {
  constructor(db) {
    super(db, 'sse');
    this.streams = new Map(); // col -> {es, recent: [change...]}
    this.syncing = new Set(); // listeners between subscribe and in sync
    this.abort = new AbortController();
  }

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
