import * as tf from '@tensorflow/tfjs-core';
import { type LayerPlan, LoRAMLP } from './lora-mlp.js';
import { truncateProduct } from './linalg.js';
import { allFinite } from '../util/finite.js';
import { checkNoNullFields, checkOneOf, checkPositiveInt, describe, invalid } from '../util/validate.js';

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
  /** The largest rank of any layer (cat: Σ rᵢ of the sources covering that layer). */
  rank: number;
  /** The rank of each layer, 0 where no source covers it. */
  ranks: number[];
  method: 'cat' | 'svd';
  /** Per layer, ‖ΔW_new − Σ wᵢ·ΔWᵢ‖ / ‖Σ wᵢ·ΔWᵢ‖ (0 for `cat`, up to float rounding). */
  relativeError: number[];
}

/**
 * Add a new adapter whose update is the weighted sum of the sources' updates in every
 * layer: ΔW_new = Σ wᵢ·sᵢ·Aᵢ·Bᵢ. With `cat` this is exact: A_new = [A₁ … Aₙ],
 * B_new = [w₁s₁B₁; …; wₙsₙBₙ], s_new = 1. (PEFT's `linear` combination instead scales
 * both factors by √(wᵢsᵢ) and sums them, (Σ√(wᵢsᵢ)Aᵢ)(Σ√(wᵢsᵢ)Bᵢ), whose cross terms make it
 * differ from the weighted sum of the deltas.) Sources may cover different layers: each
 * layer combines the sources that cover it, and a layer no source covers stays uncovered.
 */
export function combineAdapters(model: LoRAMLP, sources: readonly WeightedAdapter[], name: string, options: CombineOptions = {}): CombineResult {
  const where = 'combineAdapters';
  if (!(model instanceof LoRAMLP)) invalid(where, 'model', model, 'a LoRAMLP');
  if (options === null || typeof options !== 'object') invalid(where, 'options', options, 'an options object');
  checkNoNullFields(where, options);
  const unknown = Object.keys(options).filter((k) => k !== 'method' && k !== 'rank');
  if (unknown.length > 0) invalid(where, 'options', unknown, 'only the fields method, rank');
  if (options.rank !== undefined && (options.method ?? 'cat') === 'cat') invalid(where, 'rank', options.rank, "undefined with method 'cat' (its rank is the sum of the sources'; use method 'svd' for a given rank)");
  const method = checkOneOf(where, 'method', options.method ?? 'cat', ['cat', 'svd'] as const);
  if (!Array.isArray(sources) || sources.length === 0) invalid(where, 'sources', sources, 'a non-empty array of { name, weight }');
  const known = model.adapterNames();
  for (const s of sources) {
    if (s === null || typeof s !== 'object' || !known.includes(s.name)) invalid(where, 'sources[].name', s?.name, `one of ${describe(known)}`);
    if (typeof s.weight !== 'number' || !Number.isFinite(s.weight)) invalid(where, `weight of ${JSON.stringify(s.name)}`, s.weight, 'a finite number');
    const full = model.adapterLayers(s.name).findIndex((k) => k === 'full');
    if (full >= 0) invalid(where, 'sources[].name', s.name, `an adapter made only of LoRA factors (${JSON.stringify(s.name)} trains ${model.names[full]} in full, which has no low-rank form to combine)`);
  }
  if (typeof name !== 'string' || name === '' || known.includes(name)) invalid(where, 'name', name, 'a new adapter name');
  let svdRank = 0;
  if (method === 'svd') svdRank = checkPositiveInt(where, 'rank', options.rank);

  const plan: LayerPlan[] = [];
  const relativeError: number[] = [];
  try {
    for (const layer of model.layers) {
      // Only the sources that cover this layer contribute to it.
      const parts = sources.filter((s) => layer.adapterKind(s.name) === 'lora').map((s) => ({ a: layer.adapter(s.name), w: s.weight }));
      if (parts.length === 0) {
        plan.push(null);
        relativeError.push(0);
        continue;
      }
      const totalRank = parts.reduce((n, p) => n + p.a.config.rank, 0);
      if (method === 'cat') {
        const initial = tf.tidy(() => ({
          A: tf.concat(parts.map((p) => p.a.A), 1) as tf.Tensor2D,
          B: tf.concat(parts.map((p) => tf.mul(p.a.B, p.w * p.a.scale)), 0) as tf.Tensor2D,
        }));
        plan.push({ kind: 'lora', config: { rank: totalRank, alpha: totalRank, useRsLora: false }, initial });
        checkFinite(layer.name, [initial.A, initial.B], sources);
        relativeError.push(0);
        continue;
      }
      const m = layer.inFeatures;
      const n = layer.outFeatures;
      const P = tf.tidy(() => tf.concat(parts.map((p) => p.a.A), 1));
      const Q = tf.tidy(() => tf.concat(parts.map((p) => tf.mul(p.a.B, p.w * p.a.scale)), 0));
      try {
        checkFinite(layer.name, [P, Q], sources); // before the SVD, which NaN would not let converge
      } catch (err) {
        tf.dispose([P, Q]);
        throw err;
      }
      const { U, W, squaredSingularValues } = truncateProduct(Float64Array.from(P.dataSync()), Float64Array.from(Q.dataSync()), m, totalRank, n, svdRank);
      tf.dispose([P, Q]);
      const total = squaredSingularValues.reduce((a, b) => a + b, 0);
      const dropped = squaredSingularValues.slice(svdRank).reduce((a, b) => a + b, 0);
      relativeError.push(total > 0 ? Math.sqrt(dropped / total) : 0);
      const initial = { A: tf.tensor2d(Float32Array.from(U), [m, svdRank]), B: tf.tensor2d(Float32Array.from(W), [svdRank, n]) };
      plan.push({ kind: 'lora', config: { rank: svdRank, alpha: svdRank, useRsLora: false }, initial });
      checkFinite(layer.name, [initial.A, initial.B], sources);
    }
    model.addAdapterLayers(name, plan);
  } finally {
    tf.dispose(plan.flatMap((p) => (p?.kind === 'lora' && p.initial !== undefined ? [p.initial.A, p.initial.B] : [])));
  }
  const ranks = plan.map((p) => (p?.kind === 'lora' ? (p.config.rank as number) : 0));
  return { name, rank: Math.max(...ranks), ranks, method, relativeError };
}

/** Refuse a combination holding NaN or ±Infinity (a NaN source, or weights that overflow float32). */
function checkFinite(layer: string, factors: tf.Tensor[], sources: readonly WeightedAdapter[]): void {
  if (!allFinite(factors)) {
    const shown = sources.slice(0, 6).map((s) => `${describe(s.name)} × ${s.weight}`);
    const list = sources.length > 6 ? `${shown.join(', ')} and ${sources.length - 6} more` : shown.join(', ');
    throw new Error(`combineAdapters: the combination of ${list} is not finite on layer ${layer} (a source holds NaN/Infinity, or a weight × scale overflows float32); no adapter was added`);
  }
}
