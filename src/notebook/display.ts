import { kernelWriter } from './tslab.js';
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

/** Text made safe to place in HTML (element content or a quoted attribute). */
export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** Marks the inline plotly.js script, so the docs build can swap it for a shared file. */
export const PLOTLY_SCRIPT_MARKER = 'data-lora-tfjs-plotly';

/** The key of a recorded regression value in a display message's metadata (see `record`). */
export const RECORD_MIME = 'application/vnd.lora-tfjs.record+json';

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
