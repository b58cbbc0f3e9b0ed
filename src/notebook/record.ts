import * as tf from '@tensorflow/tfjs-core';
import { RECORD_MIME, displayBundle } from './display.js';
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
 * Record one of a notebook's key numbers. It is shown as a line of text and carried in
 * the notebook's output under its own mime type, where the headless runner compares it
 * with the committed golden. Default tolerance: exact (counts, shapes).
 */
export function record(name: string, value: number, tolerance: Tolerance = {}): void {
  if (typeof name !== 'string' || !NAME.test(name)) invalid('record', 'name', name, 'letters, digits, "_", "." or "-"');
  if (typeof value !== 'number' || !Number.isFinite(value)) invalid('record', 'value', value, 'a finite number');
  const rtol = tolerance.rtol ?? 0;
  const atol = tolerance.atol ?? 0;
  if (rtol !== 0) checkPositiveFinite('record', 'rtol', rtol);
  if (atol !== 0) checkPositiveFinite('record', 'atol', atol);
  const entry: RecordedValue = { name, value, rtol, atol, backend: tf.getBackend() };
  displayBundle({
    data: { [RECORD_MIME]: entry, 'text/plain': `recorded ${name} = ${recordText(entry)}` },
    metadata: {},
  });
}

/** The value exactly as the golden stores it (shortest round trip), then its tolerance. */
function recordText(r: RecordedValue): string {
  const tolerance = [r.rtol !== 0 ? `rtol ${r.rtol}` : '', r.atol !== 0 ? `atol ${r.atol}` : ''].filter((t) => t !== '').join(', ');
  return tolerance === '' ? `${r.value} (exact)` : `${r.value} (${tolerance})`;
}
