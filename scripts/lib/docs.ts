import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { writeFileAtomic } from './atomic.js';
import { type GoldenCheck, goldenNote } from './goldens.js';
import { escapeHtml } from './html.js';
import type { Failure } from './notebook-run.js';
import { PLOTLY_SCRIPT_MARKER } from '../../src/notebook/display.js';
import { replaceDir } from './atomic.js';
import { DEMO_DIR, DEMO_PAGE } from './demo.js';
import { PLOTLY_FILE, externalReferences, offlineHtml } from './offline.js';

/**
 * The rendered docs: a small offline site. index.html says what LoRA is, what each notebook
 * shows and how this run went; every notebook page (nbconvert's JupyterLab HTML through the
 * template in scripts/nbconvert-templates/lora-docs) gets a header linking back, its run
 * time and status, and previous/next links. Everything here but the nbconvert call and the
 * file writes is a pure function of its arguments.
 */

export type DocStatus = 'passed' | 'failed' | 'unchecked';

export interface DocEntry {
  /** The notebook's file name without `.ipynb`. */
  name: string;
  title: string;
  /** One line: what the notebook shows. */
  summary: string;
  status: DocStatus;
  /** The regression check (or the failure) in words. */
  note: string;
  seconds: number;
  /** Page file name in the docs folder, when rendered. */
  page: string | null;
}

export interface RunInfo {
  backend: string;
  when: Date;
  /** Wall time of the whole run, when known. */
  wallSeconds?: number;
}

/** The template folder nbconvert is pointed at (`--template lora-docs`). */
export const TEMPLATE_DIR = join(resolve(dirname(fileURLToPath(import.meta.url)), '..'), 'nbconvert-templates');
export const TEMPLATE_NAME = 'lora-docs';
/** Where the template leaves room for what only the runner knows (see its index.html.j2). */
export const MARKERS = { head: '<!-- lora-docs:head -->', header: '<!-- lora-docs:header -->', footer: '<!-- lora-docs:footer -->' } as const;

interface NotebookLike {
  metadata?: { lora_tfjs?: { summary?: unknown } };
  cells?: Array<{ cell_type?: string; source?: string | string[] }>;
}

