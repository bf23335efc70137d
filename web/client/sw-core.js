// sw-core.js: a service worker body any livedb page may use (served at
// /client/sw-core.js). The page's own sw.js sets, then imports it:
//
//   self.CACHE_NAME = 'livedb-studio-pages-v1';
//   self.PAGE_FILES = ['./', 'app.js', 'style.css', '../client/livedb.js', ...];
//   importScripts('../client/sw-core.js');
//
// PAGE_FILES are relative to the sw.js (so the same files work under any
// path, on the livedb server or a static host); the first is the page a
// navigation falls back to. Requests are answered from the network first,
// so an online page is always current, and from the copy kept here when the
// network fails: a reload while the server is down still opens the page,
// whose data then comes from the SDK's cache. Only GETs of the worker's own
// origin are touched; the API (/v1/) and /metrics never are. A PAGE_FILES
// entry for client/livedb.js brings the SDK's modules (client/livedb/*.js)
// with it, so that no page lists them.
/* global self, caches */
const CACHE = self.CACHE_NAME || 'livedb-pages-v1';
const SDK_MODULES = ['errors', 'util', 'report', 'where', 'cache', 'listener', 'transport', 'ws', 'sse', 'tabs', 'queue'];
const FILES = (self.PAGE_FILES || [])
  .flatMap((u) => (/(^|\/)client\/livedb\.js$/.test(u)
    ? [u, ...SDK_MODULES.map((m) => u.replace(/livedb\.js$/, `livedb/${m}.js`))] : [u]))
  .map((u) => new URL(u, self.location.href).href);

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => Promise.all(FILES.map(
    (u) => c.add(new Request(u, { cache: 'no-cache' })).catch(() => null)))));
  self.skipWaiting();
});

self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (e) => {
  const r = e.request;
  if (r.method !== 'GET') return;
  const u = new URL(r.url);
  if (u.origin !== self.location.origin || u.pathname.startsWith('/v1/') || u.pathname === '/metrics') return;
  e.respondWith((async () => {
    try {
      const res = await fetch(r);
      if (res.ok && res.type === 'basic') {
        const copy = res.clone();
        e.waitUntil(caches.open(CACHE).then((c) => c.put(r, copy)).catch(() => null));
      }
      return res;
    } catch (err) {
      const hit = await caches.match(r, { ignoreSearch: true, cacheName: CACHE }) ||
        (r.mode === 'navigate' && FILES.length && await caches.match(FILES[0], { cacheName: CACHE }));
      return hit || Response.error();
    }
  })());
});
