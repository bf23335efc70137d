// The partner portal's offline copy: see /shared/sw-core.js.
self.PAGE_FILES = ['/partner/', '/partner/app.js', '/partner/style.css', '/shared/wholesale.js',
  '/client/livedb.js', '/client/ui.css', '/favicon.svg'];
importScripts('/shared/sw-core.js');
