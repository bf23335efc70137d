// The home page and the static file server, as a browser sees them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, openPage, screenshot, startServer } from './lib.mjs';

let srv, browser;
before(async () => {
  srv = await startServer({ args: ['--apps', 'wholesale,studio'] });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await srv?.stop();
});

test('the home page links the portals and loads without errors', async () => {
  const ctx = await browser.newContext();
  const page = await openPage(ctx, srv, '/');
  assert.equal(await page.title(), 'livedb');
  const links = await page.$$eval('a.card', (as) => as.map((a) => a.getAttribute('href')));
  assert.deepEqual(links, ['/partner/', '/admin/', '/studio/']);
  await screenshot(page, 'home-desktop');
  await page.setViewportSize({ width: 375, height: 740 });
  await screenshot(page, 'home-375');
  assert.deepEqual(page.problems, []);
  await ctx.close();
});

test('pages carry a content security policy, an ETag, and revalidate to 304', async () => {
  const r = await fetch(srv.url + '/');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/html/);
  assert.match(r.headers.get('content-security-policy'), /default-src 'self'/);
  assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
  const etag = r.headers.get('etag');
  assert.match(etag, /^"[0-9a-f]{32}"$/);
  const again = await fetch(srv.url + '/', { headers: { 'If-None-Match': etag } });
  assert.equal(again.status, 304);
});

test('paths outside the served files are 404, never files from elsewhere', async () => {
  for (const p of ['/../Makefile', '/partner/../../src/main.c', '/%2e%2e/Makefile', '/nope/',
    '/client/../../etc/passwd', '/partner/..%2f..%2fMakefile']) {
    const r = await fetch(srv.url + p);
    assert.equal(r.status, 404, p);
  }
  const chart = await fetch(srv.url + '/vendor/chart.min.js');
  assert.equal(chart.status, 200);
  assert.match(chart.headers.get('content-type'), /javascript/);
});
