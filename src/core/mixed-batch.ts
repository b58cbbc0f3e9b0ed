import * as tf from '@tensorflow/tfjs-core';
import type { LoRAAdapter } from './lora-adapter.js';
import { invalid } from '../util/validate.js';

/**
 * Mixed-adapter batches: every row of a batch names its own adapter (or none). The base
 * matMul runs once over the whole batch, and so do the low-rank products: the adapters'
 * factors are stacked and a mask keeps each row's own adapter.
 */

/** Rows of a batch grouped by adapter. */
export interface RowGroups {
  /** The distinct adapters named, in first-seen order. */
  names: string[];
  /** Row indices of each adapter in `names` (rows naming no adapter appear in none). */
  rows: Int32Array[];
}

/** Group a batch's rows by the adapter each one names (null: the base alone). Pure. */
export function groupRows(rowAdapters: readonly (string | null)[]): RowGroups {
  if (!Array.isArray(rowAdapters)) invalid('groupRows', 'rowAdapters', rowAdapters, 'an array of adapter names or nulls, one per row');
  rowAdapters.forEach((n, i) => {
    if (n !== null && (typeof n !== 'string' || n === '')) invalid('groupRows', `rowAdapters[${i}]`, n, 'an adapter name or null');
  });
  const index = new Map<string, number[]>();
  rowAdapters.forEach((name, i) => {
    if (name === null) return;
    const list = index.get(name);
    if (list === undefined) index.set(name, [i]);
    else list.push(i);
  });
  const names = [...index.keys()];
  const rows = names.map((n) => Int32Array.from(index.get(n) as number[]));
  return { names, rows };
}

/**
 * The per-row LoRA term s·(x·A)·B, each row with its own adapter, zero for base rows, as two
 * matMuls for the whole batch: the adapters' factors side by side, A_cat = [A₁ … Aₙ] and
 * B_cat = [s₁B₁; …; sₙBₙ], and a 0/1 mask keeping each row's own block of x·A_cat.
 */
export function mixedLowRankDelta(x: tf.Tensor2D, groups: RowGroups, adapters: readonly LoRAAdapter[], outFeatures: number): tf.Tensor2D {
  const n = x.shape[0];
  if (adapters.length === 0) return tf.zeros<tf.Rank.R2>([n, outFeatures]);
  const ranks = adapters.map((a) => a.config.rank);
  const total = ranks.reduce((p, r) => p + r, 0);
  const mask = new Float32Array(n * total);
  let column = 0;
  groups.rows.forEach((rows, j) => {
    for (const i of rows) mask.fill(1, i * total + column, i * total + column + ranks[j]);
    column += ranks[j];
  });
  return tf.tidy(() => {
    const A = adapters.length === 1 ? adapters[0].A : tf.concat(adapters.map((a) => a.A), 1);
    const B = tf.concat(adapters.map((a) => tf.mul(a.B, a.scale)), 0);
    const xa = tf.mul(tf.matMul(x, A), tf.tensor2d(mask, [n, total]));
    return tf.matMul(xa, B) as tf.Tensor2D;
  });
}
