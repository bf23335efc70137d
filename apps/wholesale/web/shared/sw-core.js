// sw-core.js: the service worker body both portals import (their sw.js sets
// self.PAGE_FILES first). Pages and scripts are fetched from the network
// first, so an online page is always current, and fall back to the copy
// kept here when the server cannot be reached: a reload while offline
// still opens the portal, whose data then comes from the SDK's cache.
// The API (/v1/) and /metrics are never touched.
/* global self, caches */
const CACHE = 'livedb-wholesale-pages-v1';

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => Promise.all(self.PAGE_FILES.map(
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
        e.waitUntil(caches.open(CACHE).then((c) => c.put(r, copy)));
      }
      return res;
    } catch (err) {
      const hit = await caches.match(r, { ignoreSearch: true }) ||
        (r.mode === 'navigate' && await caches.match(self.PAGE_FILES[0]));
      return hit || Response.error();
    }
  })());
});
