// cache.js: the IndexedDB database `livedb:NAME` (the `cache` of query
// results per account, and the `queue` store that queue.js uses), with a
// memory stand-in where IndexedDB is not available; and the LiveDB methods
// that load a listener from the cache and write it back.
// Part of the browser SDK; the interface is in ../livedb.js.

export const CACHE_MAX_AGE_MS = 30 * 24 * 3600 * 1000; // queries not seen for a month go

// ---------------------------------------------------------------- IndexedDB
//
// Two object stores: `cache` {key, account, seq, docs, at} and `queue`
// {id, account, fn, args, at, tab}. Without IndexedDB (blocked, private
// mode) the same calls work on memory, for this page only.

export class Store {
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

// Methods of LiveDB (installed on its prototype by ../livedb.js).
export const cacheMethods = {
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
  },

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
  },
};
