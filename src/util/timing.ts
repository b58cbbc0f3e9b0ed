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
