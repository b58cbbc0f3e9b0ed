import * as tf from '@tensorflow/tfjs-core';

/**
 * A small seeded random number generator (mulberry32 + Box–Muller).
 *
 * Everything random in lora-tfjs (initial weights, data, minibatch order) comes from
 * here rather than from a backend, so the same seed gives bit-identical numbers on
 * every backend and machine.
 */
export class Rng {
  private state: number;
  private spare: number | null = null;

  constructor(seed: number) {
    if (!Number.isInteger(seed)) {
      throw new Error(`Rng: seed = ${String(seed)} is invalid; expected an integer`);
    }
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Standard normal N(0, 1). */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const radius = Math.sqrt(-2 * Math.log(u));
    this.spare = radius * Math.sin(2 * Math.PI * v);
    return radius * Math.cos(2 * Math.PI * v);
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** A random permutation of 0..n-1 (Fisher–Yates). */
  permutation(n: number): Int32Array {
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = p[i];
      p[i] = p[j];
      p[j] = t;
    }
    return p;
  }

  /** `k` distinct indices from 0..n-1, like `torch.randperm(n)[:k]`. */
  sample(n: number, k: number): Int32Array {
    return this.permutation(n).subarray(0, k);
  }

  /** Fill a new Float32Array with N(0, std²) values. */
  normalArray(size: number, std = 1): Float32Array {
    const out = new Float32Array(size);
    for (let i = 0; i < size; i++) out[i] = this.normal() * std;
    return out;
  }

  /** Fill a new Float32Array with U(-bound, bound) values. */
  uniformArray(size: number, bound: number): Float32Array {
    const out = new Float32Array(size);
    for (let i = 0; i < size; i++) out[i] = (2 * this.uniform() - 1) * bound;
    return out;
  }
}

/** A seeded N(0, std²) tensor of the given shape. */
export function randomNormal<R extends tf.Rank>(shape: readonly number[], rng: Rng, std = 1): tf.Tensor<R> {
  const size = shape.reduce((a, b) => a * b, 1);
  return tf.tensor<tf.Rank>(rng.normalArray(size, std), shape as number[], 'float32') as tf.Tensor<R>;
}

/** A seeded U(-bound, bound) tensor of the given shape. */
export function randomUniform<R extends tf.Rank>(shape: readonly number[], rng: Rng, bound: number): tf.Tensor<R> {
  const size = shape.reduce((a, b) => a * b, 1);
  return tf.tensor<tf.Rank>(rng.uniformArray(size, bound), shape as number[], 'float32') as tf.Tensor<R>;
}
