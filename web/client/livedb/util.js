// util.js: the SDK's small helpers with no state of their own: random ids,
// localStorage as JSON, a lock shared by the tabs of the origin (Web Locks,
// or a localStorage lease where there are none), sleep.
// Part of the browser SDK; the interface is in ../livedb.js.

export function randomId(n = 20) {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  let s = '';
  for (const b of bytes) s += abc[b % 62];
  return s;
}

export function storageGet(key) {
  try { return JSON.parse(localStorage.getItem(key)); } catch { return null; }
}

export function storageSet(key, value) {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch { /* private mode, quota: the session is then for this page only */ }
}

// Runs fn holding an exclusive lock shared by every tab of the origin.
// Web Locks exist only in secure contexts (https, localhost); elsewhere a
// lease in localStorage stands in (best effort: two tabs racing within a
// few milliseconds could both win; the server deduplicates place_order).
export async function withLock(name, fn) {
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

export function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }
