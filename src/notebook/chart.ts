import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PLOTLY_SCRIPT_MARKER, type DisplayBundle, displayBundle, escapeHtml } from './display.js';
import { type PlotlyFigure, checkFigure, describeFigure } from './plot.js';
import { executingClientSession, followClientSessions, kernelWriter, nodeRequire, tslabJupyterModule } from './tslab.js';
import { invalid } from '../util/validate.js';

/**
 * A chart is one display message with three forms: Plotly's JSON (JupyterLab draws it
 * itself when the `plotly` Python package's extension is installed), HTML that draws it
 * with plotly.js (JupyterLab without the extension, the classic notebook, nbconvert), and
 * a text summary. The HTML is the fragile one: its scripts run only in trusted outputs,
 * and plotly.js (4.9 MB) is sent once per page, not with every chart. So the HTML starts
 * as a visible one-line message that the script replaces with the chart: whatever a reader
 * does (reload, clear and reopen, open an untrusted copy) they see a chart or a sentence
 * saying what to do, never an empty box.
 */

/** How charts get plotly.js: inlined once per page (`inline`), or not at all (`extension`: the frontend draws Plotly's JSON). */
export type PlotlyDelivery = 'inline' | 'extension';

/** The environment variable that picks the {@link PlotlyDelivery} (`npm run lab` sets it when JupyterLab has Plotly's extension). */
export const PLOTLY_DELIVERY_VAR = 'LORA_PLOTLY';

/** Shown while a chart's script has not run: untrusted output, or HTML without scripts. */
export const CHART_NOT_RUN =
  "Chart not drawn: its script did not run (an untrusted notebook?). Trust the notebook and run this cell again, or install Plotly's JupyterLab extension: pip install plotly";
/** Shown when the script ran but plotly.js never arrived in the page. */
export const CHART_NO_PLOTLY =
  "Chart not drawn: plotly.js is not loaded in this page. Run this cell again, or install Plotly's JupyterLab extension: pip install plotly";

/** Milliseconds a chart waits for plotly.js (an earlier output may still be evaluating it) before it says so; it keeps waiting after. */
const WAIT_MS = 3000;

/** The delivery named by `LORA_PLOTLY` (default `inline`). */
export function plotlyDelivery(env: Record<string, string | undefined> = process.env): PlotlyDelivery {
  const v = env[PLOTLY_DELIVERY_VAR];
  if (v === undefined || v === '' || v === 'inline') return 'inline';
  if (v === 'extension') return 'extension';
  return invalid('plotlyDelivery', PLOTLY_DELIVERY_VAR, v, '"inline" (plotly.js sent with the first chart of each page) or "extension" (only the chart\'s JSON: JupyterLab with the plotly extension)');
}

/** The packages plotly.js is read from, in order: the minified build (4.9 MB), else the 11 MB unminified one. */
export const PLOTLY_PACKAGES = ['plotly.js-dist-min/plotly.min.js', 'plotly.js-dist/plotly.js'] as const;

/**
 * The file of plotly.js that charts inline: from `plotly.js-dist-min` (an optional peer
 * dependency of lora-tfjs), else `plotly.js-dist`, found from lora-tfjs itself or else from
 * the working folder.
 */
export function plotlyPath(): string {
  const from = [nodeRequire(), nodeRequire(join(process.cwd(), 'index.js'))];
  for (const file of PLOTLY_PACKAGES) {
    for (const req of from) {
      try {
        return req.resolve(file);
      } catch {
        /* try the next */
      }
    }
  }
  throw new Error(
    `plotlyPath: plotly.js is not installed (looked for ${PLOTLY_PACKAGES.join(', ')}); charts inline it once per page: npm install plotly.js-dist-min@3, or set ${PLOTLY_DELIVERY_VAR}=extension where JupyterLab has Plotly's extension`,
  );
}

/** The source of plotly.js ({@link plotlyPath}). */
export function plotlySource(): string {
  return readFileSync(plotlyPath(), 'utf8');
}

/** Options of {@link plotlyBundle}. */
export interface PlotlyBundleOptions {
  /** The element id of the chart in HTML. */
  id: string;
  /** plotly.js source to inline before the chart (once per page), or null. */
  plotly: string | null;
  /** Chart height in pixels (default 460). */
  height?: number;
}

/**
 * The display bundle of a chart: `application/vnd.plotly.v1+json` (a JSON object),
 * `text/html` that draws it with plotly.js from the page (inlined when `plotly` is given:
 * no CDN, works offline) or else shows a one-line message, and a `text/plain` summary.
 */
