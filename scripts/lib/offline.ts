import { PLOTLY_SCRIPT_MARKER } from '../../src/notebook/display.js';
import { type Edit, type StartTag, applyEdits, attr, decodeEntities, endTagAfter, escapeHtml, hasClass, startTags } from './html.js';

/**
 * The docs pages must work from their folder alone: opened from disk or served, with no
 * network. These functions find every reference that leaves the folder and take them out.
 */

/** The shared plotly.js file the docs folder holds beside the pages. */
export const PLOTLY_FILE = 'plotly.min.js';
/** The class of a chart's container in a notebook's HTML output (src/notebook/display.ts). */
export const CHART_CLASS = 'lora-tfjs-plot';

/**
 * True when a URL (as an attribute holds it, entities decoded) points outside the docs
 * folder: any scheme but `data:` (http, https, file, mailto, …), a protocol-relative or
 * absolute path, or a relative path that climbs above the folder. `#fragment`s and relative
 * paths inside the folder are not external. `depth` is how many folders below the docs
 * folder the page sits (`demo/index.html`: 1), so that it may climb that far (`../index.html`).
 */
export function isExternalUrl(url: string, depth = 0): boolean {
  // Browsers drop tabs and newlines anywhere in a URL, and spaces and controls at its ends.
  const u = url.replace(/[\t\n\r]/g, '').replace(/^[\u0000-\u0020]+|[\u0000-\u0020]+$/g, '');
  if (u === '' || u.startsWith('#')) return false;
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(u);
  if (scheme !== null) return scheme[1].toLowerCase() !== 'data';
  if (u.startsWith('/') || u.startsWith('\\')) return true;
  let level = depth;
  for (const segment of u.split(/[?#]/)[0].split(/[/\\]/)) {
    const s = segment.replace(/%2e/gi, '.');
    if (s === '..') level -= 1;
    else if (s !== '.' && s !== '') level += 1;
    if (level < 0) return true;
  }
  return false;
}

/** Attributes that hold one URL. */
const URL_ATTRS = new Set(['href', 'src', 'action', 'formaction', 'poster', 'background', 'xlink:href', 'manifest', 'longdesc', 'cite', 'icon']);
/** Attributes that hold a list of URLs (`srcset`: "url size, url size"; `ping`: space-separated). */
const URL_LIST_ATTRS: Record<string, (v: string) => string[]> = {
  srcset: (v) => v.split(',').map((c) => c.trim().split(/\s+/)[0]).filter((c) => c !== ''),
  imagesrcset: (v) => v.split(',').map((c) => c.trim().split(/\s+/)[0]).filter((c) => c !== ''),
  ping: (v) => v.split(/\s+/).filter((c) => c !== ''),
};
/** `url(…)` and `@import "…"` in CSS. */
const CSS_URL = /url\(\s*(?:"([^"]*)"|'([^']*)'|([^)\s]*))\s*\)/gi;
/** `@import "…"` (the `@import url(…)` form is a `url()`), and any @import statement whole. */
const CSS_IMPORT = /@import\s+(?:"([^"]*)"|'([^']*)')/gi;
const CSS_IMPORT_STATEMENT = /@import\s+(?:url\(\s*)?(?:"([^"]*)"|'([^']*)'|([^\s;)]+))[^;]*;?/gi;
/** A URL as a string literal in a script (a dynamic import, a script element it creates…). */
const SCRIPT_URL = /["'`]((?:[a-zA-Z][a-zA-Z0-9+.-]*:)?\/\/[^"'`\s]*)/g;
/** XML namespace names are identifiers that look like URLs; scripts that build SVG use them. */
const XML_NAMESPACE = /^https?:\/\/www\.w3\.org\/(?:2000\/svg|1999\/xhtml|1999\/xlink|2000\/xmlns\/?|XML\/1998\/namespace)$/;

function cssUrls(css: string): string[] {
  const urls: string[] = [];
  for (const m of css.matchAll(CSS_URL)) urls.push(m[1] ?? m[2] ?? m[3] ?? '');
  for (const m of css.matchAll(CSS_IMPORT)) urls.push(m[1] ?? m[2] ?? '');
  return urls;
}

/** The URLs a tag refers to through its attributes (not its content). */
function tagUrls(tag: StartTag): Array<{ attr: string; url: string }> {
  const out: Array<{ attr: string; url: string }> = [];
  for (const a of tag.attrs) {
    if (a.value === null) continue;
    if (URL_ATTRS.has(a.name) || (a.name === 'data' && tag.name === 'object')) out.push({ attr: a.name, url: a.value });
    else if (a.name in URL_LIST_ATTRS) for (const url of URL_LIST_ATTRS[a.name](a.value)) out.push({ attr: a.name, url });
    else if (a.name === 'style') for (const url of cssUrls(a.value)) out.push({ attr: a.name, url });
    else if (a.name === 'content' && tag.name === 'meta' && /^\s*refresh\s*$/i.test(attr(tag, 'http-equiv') ?? '')) {
      const m = /url\s*=\s*['"]?([^'"]+)/i.exec(a.value);
      if (m !== null) out.push({ attr: a.name, url: m[1] });
    }
  }
  return out;
}

/**
 * Every reference of the page to something outside the docs folder: URL attributes
 * (href, src, srcset, …), CSS `url()` and `@import` (style elements and attributes), meta
 * refreshes, and URLs written as string literals in inline scripts. Each as `<tag attr> url`.
 * `depth`: the page's folder depth below the docs folder (see {@link isExternalUrl}).
 */
export function externalReferences(html: string, depth = 0): string[] {
  const found: string[] = [];
  const external = (url: string) => isExternalUrl(url, depth);
  for (const tag of startTags(html)) {
    for (const { attr: name, url } of tagUrls(tag)) if (external(url)) found.push(`<${tag.name} ${name}> ${url}`);
    if (tag.raw === null) continue;
    if (tag.name === 'style') for (const url of cssUrls(tag.raw.text)) if (external(url)) found.push(`<style> ${url}`);
    if (tag.name === 'script') {
      for (const m of tag.raw.text.matchAll(SCRIPT_URL)) if (!XML_NAMESPACE.test(m[1]) && external(m[1])) found.push(`<script> ${m[1]}`);
    }
  }
  return found;
}

/** Elements removed whole (start tag to end tag) when they load something from outside. */
const REMOVE_ELEMENT = new Set(['script', 'iframe', 'frame', 'object', 'video', 'audio']);
/** Void elements removed when they load something from outside. */
const REMOVE_TAG = new Set(['link', 'img', 'source', 'track', 'embed', 'input', 'meta', 'area']);

const cssOffline = (css: string) =>
  css
    .replace(CSS_IMPORT_STATEMENT, (m, a?: string, b?: string, c?: string) => (isExternalUrl(a ?? b ?? c ?? '') ? '' : m))
    .replace(CSS_URL, (m, a?: string, b?: string, c?: string) => (isExternalUrl(a ?? b ?? c ?? '') ? 'none' : m));

function serializeTag(tag: StartTag, value: (name: string, v: string | null) => string | null | undefined): string {
  const parts = [tag.name];
  for (const a of tag.attrs) {
    const v = value(a.name, a.value);
    if (v === undefined) continue; // dropped
    parts.push(v === null ? a.name : `${a.name}="${escapeHtml(v)}"`);
  }
  return `<${parts.join(' ')}>`;
}

/**
 * The page without anything that leaves the docs folder, and with the shared plotly.js:
 * - the copies of plotly.js that chart outputs inline (marked with PLOTLY_SCRIPT_MARKER) go,
 *   and when the page holds a chart (`class="lora-tfjs-plot"`), one
 *   `<script src="plotly.min.js">` is loaded in the head, before any chart's own script runs,
 *   with Plotly's logo link (to plotly.com) switched off;
 * - scripts, stylesheets, images and frames loaded from outside are removed;
 * - a link to another site becomes its text followed by the address, not a link;
 * - other URL attributes pointing outside are dropped, and CSS `url()`s become `none`.
 */
export function offlineHtml(html: string): string {
  const edits: Edit[] = [];
  const tags = startTags(html);
  let charts = false;
  for (const tag of tags) {
    if (hasClass(tag, CHART_CLASS)) charts = true;
    if (tag.name === 'script' && attr(tag, PLOTLY_SCRIPT_MARKER) !== undefined) {
      // An inlined copy, or the tags of an earlier pass (with their line break).
      const end = tag.raw?.elementEnd ?? tag.end;
      edits.push({ start: tag.start, end: attr(tag, PLOTLY_SCRIPT_MARKER) !== 'inline' && html[end] === '\n' ? end + 1 : end, text: '' });
      continue;
    }
    const external = tagUrls(tag).filter((u) => u.attr !== 'style' && isExternalUrl(u.url));
    const styleOut = attr(tag, 'style') !== undefined && cssUrls(attr(tag, 'style') ?? '').some((u) => isExternalUrl(u));
    if (tag.raw !== null && tag.name === 'style' && cssUrls(tag.raw.text).some((u) => isExternalUrl(u))) {
      edits.push({ start: tag.raw.start, end: tag.raw.end, text: cssOffline(tag.raw.text) });
    }
    if (external.length === 0 && !styleOut) continue;
    if (REMOVE_ELEMENT.has(tag.name) && external.some((u) => u.attr === 'src' || u.attr === 'data')) {
      const end = tag.raw?.elementEnd ?? endTagAfter(html, tag.name, tag.end)?.end ?? tag.end;
      edits.push({ start: tag.start, end, text: '' });
    } else if (REMOVE_TAG.has(tag.name)) {
      const alt = tag.name === 'img' ? attr(tag, 'alt') : null;
      edits.push({ start: tag.start, end: tag.end, text: alt ? `<span class="lora-docs-external">${escapeHtml(alt)}</span>` : '' });
    } else if (tag.name === 'a' && external.some((u) => u.attr === 'href')) {
      const href = attr(tag, 'href') ?? '';
      const close = endTagAfter(html, 'a', tag.end);
      const text = close === null ? '' : decodeEntities(html.slice(tag.end, close.start).replace(/<[^>]*>/g, '')).trim();
      edits.push({ start: tag.start, end: tag.end, text: `<span class="lora-docs-external" title="${escapeHtml(href)}">` });
      const address = text === href || text === href.replace(/^[a-z]+:\/\//i, '') ? '' : ` <span class="lora-docs-url">(${escapeHtml(href)})</span>`;
      if (close !== null) edits.push({ start: close.start, end: close.end, text: `</span>${address}` });
    } else {
      edits.push({
        start: tag.start,
        end: tag.end,
        text: serializeTag(tag, (name, v) => {
          if (name === 'style' && v !== null) return cssOffline(v);
          return external.some((u) => u.attr === name) ? undefined : v;
        }),
      });
    }
  }
  let out = applyEdits(html, edits);
  if (charts) {
    const script =
      `<script type="text/javascript" src="${PLOTLY_FILE}" ${PLOTLY_SCRIPT_MARKER}="file"></script>` +
      // Plotly's mode bar would add a link to plotly.com to every chart.
      `<script type="text/javascript" ${PLOTLY_SCRIPT_MARKER}="config">if (window.Plotly) window.Plotly.setPlotConfig({ displaylogo: false });</script>`;
    const head = out.search(/<\/head\s*>/i);
    // No head (a fragment): before the first chart, so that its drawing script finds Plotly.
    const at = head >= 0 ? head : Math.max(0, out.search(new RegExp(`<[a-zA-Z][^>]*class="[^"]*\\b${CHART_CLASS}\\b`)));
    out = `${out.slice(0, at)}${script}\n${out.slice(at)}`;
  }
  return out;
}
