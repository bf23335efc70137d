// tabs.js: the LiveDB methods that talk to the page's other tabs: the
// BroadcastChannel `livedb:NAME` (changes, queue changes, call outcomes,
// logout) and the Web Lock each tab holds while it lives.
// Part of the browser SDK; the interface is in ../livedb.js.
import { LiveDBError } from './errors.js';

// Methods of LiveDB (installed on its prototype by ../livedb.js).
export const tabMethods = {
  // Held while this page lives: other tabs ask whether it is still open.
  _holdTabLock() {
    if (!navigator.locks?.request) return;
    navigator.locks.request(`livedb:${this.name}:tab:${this._tab}`, () => new Promise((resolve) => {
      this._releaseTabLock = resolve;
    })).catch(() => {});
  },

  async _tabAlive(tab) {
    if (tab === this._tab) return true;
    if (!navigator.locks?.query) return false;
    try {
      const { held } = await navigator.locks.query();
      return held.some((l) => l.name === `livedb:${this.name}:tab:${tab}`);
    } catch {
      return false;
    }
  },

  _broadcast(msg) {
    try {
      this._bc?.postMessage({ ...msg, from: this._tab });
    } catch { /* closed */ }
  },

  // A listener applied a change: other tabs apply it too. `removed` ops
  // carry no document, so they count only for the same query elsewhere.
  _shareChange(L, id, doc) {
    if (!this.account) return;
    this._broadcast({ t: 'change', account: this.account.id, col: L.col, key: L.key, id, doc });
  },

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
  },
};
