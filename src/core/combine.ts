import * as tf from '@tensorflow/tfjs-core';
import type { AdapterFactors } from './lora-adapter.js';
import type { LoRAMLP } from './lora-mlp.js';
import { truncateProduct } from './linalg.js';
import { checkOneOf, invalid } from '../util/validate.js';

/** One source of a combination: an adapter of the model and its weight. */
export interface WeightedAdapter {
  name: string;
  weight: number;
}

/** Options of {@link combineAdapters}. */
export interface CombineOptions {
  /**
   * `cat` (default): concatenate along the rank, exact, rank = Σ rᵢ.
   * `svd`: the best rank-`rank` approximation of the same weighted sum (Eckart–Young).
   */
  method?: 'cat' | 'svd';
  /** Target rank for `svd`. */
  rank?: number;
}

/** What {@link combineAdapters} made. */
export interface CombineResult {
  name: string;
  rank: number;
  method: 'cat' | 'svd';
  /** Per layer, ‖ΔW_new − Σ wᵢ·ΔWᵢ‖ / ‖Σ wᵢ·ΔWᵢ‖ (0 for `cat`, up to float rounding). */
  relativeError: number[];
}

/**
 * Add a new adapter whose update is the weighted sum of the sources' updates in every
 * layer: ΔW_new = Σ wᵢ·sᵢ·Aᵢ·Bᵢ. With `cat` this is exact: A_new = [A₁ … Aₙ],
 * B_new = [w₁s₁B₁; …; wₙsₙBₙ], s_new = 1. (PEFT's `linear` combination instead scales
 * both factors by √(wᵢsᵢ) and sums them, (Σ√(wᵢsᵢ)Aᵢ)(Σ√(wᵢsᵢ)Bᵢ), whose cross terms make it
 * differ from the weighted sum of the deltas.)
 */
export function combineAdapters(model: LoRAMLP, sources: readonly WeightedAdapter[], name: string, options: CombineOptions = {}): CombineResult {
  const where = 'combineAdapters';
  const method = checkOneOf(where, 'method', options.method ?? 'cat', ['cat', 'svd'] as const);
  if (!Array.isArray(sources) || sources.length === 0) invalid(where, 'sources', sources, 'a non-empty array of { name, weight }');
  const known = model.adapterNames();
  for (const s of sources) {
    if (s === null || typeof s !== 'object' || !known.includes(s.name)) invalid(where, 'sources[].name', s?.name, `one of ${JSON.stringify(known)}`);
    if (typeof s.weight !== 'number' || !Number.isFinite(s.weight)) invalid(where, `weight of ${JSON.stringify(s.name)}`, s.weight, 'a finite number');
  }
  if (typeof name !== 'string' || name === '' || known.includes(name)) invalid(where, 'name', name, 'a new adapter name');
  const totalRank = sources.reduce((n, s) => n + model.layers[0].adapter(s.name).config.rank, 0);
  let rank = totalRank;
  if (method === 'svd') {
    const maxRank = Math.min(...model.dims);
    if (!Number.isInteger(options.rank) || (options.rank as number) < 1 || (options.rank as number) > maxRank) {
      invalid(where, 'rank', options.rank, `a positive integer no larger than the narrowest layer (${maxRank})`);
    }
    rank = options.rank as number;
  } else if (rank > Math.min(...model.dims)) {
    invalid(where, 'sources', sources.map((s) => s.name), `adapters whose ranks sum to at most the narrowest layer (${Math.min(...model.dims)}); they sum to ${rank} — use method "svd" with a rank`);
  }

  const factors: AdapterFactors[] = [];
  const relativeError: number[] = [];
  try {
    for (const layer of model.layers) {
      const parts = sources.map((s) => ({ a: layer.adapter(s.name), w: s.weight }));
      if (method === 'cat') {
        factors.push(
          tf.tidy(() => ({
            A: tf.concat(parts.map((p) => p.a.A), 1) as tf.Tensor2D,
            B: tf.concat(parts.map((p) => tf.mul(p.a.B, p.w * p.a.scale)), 0) as tf.Tensor2D,
          })),
        );
        relativeError.push(0);
        continue;
      }
      const m = layer.inFeatures;
      const n = layer.outFeatures;
      const P = tf.tidy(() => tf.concat(parts.map((p) => p.a.A), 1));
      const Q = tf.tidy(() => tf.concat(parts.map((p) => tf.mul(p.a.B, p.w * p.a.scale)), 0));
      const { U, W, squaredSingularValues } = truncateProduct(Float64Array.from(P.dataSync()), Float64Array.from(Q.dataSync()), m, totalRank, n, rank);
      tf.dispose([P, Q]);
      const total = squaredSingularValues.reduce((a, b) => a + b, 0);
      const dropped = squaredSingularValues.slice(rank).reduce((a, b) => a + b, 0);
      relativeError.push(total > 0 ? Math.sqrt(dropped / total) : 0);
      factors.push({ A: tf.tensor2d(Float32Array.from(U), [m, rank]), B: tf.tensor2d(Float32Array.from(W), [rank, n]) });
    }
    model.addAdapter(name, { rank, alpha: rank, useRsLora: false }, factors);
  } finally {
    tf.dispose(factors.flatMap((f) => [f.A, f.B]));
  }
  return { name, rank, method, relativeError };
}
