import { checkDims, checkPositiveInt, invalid } from '../util/validate.js';

/**
 * Parameter accounting. "frozen" counts base weights and biases that never train,
 * "lora" every LoRA factor held, "saved" every full trainable copy of a layer (PEFT's
 * `modules_to_save`), "trainable" what an optimizer updates.
 * total = frozen + lora + saved + any other trainable values (for a plain MLP: all of them).
 */
export interface ParameterCounts {
  /** Every parameter value held: frozen + trainable (+ inactive adapters). */
  total: number;
  /** Values the optimizer updates. */
  trainable: number;
  /** Values that never change during training (base weights and biases). */
  frozen: number;
  /** Values in LoRA factors A and B, all adapters. */
  lora: number;
  /** Values in full trainable copies of layers (PEFT's `modules_to_save`), all adapters. */
  saved: number;
}

/** Anything that can count its parameters: a layer or a model. */
export interface HasParameterCounts {
  parameterCounts(): ParameterCounts;
}

/** The counts of a layer or a model. */
export function parameterCounts(target: HasParameterCounts): ParameterCounts {
  if (target === null || typeof target !== 'object' || typeof target.parameterCounts !== 'function') {
    invalid('parameterCounts', 'target', target, 'a layer or model with parameterCounts() (LoRALinear, LoRAMLP, MLP)');
  }
  return target.parameterCounts();
}

/** Element-wise sum of several counts (e.g. the layers of a model). */
export function sumCounts(counts: readonly ParameterCounts[]): ParameterCounts {
  if (!Array.isArray(counts)) invalid('sumCounts', 'counts', counts, 'an array of parameter counts');
  counts.forEach((c, i) => {
    if (c === null || typeof c !== 'object' || !['total', 'trainable', 'frozen', 'lora', 'saved'].every((k) => typeof (c as unknown as Record<string, unknown>)[k] === 'number')) {
      invalid('sumCounts', `counts[${i}]`, c, 'parameter counts { total, trainable, frozen, lora, saved }');
    }
  });
  const sum: ParameterCounts = { total: 0, trainable: 0, frozen: 0, lora: 0, saved: 0 };
  for (const c of counts) {
    sum.total += c.total;
    sum.trainable += c.trainable;
    sum.frozen += c.frozen;
    sum.lora += c.lora;
    sum.saved += c.saved;
  }
  return sum;
}

/** Parameters of a fully connected network with biases: Σ (in·out + out). */
export function mlpParameterCount(dims: readonly number[]): number {
  checkDims('mlpParameterCount', dims);
  let n = 0;
  for (let i = 0; i + 1 < dims.length; i++) n += dims[i] * dims[i + 1] + dims[i + 1];
  return n;
}

/** LoRA parameters of rank r on every layer: Σ r·(in + out). */
export function loraParameterCount(dims: readonly number[], rank: number): number {
  checkDims('loraParameterCount', dims);
  checkPositiveInt('loraParameterCount', 'rank', rank);
  let n = 0;
  for (let i = 0; i + 1 < dims.length; i++) n += rank * (dims[i] + dims[i + 1]);
  return n;
}

/** Percentage of the baseline's parameters no longer trained: (1 − trainable/baseline)·100. */
export function reductionPercent(trainable: number, baseline: number): number {
  return (1 - trainable / baseline) * 100;
}

/** How many times fewer parameters are trained: baseline / trainable. */
export function compressionRatio(trainable: number, baseline: number): number {
  return baseline / trainable;
}

/** One row of the reference's demo-1 table. */
export interface EfficiencyRow {
  rank: number;
  /** The reference's "Total parameters": frozen base weights only. */
  frozen: number;
  trainable: number;
  lora: number;
  /** frozen + trainable: everything the LoRA model holds. */
  total: number;
  reductionPercent: number;
  compressionRatio: number;
}

/** Weights of a bias-free network: Σ in·out (the reference's LoRA "total"). */
export function weightCount(dims: readonly number[]): number {
  checkDims('weightCount', dims);
  let n = 0;
  for (let i = 0; i + 1 < dims.length; i++) n += dims[i] * dims[i + 1];
  return n;
}

/**
 * The reference's demo-1 table, computed from the sizes alone: a LoRA model on a frozen,
 * bias-free base against the standard model with biases (the full fine-tuning baseline).
 */
export function parameterEfficiencyTable(dims: readonly number[], ranks: readonly number[]): EfficiencyRow[] {
  checkDims('parameterEfficiencyTable', dims);
  if (!Array.isArray(ranks) || ranks.length === 0) invalid('parameterEfficiencyTable', 'ranks', ranks, 'a non-empty array of positive integers');
  ranks.forEach((r, i) => checkPositiveInt('parameterEfficiencyTable', `ranks[${i}]`, r));
  const baseline = mlpParameterCount(dims);
  const frozen = weightCount(dims);
  return ranks.map((rank) => {
    const lora = loraParameterCount(dims, rank);
    return {
      rank,
      frozen,
      trainable: lora,
      lora,
      total: frozen + lora,
      reductionPercent: reductionPercent(lora, baseline),
      compressionRatio: compressionRatio(lora, baseline),
    };
  });
}
