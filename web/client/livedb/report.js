// report.js: the activity the SDK reports for the page (client activity
// events, batched and rate limited across tabs; one page_view per load;
// uncaught errors and unhandled rejections as client_error), and the two
// wrappers that keep exceptions out of the SDK's handlers and report them:
// safely (the page's callbacks) and guard (the SDK's own event handlers).
// Holds the page's LiveDB instances (the first open one reports).
// Part of the browser SDK; the interface is in ../livedb.js.
import { RETRYABLE } from './errors.js';
import { storageGet, storageSet, withLock } from './util.js';

export const ACTION_RE = /^[a-z_.][a-z0-9_.]{0,31}$/;
export const SERVER_ACTIONS = new Set(['create', 'update', 'delete', 'login', 'login_failed', 'logout',
  'call', 'backup', 'restore', 'recovery', 'account_add', 'import']);

// Calls a page's callback; its exception is the page's bug: logged (so a
// developer sees it) and reported, never thrown into the SDK.
export function safely(fn, ...args) {
  try {
    fn(...args);
  } catch (e) {
    console.error('livedb: a callback threw:', e);
    reportError(e);
  }
}

// Wraps the SDK's own event handlers (socket, stream, channel, window): a
// bug in here must not surface as an exception in the page's event loop.
export function guard(fn) {
  return (...args) => {
    try {
      fn(...args);
    } catch (e) {
      console.error('livedb: internal error:', e);
      reportError(e, 'livedb.js');
    }
  };
}

// ---------------------------------------------------------------- activity reports

const SENT_LOG_WINDOW_MS = 61_000; // a little over the server's minute

export class Reporter {
  constructor(db) {
    this.db = db;
    this.buf = [];
    this.timer = null;
    this.sending = false;
    this.holdUntil = 0;
    this.inflight = null; // { batch, at }: the batch flush() is sending, one fetch at a time
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
        this.inflight = { batch, at: 0 };
        for (let i = 0; i < batch.length; i++) {
          this.inflight.at = i;
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
      this.inflight = null;
      this.sending = false;
      if (this.buf.length) {
        const log = this._readLog();
        const full = log.times.length >= this.db.opts.reportPerMinute;
        this.schedule(full ? Math.max(250, log.times[0] + SENT_LOG_WINDOW_MS - Date.now()) : this.db.opts.reportEveryMs);
      }
    }
  }

  // The page is going away: what fits in the budget goes with keepalive.
  // Events of a batch flush() has not reached yet go now too (the loop
  // would never get to them: its page is gone); the one on its way
  // already has keepalive.
  pagehide() {
    const rest = this.inflight ? this.inflight.batch.splice(this.inflight.at + 1) : [];
    this.buf.unshift(...rest);
    if (!this.buf.length || !this.db._token) return;
    const log = this._readLog();
    const budget = this.db.opts.reportPerMinute - log.times.length;
    const batch = this.buf.splice(0, Math.max(rest.length, budget));
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
export function fitData(data) {
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

export const instances = new Set();
let pageViewSent = false;
let hooked = false;

function firstInstance() {
  for (const db of instances) if (!db._closed) return db;
  return null;
}

export function reportError(e, source = '', line = 0) {
  const db = firstInstance();
  if (!db) return;
  const message = String(e && e.message !== undefined ? e.message : e).slice(0, 1000);
  db._reporter.add('client_error', fitData({ message, source: String(source).slice(0, 500), line: line | 0 }));
}

export function hookPage() {
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

export function sendPageView(db) {
  if (pageViewSent) return;
  pageViewSent = true;
  const send = () => db._reporter.add('page_view', { path: location.pathname, load_ms: loadMs() });
  if (document.readyState === 'complete') send();
  else window.addEventListener('load', () => setTimeout(send, 0), { once: true });
}
