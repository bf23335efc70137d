// ws.js: the WebSocket transport (/v1/realtime): subscriptions with
// `since`, calls, presence, the heartbeat, and the server's messages
// dispatched to the listeners.
// Part of the browser SDK; the interface is in ../livedb.js.
import { LiveDBError } from './errors.js';
import { guard } from './report.js';
import { Transport } from './transport.js';

// ---------------------------------------------------------------- WebSocket transport

export class WsTransport extends Transport {
  constructor(db) {
    super(db, 'ws');
    this.ws = null;
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
