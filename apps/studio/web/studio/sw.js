// The studio pages' offline copy (see /client/sw-core.js): a reload while
// the server is down still opens the dashboard, whose data then comes from
// the SDK's cache or the published snapshot.
self.CACHE_NAME = 'livedb-studio-pages-v1';
self.PAGE_FILES = ['./', 'app.js', 'common.js', 'data.js', 'style.css', 'migrate.html', 'migrate.js',
  'test.html', 'test.js', '../client/livedb.js', '../client/ui.js', '../client/ui.css', '../favicon.svg'];
importScripts('../client/sw-core.js');
