import * as tf from '@tensorflow/tfjs-core';
import { type DisplayBundle, RECORD_MIME, displayBundle } from './display.js';
import { checkPositiveFinite, invalid } from '../util/validate.js';

/** How far a recorded value may drift from its golden: |v − g| ≤ atol + rtol·|g|. */
export interface Tolerance {
  rtol?: number;
  atol?: number;
}

/** A value a notebook records for regression checks. */
export interface RecordedValue {
  name: string;
  value: number;
  rtol: number;
  atol: number;
  /** The TensorFlow.js backend it was computed on (goldens are kept per backend). */
  backend: string;
}

const NAME = /^[a-z0-9_.-]+$/i;

/**
 * Record one of a notebook's key numbers for the headless runner, which compares it with the
 * committed golden. Readers never see it: it travels in the metadata of a display message
 * with no data (see {@link recordBundle}). Outside a kernel it prints one line instead.
 * Default tolerance: exact (counts, shapes).
 */
export function record(name: string, value: number, tolerance: Tolerance = {}): void {
  if (typeof name !== 'string' || !NAME.test(name)) invalid('record', 'name', name, 'letters, digits, "_", "." or "-"');
  if (typeof value !== 'number' || !Number.isFinite(value)) invalid('record', 'value', value, 'a finite number');
  const rtol = tolerance.rtol ?? 0;
  const atol = tolerance.atol ?? 0;
  if (rtol !== 0) checkPositiveFinite('record', 'rtol', rtol);
  if (atol !== 0) checkPositiveFinite('record', 'atol', atol);
  const entry: RecordedValue = { name, value, rtol, atol, backend: tf.getBackend() };
  // In a script or test there is no notebook to hide it from: say what would be stored.
  if (!displayBundle(recordBundle(entry))) console.log(`recorded ${name} = ${recordText(entry)}`);
}

/**
 * The display message that carries a recorded value: no data, and the value in `metadata`
 * under {@link RECORD_MIME}. Why this form (measured in headless Chromium): with no mime
 * type in `data` no frontend has anything to render. JupyterLab 4.6, with or without the
 * Plotly extension, inserts an empty widget of no height (no "No renderer could be found"
 * message), the classic notebook 6.4 appends nothing, and nbconvert 7's HTML has an empty
 * `div` of no height. An empty `text/plain` or `text/html` instead leaves an 11–13 px blank
 * box in the classic notebook and in nbconvert's classic template. The value under its own
 * mime type in `data` renders like this form in all of these, but hands other viewers a
 * mime type they may try to render or name.
 * Two traces remain, so the notebooks avoid them: a cell whose only outputs are records
 * gets an empty output area (25 px in JupyterLab), and in the classic notebook a record
 * between two printed lines splits them into two blocks 13 px apart. Record in a cell that
 * prints, after its printing (the notebook test checks both with `recordTraces`).
 */
export function recordBundle(entry: RecordedValue): DisplayBundle {
  return { data: {}, metadata: { [RECORD_MIME]: entry } };
}

/** The value exactly as the golden stores it (shortest round trip), then its tolerance. */
function recordText(r: RecordedValue): string {
  const tolerance = [r.rtol !== 0 ? `rtol ${r.rtol}` : '', r.atol !== 0 ? `atol ${r.atol}` : ''].filter((t) => t !== '').join(', ');
  return tolerance === '' ? `${r.value} (exact)` : `${r.value} (${tolerance})`;
}
