/**
 * Just enough HTML scanning for the docs build: the start tags of a page (with their
 * attributes and where they sit), skipping comments and the text of raw-text elements
 * (`<script>`, `<style>`, …), whose content is reported separately. Not a general parser:
 * it reads the well-formed pages nbconvert writes and the pages built here.
 */

export interface Attribute {
  /** Lower-cased name. */
  name: string;
  /** The value with character references decoded; null for a bare attribute. */
  value: string | null;
}

export interface StartTag {
  /** Lower-cased element name. */
  name: string;
  attrs: Attribute[];
  /** Offsets of the tag itself in the page: html.slice(start, end) is `<name …>`. */
  start: number;
  end: number;
  /** For raw-text elements: their content and where the element ends (after `</name>`). */
  raw: { text: string; start: number; end: number; elementEnd: number } | null;
}

/** Elements whose content is text up to their end tag, never markup. */
const RAW_TEXT = new Set(['script', 'style', 'textarea', 'title', 'xmp', 'noembed', 'noframes']);
/** A start or end tag: runs to the first `>` outside quotes. */
const TAG = /<(\/?)([a-zA-Z][^\s/>]*)((?:"[^"]*"|'[^']*'|[^'">])*)>/y;
const ATTR = /([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;

const NAMED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0', colon: ':', sol: '/', tab: '\t', newline: '\n', period: '.', lpar: '(', rpar: ')' };

/** Decode the character references an attribute value may hold (numeric, and the common named ones). */
export function decodeEntities(s: string): string {
  return s.replace(/&(#[xX][0-9a-fA-F]+|#\d+|[a-zA-Z]+);?/g, (m, ref: string) => {
    if (ref[0] === '#') {
      const code = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      return Number.isFinite(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : m;
    }
    return NAMED[ref.toLowerCase()] ?? m;
  });
}

/** Text for HTML content and (double- or single-quoted) attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

function parseAttributes(text: string): Attribute[] {
  const attrs: Attribute[] = [];
  for (const m of text.matchAll(ATTR)) {
    const value = m[2] ?? m[3] ?? m[4];
    attrs.push({ name: m[1].toLowerCase(), value: value === undefined ? null : decodeEntities(value) });
  }
  return attrs;
}

/** Every start tag of the page, in order. */
export function startTags(html: string): StartTag[] {
  const tags: StartTag[] = [];
  let i = 0;
  while (i < html.length) {
    const lt = html.indexOf('<', i);
    if (lt < 0) break;
    if (html.startsWith('<!--', lt)) {
      const close = html.indexOf('-->', lt + 4);
      i = close < 0 ? html.length : close + 3;
      continue;
    }
    if (html.startsWith('<!', lt) || html.startsWith('<?', lt)) {
      const close = html.indexOf('>', lt);
      i = close < 0 ? html.length : close + 1;
      continue;
    }
    TAG.lastIndex = lt;
    const m = TAG.exec(html);
    if (m === null) {
      i = lt + 1;
      continue;
    }
    i = TAG.lastIndex;
    if (m[1] === '/') continue;
    const name = m[2].toLowerCase();
    const tag: StartTag = { name, attrs: parseAttributes(m[3]), start: lt, end: i, raw: null };
    if (RAW_TEXT.has(name)) {
      const close = new RegExp(`</${name}[\\s/>]`, 'ig');
      close.lastIndex = i;
      const c = close.exec(html);
      const textEnd = c === null ? html.length : c.index;
      const closeEnd = c === null ? html.length : html.indexOf('>', c.index) + 1 || html.length;
      tag.raw = { text: html.slice(i, textEnd), start: i, end: textEnd, elementEnd: closeEnd };
      i = closeEnd;
    }
    tags.push(tag);
  }
  return tags;
}

export const attr = (tag: StartTag, name: string): string | null | undefined => tag.attrs.find((a) => a.name === name)?.value;

export const hasClass = (tag: StartTag, cls: string): boolean => (attr(tag, 'class') ?? '').split(/\s+/).includes(cls);

/** Where an `</name>` end tag closes the element that starts at `from` (elements of that name not nested). */
export function endTagAfter(html: string, name: string, from: number): { start: number; end: number } | null {
  const close = new RegExp(`</${name}\\s*>`, 'ig');
  close.lastIndex = from;
  const m = close.exec(html);
  return m === null ? null : { start: m.index, end: m.index + m[0].length };
}

export interface Edit {
  start: number;
  end: number;
  text: string;
}

/** Apply non-overlapping edits (any order) to a string. */
export function applyEdits(s: string, edits: readonly Edit[]): string {
  const sorted = [...edits].sort((a, b) => a.start - b.start);
  let out = '';
  let at = 0;
  for (const e of sorted) {
    if (e.start < at) throw new Error(`applyEdits: overlapping edits at ${e.start}`);
    out += s.slice(at, e.start) + e.text;
    at = e.end;
  }
  return out + s.slice(at);
}
