// The admin portal's offline copy: see /shared/sw-core.js.
self.PAGE_FILES = ['/admin/', '/admin/app.js', '/admin/style.css', '/shared/wholesale.js',
  '/client/livedb.js', '/client/ui.css', '/favicon.svg', '/vendor/chart.min.js'];
importScripts('/shared/sw-core.js');
