import type { Browser, Page } from 'playwright-core';

export { launchChromium } from '../scripts/lib/browser.js';

/**
 * A page whose requests outside `origin` are blocked (and listed), with its uncaught errors
 * and console errors collected.
 */
export async function offlinePage(browser: Browser, origin: string) {
  const context = await browser.newContext();
  const blocked: string[] = [];
  await context.route('**/*', (route) => {
    if (route.request().url().startsWith(origin)) return route.continue();
    blocked.push(route.request().url());
    return route.abort();
  });
  const page: Page = await context.newPage();
  const pageErrors: string[] = [];
  const consoleErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  return { page, blocked, pageErrors, consoleErrors, close: () => context.close() };
}
