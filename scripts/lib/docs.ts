import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { execa } from 'execa';
import { PLOTLY_SCRIPT_MARKER } from '../../src/notebook/display.js';
import { writeFileAtomic } from './atomic.js';

/** plotly.js as the display helper inlines it (marked with PLOTLY_SCRIPT_MARKER). */
const PLOTLY_INLINE = new RegExp(`<script[^>]*${PLOTLY_SCRIPT_MARKER}="inline"[^>]*>[\\s\\S]*?</script>`, 'g');
/** A script loaded from outside the docs folder (a CDN, or Debian's file:// defaults). */
const EXTERNAL_SCRIPT = /<script[^>]*\ssrc="(?:[a-z]+:)?\/\/[^"]*"[^>]*>\s*<\/script>/gi;

/**
 * Make an nbconvert HTML page work offline from the docs folder: the inlined plotly.js
 * becomes one shared `plotly.min.js` beside the pages, and scripts that nbconvert's
 * template loads from elsewhere (require.js, MathJax; the notebooks use neither) go.
 */
export function offlineHtml(html: string): string {
  let first = true;
  return html
    .replace(PLOTLY_INLINE, () => {
      const tag = first ? `<script type="text/javascript" src="plotly.min.js" ${PLOTLY_SCRIPT_MARKER}="file"></script>` : '';
      first = false;
      return tag;
    })
    .replace(EXTERNAL_SCRIPT, '');
}

export interface DocEntry {
  name: string;
  passed: boolean;
  seconds: number;
  /** Page file name in the docs folder, when rendered. */
  page: string | null;
  note: string;
}

/** Render executed notebooks to HTML pages in `docsDir` (one nbconvert call for all). */
export async function renderPages(
  jupyter: string,
  executed: readonly string[],
  tmpDir: string,
  docsDir: string,
  env: Record<string, string>,
  plotlyFile: string,
): Promise<Map<string, string>> {
  const pages = new Map<string, string>();
  if (executed.length === 0) return pages;
  await execa(jupyter, ['nbconvert', '--to', 'html', '--no-prompt', '--output-dir', tmpDir, ...executed], { env, stdin: 'ignore' });
  for (const nb of executed) {
    const name = basename(nb, '.ipynb');
    const html = readFileSync(join(tmpDir, `${name}.html`), 'utf8');
    writeFileAtomic(join(docsDir, `${name}.html`), offlineHtml(html));
    pages.set(name, `${name}.html`);
  }
  writeFileAtomic(join(docsDir, 'plotly.min.js'), readFileSync(plotlyFile));
  return pages;
}

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The docs' index page: every notebook with its status and run time. */
export function indexHtml(entries: readonly DocEntry[], backend: string, when: Date): string {
  const rows = entries
    .map(
      (e) =>
        `<tr><td>${e.page ? `<a href="${e.page}">${escape(e.name)}</a>` : escape(e.name)}</td>` +
        `<td class="${e.passed ? 'ok' : 'fail'}">${e.passed ? 'passed' : 'failed'}</td>` +
        `<td>${e.seconds.toFixed(1)} s</td><td>${escape(e.note)}</td></tr>`,
    )
    .join('\n');
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>lora-tfjs notebooks</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
table { border-collapse: collapse; width: 100%; } td, th { border-bottom: 1px solid #ddd; padding: .4rem .6rem; text-align: left; }
.ok { color: #1a7f37; } .fail { color: #cf222e; font-weight: bold; }
</style></head>
<body>
<h1>lora-tfjs notebooks</h1>
<p>Executed headless with <code>npm run notebooks</code> on backend <code>${escape(backend)}</code>, ${escape(when.toISOString())}.</p>
<table><thead><tr><th>notebook</th><th>status</th><th>run time</th><th>regression check</th></tr></thead>
<tbody>
${rows}
</tbody></table>
</body></html>
`;
}