/** Markdown heading text without its `#`s and inline markup. */
const headingText = (line: string) =>
  line
    .replace(/^\s{0,3}#{1,6}\s+/, '')
    .replace(/\s+#+\s*$/, '')
    .replace(/[`*_]/g, '')
    .trim();

/**
 * A notebook's title (its first markdown heading, else its name) and one-line summary
 * (`metadata.lora_tfjs.summary`, else the first markdown heading, else nothing).
 */
export function notebookInfo(nb: NotebookLike, name: string): { title: string; summary: string } {
  let heading: string | null = null;
  for (const cell of nb.cells ?? []) {
    if (cell.cell_type !== 'markdown') continue;
    const source = Array.isArray(cell.source) ? cell.source.join('') : (cell.source ?? '');
    const line = source.split('\n').find((l) => /^\s{0,3}#{1,6}\s+\S/.test(l));
    if (line !== undefined) {
      heading = headingText(line);
      break;
    }
  }
  const summary = nb.metadata?.lora_tfjs?.summary;
  return { title: heading ?? name, summary: typeof summary === 'string' && summary.trim() !== '' ? summary.trim() : (heading ?? '') };
}

/** A run's status on the docs, and its note: the failure, or the regression check in words. */
export function docStatus(
  run: { passed: boolean; failure: Failure | null; cells: number },
  check: GoldenCheck | undefined,
  updated: { values: number } | null,
): { status: DocStatus; note: string } {
  if (!run.passed) {
    const f = run.failure;
    const where = f === null || f.cell === null ? 'before any cell ran' : `in cell ${f.cell + 1} of ${run.cells}`;
    return { status: 'failed', note: `${f?.kind ?? 'failed'} ${where}` };
  }
  if (updated !== null) return { status: 'passed', note: `golden updated (${updated.values} values)` };
  if (check === undefined) return { status: 'unchecked', note: 'no regression check ran' };
  return { status: check.status === 'ok' ? 'passed' : check.status === 'drift' ? 'failed' : 'unchecked', note: goldenNote(check) };
}

export const pageFile = (name: string) => `${name}.html`;
/** An href to a file of the docs folder, safe in an attribute. */
const href = (file: string) => escapeHtml(encodeURIComponent(file));
const when = (d: Date) => `<time datetime="${escapeHtml(d.toISOString())}">${escapeHtml(d.toISOString().slice(0, 16).replace('T', ' '))} UTC</time>`;
const status = (s: DocStatus) => `<span class="lora-docs-status lora-docs-${s}">${s}</span>`;

/** The pages before and after `name` among the rendered ones (index order). */
export function neighbours(entries: readonly DocEntry[], name: string): { prev: DocEntry | null; next: DocEntry | null } {
  const pages = entries.filter((e) => e.page !== null);
  const i = pages.findIndex((e) => e.name === name);
  if (i < 0) throw new Error(`neighbours: no page for notebook ${JSON.stringify(name)}`);
  return { prev: pages[i - 1] ?? null, next: pages[i + 1] ?? null };
}

function pager(entries: readonly DocEntry[], name: string): string {
  const { prev, next } = neighbours(entries, name);
  const link = (e: DocEntry | null, rel: 'prev' | 'next', label: string) =>
    e === null
      ? `<span class="lora-docs-${rel}"></span>`
      : `<a class="lora-docs-${rel}" rel="${rel}" href="${href(e.page as string)}"><span class="lora-docs-label">${label}</span> ${escapeHtml(e.title)}</a>`;
  return `<nav class="lora-docs-pager" aria-label="previous and next notebook">${link(prev, 'prev', '← previous')}${link(next, 'next', 'next →')}</nav>`;
}

/** The style of what this module adds to nbconvert's pages (scoped to lora-docs classes). */
export const PAGE_STYLE = `<style type="text/css">
.lora-docs-header, .lora-docs-footer { font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 14px; color: #24292f; }
.lora-docs-header { border-bottom: 1px solid #d0d7de; margin: 0 0 1.5rem; padding: .75rem 0 .5rem; }
.lora-docs-footer { border-top: 1px solid #d0d7de; margin: 2rem 0 1rem; padding-top: .75rem; }
.lora-docs-bar { display: flex; flex-wrap: wrap; gap: .4rem 1.2rem; align-items: baseline; justify-content: space-between; }
.lora-docs-home { font-weight: 600; font-size: 15px; }
.lora-docs-header a, .lora-docs-footer a { color: #0969da; text-decoration: none; }
.lora-docs-header a:hover, .lora-docs-footer a:hover { text-decoration: underline; }
.lora-docs-run { color: #57606a; }
.lora-docs-status { font-weight: 600; padding: 0 .4em; border-radius: 3px; }
.lora-docs-passed { color: #1a7f37; background: #dafbe1; }
.lora-docs-failed { color: #cf222e; background: #ffebe9; }
.lora-docs-unchecked { color: #9a6700; background: #fff8c5; }
.lora-docs-pager { display: flex; justify-content: space-between; gap: 1rem; margin-top: .5rem; }
.lora-docs-next { text-align: right; margin-left: auto; }
.lora-docs-label { color: #57606a; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.lora-docs-external { text-decoration: underline dotted; }
.lora-docs-url { color: #57606a; word-break: break-all; }
</style>`;

/** What a notebook page gets: style in the head, a header, and previous/next at its foot. */
export function pageChrome(entries: readonly DocEntry[], name: string, run: RunInfo): { head: string; header: string; footer: string } {
  const e = entries.find((x) => x.name === name);
  if (e === undefined) throw new Error(`pageChrome: no notebook ${JSON.stringify(name)} among the entries`);
  const header =
    `<header class="lora-docs-header">\n<div class="lora-docs-bar">` +
    `<a class="lora-docs-home" href="index.html">lora-tfjs notebooks</a>` +
    `<span class="lora-docs-run">${status(e.status)} run time ${e.seconds.toFixed(1)} s · ${escapeHtml(e.note)} · backend ${escapeHtml(run.backend)}, ${when(run.when)}</span>` +
    `</div>\n${pager(entries, name)}\n</header>`;
  const footer = `<footer class="lora-docs-footer">\n${pager(entries, name)}\n<p><a href="index.html">All notebooks</a></p>\n</footer>`;
  return { head: PAGE_STYLE, header, footer };
}

/** Put `text` at the template's marker, else after the tag that `fallback` finds (or before it). */
function inject(html: string, marker: string, text: string, fallback: RegExp, after: boolean): string {
  const at = html.indexOf(marker);
  if (at >= 0) return html.slice(0, at) + text + html.slice(at + marker.length);
  const m = fallback.exec(html);
  if (m === null) throw new Error(`docs: the page has neither ${marker} nor ${fallback}`);
  const pos = after ? m.index + m[0].length : m.index;
  return html.slice(0, pos) + text + html.slice(pos);
}

/**
 * A notebook's page as the docs serve it: nbconvert's HTML made offline (offlineHtml), with
 * its title, the header (back to the index, status, run time, previous/next) and the footer.
 */
export function docPage(html: string, entries: readonly DocEntry[], name: string, run: RunInfo): string {
  const e = entries.find((x) => x.name === name);
  if (e === undefined) throw new Error(`docPage: no notebook ${JSON.stringify(name)} among the entries`);
  const chrome = pageChrome(entries, name, run);
  let out = offlineHtml(html);
  out = inject(out, MARKERS.head, chrome.head, /<\/head\s*>/i, false);
  out = inject(out, MARKERS.header, chrome.header, /<body\b[^>]*>/i, true);
  out = inject(out, MARKERS.footer, chrome.footer, /<\/body\s*>/i, false);
  // A function, not a string: `$&`, `$'` in a title are text, not replacement patterns.
  return out.replace(/<title>[\s\S]*?<\/title>/i, () => `<title>${escapeHtml(e.title)} · lora-tfjs notebooks</title>`);
}

/** The landing page: what LoRA is, the notebooks with this run's results, how to run them (and, when the site has it, a link to the browser demo). */
export function indexHtml(entries: readonly DocEntry[], run: RunInfo, options: { demo?: boolean } = {}): string {
  const count = (s: DocStatus) => entries.filter((e) => e.status === s).length;
  const rows = entries
    .map((e, i) => {
      const title = e.page === null ? `<span class="title">${escapeHtml(e.title)}</span>` : `<a class="title" href="${href(e.page)}">${escapeHtml(e.title)}</a>`;
      const summary = e.summary !== '' && e.summary !== e.title ? `<div class="summary">${escapeHtml(e.summary)}</div>` : '';
      return (
        `<tr id="${escapeHtml(e.name)}"><td class="n">${i + 1}</td>` +
        `<td class="notebook">${title}${summary}<div class="file">${escapeHtml(e.name)}.ipynb${e.page === null ? ' · no page (the run failed)' : ''}</div></td>` +
        `<td>${status(e.status)}</td><td class="time">${e.seconds.toFixed(1)} s</td><td class="note">${escapeHtml(e.note)}</td></tr>`
      );
    })
    .join('\n');
  const wall = run.wallSeconds === undefined ? '' : `, ${run.wallSeconds.toFixed(1)} s in all`;
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lora-tfjs notebooks</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #24292f; line-height: 1.5; max-width: 62rem; margin: 2rem auto; padding: 0 1rem; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
.lead { color: #57606a; margin-top: 0; font-size: 1.1rem; }
pre, code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .8rem 1rem; overflow-x: auto; }
a { color: #0969da; text-decoration: none; } a:hover { text-decoration: underline; }
table { border-collapse: collapse; width: 100%; }
td, th { border-bottom: 1px solid #d0d7de; padding: .55rem .6rem; text-align: left; vertical-align: top; }
th { font-size: .85rem; color: #57606a; font-weight: 600; }
td.n { color: #57606a; } td.time { white-space: nowrap; text-align: right; } th.time { text-align: right; }
td.note { color: #57606a; font-size: .9rem; }
.title { font-weight: 600; } .summary { margin-top: .15rem; } .file { color: #57606a; font-size: .8rem; }
.lora-docs-status { font-weight: 600; padding: 0 .4em; border-radius: 3px; white-space: nowrap; }
.lora-docs-passed { color: #1a7f37; background: #dafbe1; }
.lora-docs-failed { color: #cf222e; background: #ffebe9; }
.lora-docs-unchecked { color: #9a6700; background: #fff8c5; }
.run { color: #57606a; }
</style></head>
<body>
<h1>lora-tfjs notebooks</h1>
<p class="lead">LoRA (low-rank adaptation) for TensorFlow.js, in TypeScript, shown in notebooks that run the demos of a reference program and check what they claim.</p>
${options.demo === true ? `<p class="demo">Or try it here: <a href="${escapeHtml(DEMO_PAGE)}">train a LoRA adapter in your browser</a>, with a live loss curve and the adapter to download.</p>\n` : ''}
<h2>What LoRA is</h2>
<p>A LoRA layer keeps a pretrained weight <code>W</code> frozen and learns a low-rank update beside it:</p>
<pre>y = x·W + b + s·(dropout(x)·A)·B        A: [in, r]   B: [r, out]   s = alpha / r</pre>
<p>Only <code>A</code> and <code>B</code> train: <code>r·(in + out)</code> values per layer instead of <code>in·out</code>.
<code>B</code> starts at zero, so a fresh adapter leaves the model's output unchanged.
After training, <code>s·A·B</code> can be merged into <code>W</code>, and one frozen base can carry several adapters, one per task.</p>

<h2>The notebooks</h2>
<p class="run">This run: backend <code>${escapeHtml(run.backend)}</code>, ${when(run.when)}${wall};
${count('passed')} passed, ${count('failed')} failed, ${count('unchecked')} unchecked.
The regression check compares the values each notebook records with its golden.</p>
<table><thead><tr><th></th><th>notebook</th><th>status</th><th class="time">run time</th><th>regression check</th></tr></thead>
<tbody>
${rows}
</tbody></table>

<h2>Running them yourself</h2>
<pre>npm install        # dependencies, the library's build and the notebooks' TypeScript kernel (tslab)
npm run lab        # open the notebooks in JupyterLab
npm run notebooks  # run all of them headless, check their goldens, write these pages to out/docs/</pre>
<p>These pages need no network: charts draw with the <code>${PLOTLY_FILE}</code> beside them.</p>
</body></html>
`;
}

/**
 * Render executed notebooks to HTML with nbconvert (one call for all, the lora-docs
 * template), into `tmpDir`. Returns each notebook's raw HTML file by name.
 */
export async function renderHtml(jupyter: string, executed: readonly string[], tmpDir: string, env: Record<string, string>): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  if (executed.length === 0) return files;
  await execa(
    jupyter,
    ['nbconvert', '--to', 'html', '--no-prompt', `--TemplateExporter.extra_template_basedirs=${TEMPLATE_DIR}`, '--template', TEMPLATE_NAME, '--output-dir', tmpDir, ...executed],
    { env, stdin: 'ignore' },
  );
  for (const nb of executed) files.set(basename(nb, '.ipynb'), join(tmpDir, `${basename(nb, '.ipynb')}.html`));
  return files;
}

/**
 * Write the site into `docsDir`, each file atomically: one page per rendered notebook, the
 * shared plotly.js when a page draws a chart (or the site has the demo), the browser demo's
 * folder when `options.demo` names one already built (buildDemo; it is moved in whole), and
 * index.html last. Refuses a page that would still reach outside the folder (a template that
 * no longer drops nbconvert's CDN scripts, say), naming what, before anything is written.
 */
export function writeSite(
  docsDir: string,
  entries: readonly DocEntry[],
  rendered: ReadonlyMap<string, string>,
  run: RunInfo,
  plotlyFile: string,
  options: { demo?: string } = {},
): void {
  // Every page built and checked before any is written: a refused page leaves the old site whole.
  const pages = new Map<string, string>();
  for (const e of entries) {
    if (e.page === null) continue;
    const raw = rendered.get(e.name);
    if (raw === undefined) throw new Error(`docs: no rendered HTML for ${e.name}`);
    const page = docPage(readFileSync(raw, 'utf8'), entries, e.name, run);
    const external = externalReferences(page);
    if (external.length > 0) throw new Error(`docs: ${e.page} would load or link outside the docs folder:\n  ${external.join('\n  ')}`);
    pages.set(e.page, page);
  }
  const demo = options.demo;
  if (demo !== undefined && !existsSync(join(demo, 'index.html'))) throw new Error(`docs: the demo folder ${demo} has no index.html (build it with buildDemo first)`);
  const charts = [...pages.values()].some((page) => page.includes(`${PLOTLY_SCRIPT_MARKER}="file"`));
  for (const [file, page] of pages) writeFileAtomic(join(docsDir, file), page);
  if (charts || demo !== undefined) writeFileAtomic(join(docsDir, PLOTLY_FILE), readFileSync(plotlyFile));
  if (demo !== undefined) replaceDir(demo, join(docsDir, DEMO_DIR));
  writeFileAtomic(join(docsDir, 'index.html'), indexHtml(entries, run, { demo: demo !== undefined }));
}
