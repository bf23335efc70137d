// The admin portal's offline copy: see /client/sw-core.js.
self.CACHE_NAME = 'livedb-wholesale-pages-v1';
self.PAGE_FILES = ['/admin/', '/admin/app.js', '/admin/style.css', '/shared/wholesale.js',
  '/client/livedb.js', '/client/ui.js', '/client/ui.css', '/favicon.svg', '/vendor/chart.min.js'];
importScripts('/client/sw-core.js');