export function plotlyBundle(figure: PlotlyFigure, options: PlotlyBundleOptions): DisplayBundle {
  checkFigure('plotlyBundle', figure);
  if (options === null || typeof options !== 'object') invalid('plotlyBundle', 'options', options, 'an options object { id, plotly, height? }');
  // The id and height go into HTML attributes: only safe characters.
  if (typeof options.id !== 'string' || !/^[A-Za-z][\w-]*$/.test(options.id)) invalid('plotlyBundle', 'id', options.id, 'an HTML id (a letter, then letters, digits, _ or -)');
  if (options.plotly !== null && typeof options.plotly !== 'string') invalid('plotlyBundle', 'plotly', options.plotly, 'the plotly.js source, or null');
  const height = options.height ?? 460;
  if (typeof height !== 'number' || !Number.isFinite(height) || height <= 0) invalid('plotlyBundle', 'height', height, 'a positive number of pixels');
  const json = JSON.stringify(figure).replace(/</g, '\\u003c');
  const inline =
    options.plotly === null
      ? ''
      : `<script type="text/javascript" ${PLOTLY_SCRIPT_MARKER}="inline">${options.plotly.replace(/<\/script/gi, '<\\/script')}</script>\n`;
  // No `load` listener: in a live notebook the page loaded long ago. Poll instead, say so
  // after WAIT_MS, and keep polling (plotly.js may arrive with a later output).
  const html =
    inline +
    `<div id="${options.id}" class="lora-tfjs-plot" style="width:100%">` +
    `<p class="lora-tfjs-plot-message" style="margin:0;padding:.5em .75em;border:1px dashed #d0a000;background:#fffbe6;color:#5c4400;font:13px system-ui,sans-serif">${escapeHtml(CHART_NOT_RUN)}</p></div>\n` +
    `<script type="text/javascript">(function () {\n` +
    `  var id = ${JSON.stringify(options.id)}, fig = ${json}, script = document.currentScript;\n` +
    // The div just before this script first: an id can repeat in a page that shows old outputs.
    `  var prev = script && script.previousElementSibling;\n` +
    `  var el = prev && prev.id === id ? prev : document.getElementById(id);\n` +
    `  if (!el) return;\n` +
    `  var note = el.querySelector('.lora-tfjs-plot-message');\n` +
    `  function say(text) { if (note) { note.textContent = text; if (note.parentNode !== el) { el.innerHTML = ''; el.appendChild(note); } } el.style.height = ''; }\n` +
    `  function draw() {\n` +
    `    if (note && note.parentNode === el) el.removeChild(note);\n` +
    `    el.style.height = '${height}px';\n` +
    `    Promise.resolve().then(function () { return window.Plotly.newPlot(el, fig.data, fig.layout, Object.assign({ responsive: true, displaylogo: false }, fig.config || {})); })\n` +
    `      .catch(function (e) { say('Chart not drawn: plotly.js failed (' + String(e && e.message || e) + ')'); });\n` +
    `  }\n` +
    `  if (window.Plotly) return draw();\n` +
    `  if (note) note.textContent = 'Waiting for plotly.js ...';\n` +
    `  var waited = 0, timer = setInterval(function () {\n` +
    `    waited += 100;\n` +
    `    if (window.Plotly) { clearInterval(timer); draw(); }\n` +
    `    else if (waited === ${WAIT_MS}) say(${JSON.stringify(CHART_NO_PLOTLY)});\n` +
    `    else if (waited > 600000) clearInterval(timer);\n` +
    `  }, 100);\n` +
    `})();</script>`;
  return {
    data: {
      // No Plotly logo: it is a link out of an offline page.
      'application/vnd.plotly.v1+json': { ...figure, layout: { height, ...figure.layout }, config: { displaylogo: false, ...figure.config } },
      'text/html': html,
      'text/plain': describeFigure(figure),
    },
    metadata: {},
  };
}

/** Client sessions (pages) that were sent plotly.js; null stands for "not known". */
const pagesWithPlotly = new Set<string | null>();
/** Without session tracking: the display writer (one per execute request) that last carried plotly.js. */
let requestWithPlotly: unknown = null;
let chartCount = 0;

/**
 * Show a Plotly figure in the notebook. With the default `inline` delivery, plotly.js goes
 * with the first chart each page (client session) receives, so a reloaded page, a second
 * tab or a rerun after clearing outputs gets it again; with `LORA_PLOTLY=extension` it is
 * never sent (saved notebooks stay small; the frontend draws Plotly's JSON).
 */
export function showPlot(figure: PlotlyFigure, options: { height?: number } = {}): void {
  checkFigure('showPlot', figure);
  if (options === null || typeof options !== 'object') invalid('showPlot', 'options', options, 'an options object { height? }');
  const delivery = plotlyDelivery();
  const write = kernelWriter();
  let inline = false;
  let page: string | null = null;
  const tracked = write !== null && followClientSessions();
  if (write !== null && delivery === 'inline') {
    page = executingClientSession();
    // If tslab's internals changed, fall back to once per execute request: larger files, never an empty chart.
    inline = tracked ? !pagesWithPlotly.has(page) : requestWithPlotly !== write;
  }
  const height = options.height ?? 460;
  if (typeof height !== 'number' || !Number.isFinite(height) || height <= 0) invalid('showPlot', 'height', height, 'a positive number of pixels');
  chartCount += 1;
  // Unique across kernels too: a page can show saved outputs of an earlier kernel (whose pid may have been the same).
  const id = `lora-tfjs-plot-${Math.random().toString(36).slice(2, 10)}-${chartCount}`;
  const bundle = plotlyBundle(figure, { id, plotly: inline ? plotlySource() : null, height });
  if (displayBundle(bundle) && inline) {
    pagesWithPlotly.add(page);
    requestWithPlotly = write;
  }
}

// Follow client sessions from the moment lora-tfjs loads in a kernel (the import cell), so
// that the first chart's request already has its session: otherwise that chart would count
// as an unknown page and the next chart from the same page would carry plotly.js again.
if (tslabJupyterModule() !== null) followClientSessions();
