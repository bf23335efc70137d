// Browser tests: Debian's chromium driven by playwright-core, against the
// real binary (pages and SDK served from the binary's built-in copies).
//
//   const b = await launch();            // one browser per test file
//   const ctx = await b.newContext();    // one per simulated user
//   const page = await openPage(ctx, srv, '/partner/');   // fails on console errors
//   await b.close();
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export { startServer, addAccount, login, sleep, ADMIN } from '../api/lib.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

// Launch flags measured on these machines (see ../shared/NOTES.md).
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--autoplay-policy=no-user-gesture-required'];

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
  });
}

// Opens a page and records every console error, page error and failed
// request in page.problems (tests assert it stays empty).
export async function openPage(ctx, srv, p, { viewport } = {}) {
  const page = await ctx.newPage();
  if (viewport) await page.setViewportSize(viewport);
  watch(page);
  await page.goto(srv.url + p);
  return page;
}

export function watch(page) {
  page.problems = [];
  page.on('console', (m) => { if (m.type() === 'error') page.problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  return page;
}

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 375, height: 740 };

// Screenshots go to build/screenshots/ (not in git), for people to look at:
// the whole page from the top, or what is on the screen (view: true) for
// dialogs, sheets and overlays.
export async function screenshot(page, name, { view = false } = {}) {
  const dir = path.join(ROOT, 'build', 'screenshots');
  mkdirSync(dir, { recursive: true });
  if (!view) await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: !view });
}

// NAME-desktop and NAME-375: the page at desktop size and 375 px wide, then
// back to its size.
export async function screenshots(page, name, { view = false } = {}) {
  const size = page.viewportSize();
  for (const [vp, suffix] of [[DESKTOP, 'desktop'], [PHONE, '375']]) {
    await page.setViewportSize(vp);
    await new Promise((r) => setTimeout(r, 350));
    await screenshot(page, `${name}-${suffix}`, { view });
  }
  await page.setViewportSize(size);
  await new Promise((r) => setTimeout(r, 150));
}

// ---------------------------------------------------------------- helpers the test files share

// A TCP port free now (for a server that must keep its URL across a restart).
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port: p } = s.address();
      s.close(() => resolve(p));
    });
  });
}

// The JSON of a 2xx answer (what: the step, for the failure message).
export async function ok(r, what) {
  assert.ok(r.status >= 200 && r.status < 300, `${what}: ${r.status} ${r.text}`);
  return r.json;
}

// Milliseconds from t0 until fn (run in the page) is truthy.
export async function within(page, t0, fn, arg, timeout = 5000) {
  await page.waitForFunction(fn, arg, { timeout, polling: 20 });
  return Date.now() - t0;
}

export function noProblems(...pages) {
  for (const p of pages) assert.deepEqual(p.problems, [], `console errors on ${p.url()}`);
}

// The end of a test: none of pages had a problem (noProblems), then each of
// contexts is closed, in order.
export async function finish(pages, ...contexts) {
  noProblems(...pages);
  for (const c of contexts) await c.close();
}

// Opens path in ctx and signs in as who through the page's sign-in form
// (shot(page), when given, first: the form's screenshots); resolves once
// #app shows.
export async function signInPage(ctx, srv, p, who, { viewport = DESKTOP, shot } = {}) {
  const page = await openPage(ctx, srv, p, { viewport });
  await page.waitForSelector('#login-form', { state: 'visible' });
  if (shot) await shot(page);
  await page.fill('#login-email', who.email);
  await page.fill('#login-password', who.password);
  await page.click('#login-submit');
  await page.waitForSelector('#app', { state: 'visible' });
  return page;
}
