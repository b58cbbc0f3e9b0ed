import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { type PlotlyFigure, checkFigure, describeFigure } from './plot.js';
import { invalid } from '../util/validate.js';

/**
 * Rich output in a tslab notebook. tslab's public `display.raw(mime, string)` sends one
 * mime type as a string; a Plotly chart needs one message carrying the Plotly JSON as an
 * object (JupyterLab's renderer), offline HTML (classic notebook, nbconvert) and plain text.
 * So we hand a whole bundle to the running kernel's own tslab instance.
 */

/** The content of a Jupyter `display_data` message. */
export interface DisplayBundle {
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
}

/** Marks the inline plotly.js script, so the docs build can swap it for a shared file. */
export const PLOTLY_SCRIPT_MARKER = 'data-lora-tfjs-plotly';

/** The key of a recorded regression value in a display message's metadata (see `record`). */
export const RECORD_MIME = 'application/vnd.lora-tfjs.record+json';

type WriteDisplay = (content: DisplayBundle & { transient?: Record<string, unknown> }, update: boolean) => void;

function nodeRequire(): NodeRequire {
  // dist/ is CommonJS, which is what a kernel loads; ESM callers (tests) use createRequire.
  return typeof require === 'function' ? require : createRequire(join(process.cwd(), 'index.js'));
}

/** The running tslab kernel's display writer, or null outside a kernel. */
function kernelWriter(): WriteDisplay | null {
  const cache = nodeRequire().cache ?? {};
  for (const [file, mod] of Object.entries(cache)) {
    if (!/[\\/]tslab[\\/]dist[\\/]jupyter\.js$/.test(file)) continue;
    const writer = (mod?.exports as { lastWriteDisplayData?: unknown } | undefined)?.lastWriteDisplayData;
    if (typeof writer === 'function') return writer as WriteDisplay;
  }
  return null;
}

/**
 * Send a bundle of mime types as one display message. Outside a kernel, print its
 * `text/plain` part instead and return false.
 */
export function displayBundle(bundle: DisplayBundle): boolean {
  const data = (bundle as { data?: unknown } | null)?.data;
  if (data === null || typeof data !== 'object') invalid('displayBundle', 'bundle', bundle, 'a display bundle { data: { mime type: content }, metadata }');
  const write = kernelWriter();
  if (write === null) {
    const text = bundle.data['text/plain'];
    if (typeof text === 'string') console.log(text);
    return false;
  }
  write({ ...bundle, transient: {} }, false);
  return true;
}

/** plotly.min.js (minified from `plotly.js-dist` at build time), else the package's own file. */
export function plotlySource(): string {
  const built = typeof __dirname === 'string' ? join(__dirname, 'plotly.min.js') : null;
  if (built !== null && existsSync(built)) return readFileSync(built, 'utf8');
  return readFileSync(nodeRequire().resolve('plotly.js-dist/plotly.js'), 'utf8');
}

/** Options of {@link plotlyBundle}. */
export interface PlotlyBundleOptions {
  /** The element id of the chart in HTML. */
  id: string;
  /** plotly.js source to inline before the chart (once per notebook), or null. */
  plotly: string | null;
  /** Chart height in pixels (default 460). */
  height?: number;
}

/**
 * The display bundle of a chart: `application/vnd.plotly.v1+json` (a JSON object),
 * `text/html` that draws it with plotly.js from the page (inlined when `plotly` is given:
 * no CDN, works offline) and a `text/plain` summary.
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
  const html =
    inline +
    `<div id="${options.id}" class="lora-tfjs-plot" style="width:100%;height:${height}px"></div>\n` +
    `<script type="text/javascript">(function () {\n` +
    `  var fig = ${json};\n` +
    `  function draw() { window.Plotly.newPlot(${JSON.stringify(options.id)}, fig.data, fig.layout, Object.assign({ responsive: true }, fig.config || {})); }\n` +
    `  if (window.Plotly) { draw(); } else { window.addEventListener('load', draw); }\n` +
    `})();</script>`;
  return {
    data: {
      'application/vnd.plotly.v1+json': { ...figure, layout: { height, ...figure.layout } },
      'text/html': html,
      'text/plain': describeFigure(figure),
    },
    metadata: {},
  };
}

let plotlySent = false;
let chartCount = 0;

/**
 * Show a Plotly figure in the notebook. plotly.js is inlined with the first chart of a
 * kernel session only; later charts reuse it.
 */
export function showPlot(figure: PlotlyFigure, options: { height?: number } = {}): void {
  checkFigure('showPlot', figure);
  if (options === null || typeof options !== 'object') invalid('showPlot', 'options', options, 'an options object { height? }');
  const inKernel = kernelWriter() !== null;
  chartCount += 1;
  const id = `lora-tfjs-plot-${process.pid}-${chartCount}`;
  const bundle = plotlyBundle(figure, { id, plotly: inKernel && !plotlySent ? plotlySource() : null, height: options.height });
  if (displayBundle(bundle)) plotlySent = true;
}
