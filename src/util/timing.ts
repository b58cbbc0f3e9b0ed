import { checkInteger, checkOptions, describe, invalid } from './validate.js';

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
  if (variants === null || typeof variants !== 'object' || Array.isArray(variants)) invalid(where, 'variants', variants, 'an object of named functions');
  const names = Object.keys(variants) as K[];
  if (names.length === 0) invalid(where, 'variants', variants, 'at least one named function');
  for (const n of names) {
    // Integer-like keys come first in an object's key order, which would silently change the baseline.
    if (/^(0|[1-9]\d*)$/.test(n)) invalid(where, 'variant name', n, 'a name that is not an integer (the first name given is the baseline)');
    if (typeof variants[n] !== 'function') invalid(where, `variants.${n}`, variants[n], 'a function');
  }
  checkOptions(where, 'options', options);
  const unknown = Object.keys(options).filter((k) => k !== 'rounds' && k !== 'warmup');
  if (unknown.length > 0) invalid(where, 'options', options, `only rounds and warmup (unknown: ${unknown.join(', ')})`);
  const rounds = options.rounds ?? 20;
  const warmup = options.warmup ?? 3;
  if (checkInteger(where, 'rounds', rounds) < 1 || rounds > MAX_ROUNDS) invalid(where, 'rounds', rounds, `an integer in [1, ${MAX_ROUNDS}]`);
  if (checkInteger(where, 'warmup', warmup) < 0 || warmup > MAX_ROUNDS) invalid(where, 'warmup', warmup, `an integer in [0, ${MAX_ROUNDS}]`);
  const run = async (n: K, round: string) => {
    try {
      await variants[n]();
    } catch (err) {
      throw new Error(`${where}: variant ${describe(n)} failed in ${round}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
  };
  for (const n of names) for (let i = 0; i < warmup; i++) await run(n, `warm-up run ${i + 1}`);
  const samples = names.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    const order = [...names.keys()];
    if (r % 2 === 1) order.reverse();
    for (const i of order) {
      const t = performance.now();
      await run(names[i], `round ${r + 1}`);
      samples[i].push(performance.now() - t);
    }
    // Let timers and I/O run between rounds, so a long comparison does not starve the process.
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  const tooFast = samples[0].findIndex((v) => !(v > 0));
  if (tooFast >= 0) {
    throw new Error(`${where}: variant ${describe(names[0])} took ${samples[0][tooFast]} ms in round ${tooFast + 1}, below the clock's resolution; time a larger unit of work (e.g. several calls per variant)`);
  }
  const timings = {} as Record<K, Timing>;
  const ratios = {} as Record<K, RatioSpread>;
  names.forEach((n, i) => {
    timings[n] = summarize(samples[i]);
    ratios[n] = ratioSpread(samples[i].map((v, r) => v / samples[0][r]));
  });
  return { rounds, timings, ratios };
}

const MAX_ROUNDS = 100_000;

/** Median and 10th/90th percentiles (linear interpolation between ranks). */
export function ratioSpread(values: readonly number[]): RatioSpread {
  // A loop, not every(): every() skips the holes of a sparse array.
  let ok = Array.isArray(values) && values.length > 0;
  for (let i = 0; ok && i < values.length; i++) ok = typeof values[i] === 'number' && Number.isFinite(values[i]);
  if (!ok) invalid('ratioSpread', 'values', values, 'a non-empty array of finite numbers');
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => {
    const pos = q * (sorted.length - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(sorted.length - 1, lo + 1);
    const f = pos - lo;
    if (f === 0 || sorted[lo] === sorted[hi]) return sorted[lo];
    return sorted[lo] * (1 - f) + sorted[hi] * f; // never overflows between two finite numbers
  };
  return { median: at(0.5), p10: at(0.1), p90: at(0.9) };
}
