// Browser tests: Debian's chromium driven by playwright-core, against the
// real binary (pages and SDK served from the binary's built-in copies).
//
//   const b = await launch();            // one browser per test file
//   const ctx = await b.newContext();    // one per simulated user
//   const page = await openPage(ctx, srv, '/partner/');   // fails on console errors
//   await b.close();
import { mkdirSync } from 'node:fs';
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
