// The partner portal's offline copy: see /client/sw-core.js.
self.CACHE_NAME = 'livedb-wholesale-pages-v1';
self.PAGE_FILES = ['/partner/', '/partner/app.js', '/partner/style.css', '/shared/wholesale.js',
  '/client/livedb.js', '/client/ui.js', '/client/ui.css', '/favicon.svg'];
importScripts('/client/sw-core.js');
