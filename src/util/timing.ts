import { checkInteger, describe, invalid } from './validate.js';

/** Wall-clock statistics of repeated runs, in milliseconds. */
export interface Timing {
  medianMs: number;
  minMs: number;
  meanMs: number;
  runs: number;
}

/**
 * Time `fn` (which must finish its work before returning, e.g. by reading a result):
 * `warmup` untimed runs, then `runs` timed ones. The median resists a noisy machine.
 */
export async function timeIt(fn: () => unknown | Promise<unknown>, runs = 20, warmup = 3): Promise<Timing> {
  if (typeof fn !== 'function') invalid('timeIt', 'fn', fn, 'a function');
  if (checkInteger('timeIt', 'runs', runs) < 1) invalid('timeIt', 'runs', runs, 'a positive integer');
  if (checkInteger('timeIt', 'warmup', warmup) < 0) invalid('timeIt', 'warmup', warmup, 'a non-negative integer');
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    samples.push(performance.now() - t);
  }
  return summarize(samples);
}

/** Median, min and mean of samples. */
export function summarize(samples: readonly number[]): Timing {
  if (!Array.isArray(samples) || samples.length === 0 || !samples.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    throw new Error(`summarize: samples = ${describe(samples)} is invalid; expected a non-empty array of finite numbers (milliseconds)`);
  }
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const medianMs = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return {
    medianMs,
    minMs: sorted[0],
    meanMs: sorted.reduce((a, b) => a + b, 0) / sorted.length,
    runs: sorted.length,
  };
}

/** The spread of per-round ratios: median, and the 10th and 90th percentiles. */
export interface RatioSpread {
  median: number;
  p10: number;
  p90: number;
}

/** What {@link compareTimings} measured. */
export interface TimingComparison<K extends string> {
  rounds: number;
  /** Each variant's own statistics over the rounds. */
  timings: Record<K, Timing>;
  /**
   * Each variant's time over the first variant's, taken round by round (so drift that hits
   * a whole round cancels), then summarised. The first variant's ratio is exactly 1.
   */
  ratios: Record<K, RatioSpread>;
}

/**
 * Time several variants against each other the way a shared, noisy machine allows: after
 * `warmup` untimed runs of each, `rounds` rounds that run every variant once, in reverse
 * order every other round (so that what one leaves behind, garbage or a cold cache, does
 * not always land on the same neighbour). One sequential timing per variant is not enough
 * to compare them: the machine's drift between two runs is as large as the differences
 * worth measuring.
 */
export async function compareTimings<K extends string>(
  variants: Record<K, () => unknown | Promise<unknown>>,
  options: { rounds?: number; warmup?: number } = {},
): Promise<TimingComparison<K>> {
  const where = 'compareTimings';
  if (variants === null || typeof variants !== 'object') invalid(where, 'variants', variants, 'an object of named functions');
  const names = Object.keys(variants) as K[];
  if (names.length === 0) invalid(where, 'variants', variants, 'at least one named function');
  for (const n of names) if (typeof variants[n] !== 'function') invalid(where, `variants.${n}`, variants[n], 'a function');
  if (options === null || typeof options !== 'object') invalid(where, 'options', options, 'an options object');
  const rounds = options.rounds ?? 20;
  const warmup = options.warmup ?? 3;
  if (checkInteger(where, 'rounds', rounds) < 1) invalid(where, 'rounds', rounds, 'a positive integer');
  if (checkInteger(where, 'warmup', warmup) < 0) invalid(where, 'warmup', warmup, 'a non-negative integer');
  for (const n of names) for (let i = 0; i < warmup; i++) await variants[n]();
  const samples = names.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    const order = [...names.keys()];
    if (r % 2 === 1) order.reverse();
    for (const i of order) {
      const t = performance.now();
      await variants[names[i]]();
      samples[i].push(performance.now() - t);
    }
  }
  const timings = {} as Record<K, Timing>;
  const ratios = {} as Record<K, RatioSpread>;
  names.forEach((n, i) => {
    timings[n] = summarize(samples[i]);
    ratios[n] = ratioSpread(samples[i].map((v, r) => v / samples[0][r]));
  });
  return { rounds, timings, ratios };
}

/** Median and 10th/90th percentiles (linear interpolation between ranks). */
export function ratioSpread(values: readonly number[]): RatioSpread {
  if (!Array.isArray(values) || values.length === 0 || !values.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    invalid('ratioSpread', 'values', values, 'a non-empty array of finite numbers');
  }
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => {
    const pos = q * (sorted.length - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(sorted.length - 1, lo + 1);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
  };
  return { median: at(0.5), p10: at(0.1), p90: at(0.9) };
}
