import type { Browser, Page } from 'playwright-core';
import { offlinePage } from './browser.js';

export { serveFolder } from '../scripts/lib/browser.js';

/** Checks of the rendered docs in Chromium, shared by the notebook and runner tests. */

/** Open a docs page with every request outside `origin` blocked (and listed). */
export async function openDocsPage(browser: Browser, origin: string, path: string) {
  const { page, blocked, pageErrors, consoleErrors, close } = await offlinePage(browser, origin);
  await page.goto(`${origin}/${path}`, { waitUntil: 'load' });
  return { p: page, errors: [...consoleErrors, ...pageErrors], blocked, close };
}

export interface Reference {
  tag: string;
  attr: string;
  /** The attribute as written. */
  raw: string;
  /** Resolved against the page. */
  url: string;
  /** For a `#fragment` of the same page: whether an element has that id. */
  targetFound: boolean | null;
}

/** Every href, src and xlink:href of the page's live DOM (what scripts added included: Plotly's mode bar…). */
export async function references(p: Page): Promise<Reference[]> {
  return p.evaluate(() => {
    const out: Array<{ tag: string; attr: string; raw: string; url: string; targetFound: boolean | null }> = [];
    for (const el of Array.from(document.querySelectorAll('*'))) {
      for (const a of Array.from(el.attributes)) {
        if (!['href', 'src', 'xlink:href'].includes(a.name)) continue;
        const raw = a.value;
        const url = new URL(raw, document.baseURI).href;
        const here = url.split('#')[0] === location.href.split('#')[0];
        // As browsers find a fragment's element: its id as written, else percent-decoded
        // (nbconvert writes heading ids percent-encoded: id="01-%C2%B7-Parameter-efficiency").
        const fragment = raw.startsWith('#') || (here && url.includes('#')) ? url.slice(url.indexOf('#') + 1) : null;
        // (No named function in here: a bundler's name-keeping helper does not exist in the page.)
        const targetFound = fragment === null ? null : fragment === '' || document.getElementById(fragment) !== null || document.getElementById(decodeURIComponent(fragment)) !== null;
        out.push({ tag: el.tagName.toLowerCase(), attr: a.name, raw, url, targetFound });
      }
    }
    return out;
  });
}

const fetched = new Map<string, Promise<number>>();

/**
 * The page's references that do not resolve: a fragment with no element of that id, a URL
 * outside the docs server, or a file it does not serve (each file fetched once: 200 or broken).
 */
export async function brokenReferences(p: Page, origin: string): Promise<{ checked: Reference[]; broken: string[] }> {
  const refs = await references(p);
  const broken: string[] = [];
  for (const r of refs) {
    if (r.url.startsWith('data:')) continue;
    if (r.targetFound === false) broken.push(`<${r.tag} ${r.attr}="${r.raw}">: no element with that id`);
    if (r.targetFound !== null) continue;
    if (!r.url.startsWith(`${origin}/`)) {
      broken.push(`<${r.tag} ${r.attr}="${r.raw}">: outside the docs folder`);
      continue;
    }
    const file = r.url.split('#')[0];
    if (!fetched.has(file)) fetched.set(file, fetch(file).then((res) => res.status));
    const status = await (fetched.get(file) as Promise<number>);
    if (status !== 200) broken.push(`<${r.tag} ${r.attr}="${r.raw}">: ${file} answered ${status}`);
  }
  return { checked: refs, broken };
}

/** The page's header: its links (href as written) and its text. */
export async function pageHeader(p: Page) {
  const header = p.locator('header.lora-docs-header');
  return {
    text: (await header.innerText()).replace(/\s+/g, ' '),
    home: await header.locator('a.lora-docs-home').getAttribute('href'),
    prev: (await header.locator('a[rel=prev]').count()) === 0 ? null : await header.locator('a[rel=prev]').getAttribute('href'),
    next: (await header.locator('a[rel=next]').count()) === 0 ? null : await header.locator('a[rel=next]').getAttribute('href'),
  };
}
