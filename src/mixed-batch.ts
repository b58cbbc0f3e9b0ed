import * as tf from '@tensorflow/tfjs-core';
import type { LoRAAdapter } from './lora-adapter.js';

/**
 * Mixed-adapter batches: every row of a batch names its own adapter (or none). The base
 * matMul runs once over the whole batch; the low-rank products run once per adapter over
 * that adapter's rows, and one gather puts the rows back in batch order.
 */

/** Rows of a batch grouped by adapter. */
export interface RowGroups {
  /** The distinct adapters named, in first-seen order. */
  names: string[];
  /** Row indices of each adapter in `names`. */
  rows: Int32Array[];
  /** Rows that use no adapter. */
  baseRows: Int32Array;
  /** For each row of the batch, its position in the grouped order (groups…, then base rows). */
  inverse: Int32Array;
}

/** Group a batch's rows by the adapter each one names (null: the base alone). Pure. */
export function groupRows(rowAdapters: readonly (string | null)[]): RowGroups {
  const index = new Map<string, number[]>();
  const base: number[] = [];
  rowAdapters.forEach((name, i) => {
    if (name === null) base.push(i);
    else {
      const list = index.get(name);
      if (list === undefined) index.set(name, [i]);
      else list.push(i);
    }
  });
  const names = [...index.keys()];
  const rows = names.map((n) => Int32Array.from(index.get(n) as number[]));
  const inverse = new Int32Array(rowAdapters.length);
  let position = 0;
  for (const r of [...rows, Int32Array.from(base)]) for (const i of r) inverse[i] = position++;
  return { names, rows, baseRows: Int32Array.from(base), inverse };
}

/** The per-row LoRA term s·(x·A)·B, each row with its own adapter, zero for base rows. */
export function mixedLowRankDelta(x: tf.Tensor2D, groups: RowGroups, adapters: readonly LoRAAdapter[], outFeatures: number): tf.Tensor2D {
  return tf.tidy(() => {
    const parts: tf.Tensor2D[] = groups.names.map((_, j) => {
      const a = adapters[j];
      const rows = tf.gather(x, tf.tensor1d(groups.rows[j], 'int32')) as tf.Tensor2D;
      return tf.mul(tf.matMul(tf.matMul(rows, a.A), a.B), a.scale) as tf.Tensor2D;
    });
    if (groups.baseRows.length > 0) parts.push(tf.zeros<tf.Rank.R2>([groups.baseRows.length, outFeatures]));
    const grouped = parts.length === 1 ? parts[0] : tf.concat(parts, 0);
    return tf.gather(grouped, tf.tensor1d(groups.inverse, 'int32')) as tf.Tensor2D;
  });
}
