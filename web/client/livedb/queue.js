// queue.js: the LiveDB methods of the offline queue: calls kept in the
// `queue` store while not live, sent oldest first by one tab at a time
// (a Web Lock), each deleted once answered, its outcome sent to the tab
// that queued it.
// Part of the browser SDK; the interface is in ../livedb.js.
import { RETRYABLE } from './errors.js';
import { randomId, withLock } from './util.js';

// Methods of LiveDB (installed on its prototype by ../livedb.js).
export const queueMethods = {
  async _enqueue(fn, args) {
    const entry = { id: randomId(), account: this.account.id, fn, args, at: Date.now(), tab: this._tab };
    await this._store.put('queue', entry);
    this._queueChanged();
    if (this.state === 'live') this._flushQueue();
    return { queued: true, id: entry.id };
  },

  _queueChanged() {
    this._broadcast({ t: 'queue' });
    this._emitQueue();
  },

  async _emitQueue() {
    const list = await this.pending();
    this._emit('queue', list);
  },

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
  },

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
  },
};
