import { lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { expect } from 'vitest';
import type { LoRAMLP } from '../src/index.js';

export type Matrix = number[][];

/** Plain-JS matrix product, independent of TensorFlow.js. */
export function matmul(a: Matrix, b: Matrix): Matrix {
  return a.map((row) => b[0].map((_, j) => row.reduce((s, v, k) => s + v * b[k][j], 0)));
}

export function add(a: Matrix, b: Matrix): Matrix {
  return a.map((row, i) => row.map((v, j) => v + b[i][j]));
}

export function scale(a: Matrix, s: number): Matrix {
  return a.map((row) => row.map((v) => v * s));
}

export function transpose(a: Matrix): Matrix {
  return a[0].map((_, j) => a.map((row) => row[j]));
}

export function toMatrix(t: tf.Tensor): Matrix {
  return t.arraySync() as Matrix;
}

export function maxAbsDiff(a: Matrix | tf.Tensor, b: Matrix | tf.Tensor): number {
  const A = a instanceof tf.Tensor ? toMatrix(a) : a;
  const B = b instanceof tf.Tensor ? toMatrix(b) : b;
  let m = 0;
  A.forEach((row, i) => row.forEach((v, j) => (m = Math.max(m, Math.abs(v - B[i][j])))));
  return m;
}

/** Max |a − b| / max(|b|, floor): a relative comparison that tolerates exact zeros. */
export function maxRelDiff(a: tf.Tensor, b: tf.Tensor): number {
  const x = a.dataSync();
  const y = b.dataSync();
  let peak = 0;
  for (const v of y) peak = Math.max(peak, Math.abs(v));
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m / Math.max(peak, 1e-12);
}

/** Run `fn` and assert it left no tensor behind. */
export async function expectNoLeak<T>(fn: () => T | Promise<T>): Promise<T> {
  const before = tf.memory().numTensors;
  const out = await fn();
  expect(tf.memory().numTensors).toBe(before);
  return out;
}

/** The value of a scalar computed in `fn`, with every tensor freed. */
export function scalarOf(fn: () => tf.Tensor): number {
  const t = tf.tidy(fn);
  const v = t.dataSync()[0];
  t.dispose();
  return v;
}

/** A safetensors file from a raw header (object or exact text) and data bytes. */
export function rawFile(header: object | string, data: Uint8Array = new Uint8Array(0), headerLength?: bigint): Uint8Array {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const h = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}


/**
 * Seeded non-zero values in every variable of adapter `name` (A and B of its LoRA layers,
 * weight and bias of its full copies), as training would leave them: a fresh adapter's B is
 * zero, which would hide a transposed or dropped factor.
 */
export function trainLike(model: LoRAMLP, name: string, seed: number): void {
  model.layers.forEach((l, i) => {
    const kind = l.adapterKind(name);
    const full = kind === 'full' ? l.fullAdapter(name) : null;
    const vars: tf.Variable[] = kind === 'lora' ? [l.adapter(name).A, l.adapter(name).B] : full !== null ? [full.weight, ...(full.bias ? [full.bias] : [])] : [];
    vars.forEach((v, k) => {
      const r = tf.randomNormal(v.shape, 0, 0.3, 'float32', seed * 100 + i * 10 + k);
      v.assign(r);
      r.dispose();
    });
  });
}

/** Every file and link below `dir` with its content (or link target) and mode, to prove nothing else changed. */
export function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d).sort()) {
      const p = join(d, e);
      const r = rel === '' ? e : `${rel}/${e}`;
      const s = lstatSync(p);
      if (s.isSymbolicLink()) out[r] = `link -> ${readlinkSync(p)}`;
      else if (s.isDirectory()) {
        out[r] = `dir ${(s.mode & 0o777).toString(8)}`;
        walk(p, r);
      } else if (s.isFIFO()) out[r] = 'fifo';
      else out[r] = `file ${(s.mode & 0o777).toString(8)} ${readFileSync(p).toString('base64')}`;
    }
  };
  walk(dir, '');
  return out;
}

/** Seeded initializers, so each test model is built with the same weights. */
export function seeded(seed: number): { kernelInitializer: ReturnType<typeof tfl.initializers.glorotNormal>; biasInitializer: ReturnType<typeof tfl.initializers.randomNormal> } {
  return { kernelInitializer: tfl.initializers.glorotNormal({ seed }), biasInitializer: tfl.initializers.randomNormal({ seed: seed + 100 }) };
}

/** A small Layers MLP: fc1 6→5 (relu), fc2 5→4 (tanh), head 4→3, seeded. */
export function layersMlp(): tfl.Sequential {
  return tfl.sequential({
    layers: [
      tfl.layers.dense({ inputShape: [6], units: 5, activation: 'relu', name: 'fc1', ...seeded(1) }),
      tfl.layers.dense({ units: 4, activation: 'tanh', name: 'fc2', ...seeded(2) }),
      tfl.layers.dense({ units: 3, name: 'head', ...seeded(3) }),
    ],
  });
}
