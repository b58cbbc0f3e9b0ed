import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, registerWasmTrainingKernels, wasmTrainingKernelsRegistered } from '../src/index.js';

type Quad = [number, number, number, number];
type Pad = 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;

/** Deterministic values in [-1, 1), independent of any backend. */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

const sizeOf = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Run `fn` on the cpu backend, read its outputs and free them, then return to wasm. */
async function onCpu(fn: () => tf.Tensor[]): Promise<Float32Array[]> {
  await tf.setBackend('cpu');
  try {
    const outs = fn();
    const vals = outs.map((t) => Float32Array.from(t.dataSync()));
    tf.dispose(outs);
    return vals;
  } finally {
    await tf.setBackend('wasm');
  }
}

/** Max |a − b| / max |b|. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let peak = 0;
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    peak = Math.max(peak, Math.abs(b[i]));
    m = Math.max(m, Math.abs(a[i] - b[i]));
  }
  return m / Math.max(peak, 1e-12);
}

/** dW[i, j, c, o] = Σ x[b, oh·s − top + i·d, ow·s − left + j·d, c] · dy[b, oh, ow, o], NHWC, by loops. */
function naiveFilterGrad(
  x: Float32Array,
  xShape: Quad,
  dy: Float32Array,
  dyShape: Quad,
  filterShape: Quad,
  info: tf.backend_util.Conv2DInfo,
): Float64Array {
  const [n, H, W, C] = xShape;
  const [, OH, OW, O] = dyShape;
  const [kh, kw] = filterShape;
  const out = new Float64Array(sizeOf(filterShape));
  for (let b = 0; b < n; b++)
    for (let oh = 0; oh < OH; oh++)
      for (let ow = 0; ow < OW; ow++)
        for (let i = 0; i < kh; i++)
          for (let j = 0; j < kw; j++) {
            const h = oh * info.strideHeight - info.padInfo.top + i * info.dilationHeight;
            const w = ow * info.strideWidth - info.padInfo.left + j * info.dilationWidth;
            if (h < 0 || h >= H || w < 0 || w >= W) continue;
            for (let c = 0; c < C; c++) {
              const xv = x[((b * H + h) * W + w) * C + c];
              for (let o = 0; o < O; o++) out[((i * kw + j) * C + c) * O + o] += xv * dy[((b * OH + oh) * OW + ow) * O + o];
            }
          }
  return out;
}

function runFilterGrad(x: tf.Tensor, dy: tf.Tensor, attrs: Record<string, unknown>): tf.Tensor {
  return tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, attrs as tf.NamedAttrMap) as tf.Tensor;
}

describe('wasm training kernels (UnsortedSegmentSum, Conv2DBackpropFilter)', () => {
  beforeAll(async () => {
    await initBackend('wasm');
    expect(tf.getBackend()).toBe('wasm');
  });

  it('are registered on wasm at import, idempotently, from stock kernels the wasm backend has', () => {
    expect(wasmTrainingKernelsRegistered().sort()).toEqual(['Conv2DBackpropFilter', 'UnsortedSegmentSum']);
    registerWasmTrainingKernels();
    registerWasmTrainingKernels();
    expect(wasmTrainingKernelsRegistered().sort()).toEqual(['Conv2DBackpropFilter', 'UnsortedSegmentSum']);
    for (const name of ['UnsortedSegmentSum', 'Conv2DBackpropFilter']) expect(tf.getKernel(name, 'wasm')).toBeDefined();
    const used = ['Cast', 'Conv2D', 'Fill', 'GreaterEqual', 'Less', 'LogicalOr', 'Reshape', 'ScatterNd', 'Select', 'Slice', 'Tile', 'Transpose', 'ZerosLike'];
    for (const name of used) expect(tf.getKernel(name, 'wasm'), name).toBeDefined();
  });

  it('gives the gradient of gather (duplicate and 2-D indices, axis 0 and 1) as on cpu', async () => {
    const before = tf.memory().numTensors;
    const xShape = [5, 3];
    const xv = values(15, 1);
    const cases: Array<{ idx: number[] | number[][]; axis: number }> = [
      { idx: [1, 3, 1, 0, 1], axis: 0 },
      { idx: [[0, 2, 2], [4, 0, 1]], axis: 0 },
      { idx: [2, 0, 2], axis: 1 },
    ];
    const grads = () =>
      cases.map(({ idx, axis }) => {
        const x = tf.tensor(xv, xShape);
        const i = tf.tensor(idx, undefined, 'int32');
        const g = tf.grad((t: tf.Tensor) => {
          const y = tf.gather(t, i, axis);
          return tf.sum(tf.mul(y, tf.tensor(values(y.size, 7), y.shape)));
        })(x);
        tf.dispose([x, i]);
        return g;
      });
    const ref = await onCpu(grads);
    const got = grads();
    got.forEach((g, k) => {
      expect(g.shape).toEqual(xShape);
      expect(relErr(g.dataSync(), ref[k])).toBeLessThan(1e-6);
    });
    // Row 1 is gathered three times by the first case: its gradient is the sum of three rows.
    const w = values(15, 7);
    const row1 = got[0].arraySync() as number[][];
    for (let c = 0; c < 3; c++) expect(row1[1][c]).toBeCloseTo(w[0 * 3 + c] + w[2 * 3 + c] + w[4 * 3 + c], 5);
    tf.dispose(got);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('computes unsortedSegmentSum with ids out of order, empty segments, and as on cpu', async () => {
    const before = tf.memory().numTensors;
    const xv = values(24, 3);
    const ids = [3, 0, 3, 1, 0, 5];
    const run = () => {
      const x = tf.tensor(xv, [6, 4]);
      const s = tf.tensor1d(ids, 'int32');
      const out = tf.unsortedSegmentSum(x, s, 7);
      tf.dispose([x, s]);
      return [out];
    };
    const [ref] = await onCpu(run);
    const [out] = run();
    expect(out.shape).toEqual([7, 4]);
    const expected = new Float64Array(28);
    ids.forEach((id, r) => {
      for (let c = 0; c < 4; c++) expected[id * 4 + c] += xv[r * 4 + c];
    });
    expect(relErr(out.dataSync(), expected)).toBeLessThan(1e-6);
    expect(relErr(out.dataSync(), ref)).toBeLessThan(1e-6);
    out.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('drops ids outside [0, numSegments), keeps NaN in dropped rows out, and takes n-D ids and int32 x', () => {
    const before = tf.memory().numTensors;
    // 2-D ids over the leading dims of a rank-3 x.
    const xv = values(2 * 3 * 2, 5);
    xv[1 * 2 + 0] = NaN; // row (0, 1) has id −1: dropped
    const ids = [
      [2, -1, 0],
      [2, 4, 1],
    ];
    const x = tf.tensor(xv, [2, 3, 2]);
    const s = tf.tensor2d(ids, undefined, 'int32');
    const out = tf.engine().runKernel('UnsortedSegmentSum', { x, segmentIds: s }, { numSegments: 3 }) as tf.Tensor;
    expect(out.shape).toEqual([3, 2]);
    const expected = new Float64Array(6);
    ids.flat().forEach((id, r) => {
      if (id < 0 || id >= 3) return;
      for (let c = 0; c < 2; c++) expected[id * 2 + c] += xv[r * 2 + c];
    });
    const got = out.dataSync();
    expect(Array.from(got).every(Number.isFinite)).toBe(true);
    expect(relErr(got, expected)).toBeLessThan(1e-6);

    // Dropped ids with a rank-2 row shape: the mask is tiled over [m, 2, 3].
    const x3v = values(4 * 2 * 3, 6);
    const x3 = tf.tensor(x3v, [4, 2, 3]);
    const s3 = tf.tensor1d([1, 5, 0, 1], 'int32');
    const o3 = tf.unsortedSegmentSum(x3, s3, 3);
    const e3 = new Float64Array(3 * 6);
    [1, 5, 0, 1].forEach((id, r) => {
      if (id < 3) for (let c = 0; c < 6; c++) e3[id * 6 + c] += x3v[r * 6 + c];
    });
    expect(o3.shape).toEqual([3, 2, 3]);
    expect(relErr(o3.dataSync(), e3)).toBeLessThan(1e-6);
    tf.dispose([x3, s3, o3]);

    const xi = tf.tensor1d([1, 2, 3, 4], 'int32');
    const si = tf.tensor1d([1, 1, -3, 0], 'int32');
    const oi = tf.unsortedSegmentSum(xi, si, 2);
    expect(oi.dtype).toBe('int32');
    expect(Array.from(oi.dataSync())).toEqual([4, 3]);

    const empty = tf.zeros([0, 2]);
    const emptyIds = tf.zeros([0], 'int32');
    const none = tf.engine().runKernel('UnsortedSegmentSum', { x: empty, segmentIds: emptyIds }, { numSegments: 2 }) as tf.Tensor;
    expect(none.shape).toEqual([2, 2]);
    expect(Array.from(none.dataSync())).toEqual([0, 0, 0, 0]);
    const wrongIds = tf.zeros([3], 'int32');
    expect(() => tf.engine().runKernel('UnsortedSegmentSum', { x, segmentIds: wrongIds }, { numSegments: 2 })).toThrow(
      /segmentIds shape \[3\] must be a leading part of x's shape \[2,3,2\]/,
    );
    tf.dispose([x, s, out, xi, si, oi, empty, emptyIds, none, wrongIds]);
    expect(tf.memory().numTensors).toBe(before);
  });

  const convCases: Array<{ x: Quad; f: Quad; strides: number | [number, number]; pad: Pad; fused?: boolean }> = [
    { x: [2, 7, 9, 3], f: [3, 3, 3, 5], strides: 1, pad: 'same' },
    { x: [2, 7, 9, 3], f: [3, 3, 3, 5], strides: 1, pad: 'valid' },
    { x: [3, 8, 6, 4], f: [1, 1, 4, 2], strides: 2, pad: 'valid' },
    { x: [3, 8, 6, 4], f: [1, 1, 4, 2], strides: 1, pad: 'same' },
    { x: [2, 9, 7, 3], f: [2, 3, 3, 6], strides: 2, pad: 'same' },
    { x: [2, 8, 8, 3], f: [3, 3, 3, 2], strides: 2, pad: 'same' },
    { x: [1, 5, 8, 2], f: [3, 2, 2, 3], strides: [1, 2], pad: 'valid' },
    { x: [2, 7, 9, 3], f: [3, 2, 3, 4], strides: 2, pad: [[0, 0], [1, 2], [0, 1], [0, 0]] },
    { x: [2, 7, 7, 3], f: [3, 3, 3, 4], strides: 1, pad: 1 },
    { x: [4, 6, 5, 2], f: [2, 3, 2, 3], strides: 1, pad: 'same', fused: true },
  ];

  it('gives conv2d filter (and input) gradients equal to the cpu backend for many configurations', async () => {
    const before = tf.memory().numTensors;
    const grads = () =>
      convCases.flatMap(({ x: xs, f: fs, strides, pad, fused }, k) => {
        const x = tf.tensor(values(sizeOf(xs), 10 + k), xs) as tf.Tensor4D;
        const f = tf.tensor(values(sizeOf(fs), 50 + k), fs) as tf.Tensor4D;
        const bias = tf.tensor1d(values(fs[3], 90 + k));
        const [dx, df] = tf.grads((a: tf.Tensor, b: tf.Tensor) => {
          const y = fused
            ? tf.fused.conv2d({ x: a as tf.Tensor4D, filter: b as tf.Tensor4D, strides, pad, bias, activation: 'relu' })
            : tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, strides, pad);
          return tf.sum(tf.mul(y, tf.tensor(values(y.size, 70 + k), y.shape)));
        })([x, f]);
        tf.dispose([x, f, bias]);
        return [dx, df];
      });
    const ref = await onCpu(grads);
    const got = grads();
    got.forEach((g, k) => {
      const c = convCases[Math.floor(k / 2)];
      expect(g.shape, JSON.stringify(c)).toEqual(k % 2 === 0 ? c.x : c.f);
      expect(relErr(g.dataSync(), ref[k]), `${k % 2 === 0 ? 'dx' : 'dW'} ${JSON.stringify(c)}`).toBeLessThan(1e-4);
    });
    tf.dispose(got);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('puts each tap, input channel and output channel of dW in its place (asymmetric one-hot case)', () => {
    const before = tf.memory().numTensors;
    // x is one at (b=1, h=3, w=2, c=1), dy one at (b=1, oh=1, ow=1, o=2); valid, stride 1,
    // a 3×2 filter: the only non-zero is dW[h−oh, w−ow, c, o] = dW[2, 1, 1, 2].
    const xv = new Float32Array(2 * 5 * 4 * 3);
    xv[((1 * 5 + 3) * 4 + 2) * 3 + 1] = 1;
    const dyv = new Float32Array(2 * 3 * 3 * 4);
    dyv[((1 * 3 + 1) * 3 + 1) * 4 + 2] = 1;
    const x = tf.tensor(xv, [2, 5, 4, 3]);
    const dy = tf.tensor(dyv, [2, 3, 3, 4]);
    const dW = runFilterGrad(x, dy, { strides: 1, pad: 'valid', dataFormat: 'NHWC', filterShape: [3, 2, 3, 4] });
    expect(dW.shape).toEqual([3, 2, 3, 4]);
    const v = dW.dataSync();
    const at = ((2 * 2 + 1) * 3 + 1) * 4 + 2;
    expect(v[at]).toBe(1);
    expect(Array.from(v).filter((e, i) => i !== at && e !== 0)).toEqual([]);
    tf.dispose([x, dy, dW]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('honours dilations, strides with dilations, and rounding (direct kernel calls) against a loop', () => {
    const before = tf.memory().numTensors;
    const cases: Array<{ x: Quad; f: Quad; strides: number | [number, number]; pad: Pad; dilations: number | [number, number]; dimRoundingMode?: 'ceil' }> = [
      { x: [2, 7, 9, 3], f: [3, 2, 3, 4], strides: 1, pad: 'same', dilations: 2 },
      { x: [2, 9, 8, 3], f: [3, 3, 3, 2], strides: 1, pad: 'valid', dilations: [2, 3] },
      { x: [2, 9, 8, 3], f: [2, 3, 3, 2], strides: 2, pad: 'valid', dilations: 2 },
      { x: [2, 8, 7, 2], f: [3, 2, 2, 3], strides: 3, pad: 1, dilations: 1, dimRoundingMode: 'ceil' },
    ];
    cases.forEach((c, k) => {
      const info = tf.backend_util.computeConv2DInfo(c.x, c.f, c.strides, c.dilations, c.pad, c.dimRoundingMode);
      const dyShape = info.outShape as Quad;
      const xv = values(sizeOf(c.x), 20 + k);
      const dyv = values(sizeOf(dyShape), 30 + k);
      const x = tf.tensor(xv, c.x);
      const dy = tf.tensor(dyv, dyShape);
      const dW = runFilterGrad(x, dy, {
        strides: c.strides,
        pad: c.pad,
        dilations: c.dilations,
        dimRoundingMode: c.dimRoundingMode,
        dataFormat: 'NHWC',
        filterShape: c.f,
      });
      expect(dW.shape).toEqual(c.f);
      expect(relErr(dW.dataSync(), naiveFilterGrad(xv, c.x, dyv, dyShape, c.f, info)), JSON.stringify(c)).toBeLessThan(1e-4);
      tf.dispose([x, dy, dW]);
    });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('takes NCHW like the cpu kernel, and names the shapes when dy does not fit', async () => {
    const before = tf.memory().numTensors;
    const xs: Quad = [2, 3, 7, 6];
    const dys: Quad = [2, 4, 4, 3];
    const attrs = { strides: 2, pad: 'same', dataFormat: 'NCHW', filterShape: [3, 2, 3, 4] };
    const run = () => {
      const x = tf.tensor(values(sizeOf(xs), 3), xs);
      const dy = tf.tensor(values(sizeOf(dys), 4), dys);
      const dW = runFilterGrad(x, dy, attrs);
      tf.dispose([x, dy]);
      return [dW];
    };
    const [ref] = await onCpu(run);
    const [dW] = run();
    expect(dW.shape).toEqual([3, 2, 3, 4]);
    expect(relErr(dW.dataSync(), ref)).toBeLessThan(1e-4);
    const x = tf.zeros([2, 7, 6, 3]);
    const dy = tf.zeros([2, 5, 3, 4]);
    expect(() => runFilterGrad(x, dy, { ...attrs, dataFormat: 'NHWC' })).toThrow(/dy has shape \[2,5,3,4\] \(NHWC\).*\[2,4,3,4\]/);
    tf.dispose([dW, x, dy]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('trains an Embedding-like model with adam on wasm: loss decreases, no tensor leaks', () => {
    const before = tf.memory().numTensors;
    const init = [tf.tensor(values(10 * 4, 11), [10, 4]), tf.tensor(values(4 * 2, 12), [4, 2])];
    const table = tf.variable(init[0], true, 'wk-embedding');
    const head = tf.variable(init[1], true, 'wk-head');
    tf.dispose(init);
    const ids = tf.tensor2d([[1, 3, 3], [7, 1, 0], [9, 9, 2]], undefined, 'int32');
    const target = tf.tensor(values(3 * 3 * 2, 13), [3, 3, 2]);
    const opt = tf.train.adam(0.05);
    const loss = () => tf.losses.meanSquaredError(target, tf.matMul(tf.reshape(tf.gather(table, ids), [9, 4]), head).reshape([3, 3, 2])) as tf.Scalar;
    const losses = minimizeSteps(opt, loss, 30);
    expect(losses[29]).toBeLessThan(losses[0] * 0.5);
    opt.dispose();
    tf.dispose([table, head, ids, target]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('trains a Conv2D-like model with adam on wasm: loss decreases, no tensor leaks', () => {
    const before = tf.memory().numTensors;
    const init = tf.tidy(() => [tf.tensor(values(3 * 2 * 2 * 4, 21), [3, 2, 2, 4]).mul(0.3), tf.zeros([4])]);
    const filter = tf.variable(init[0], true, 'wk-filter');
    const bias = tf.variable(init[1], true, 'wk-bias');
    tf.dispose(init);
    const x = tf.tensor(values(4 * 7 * 6 * 2, 22), [4, 7, 6, 2]) as tf.Tensor4D;
    const target = tf.tensor(values(4 * 4 * 3 * 4, 23), [4, 4, 3, 4]);
    const opt = tf.train.adam(0.02);
    const loss = () =>
      tf.losses.meanSquaredError(target, tf.fused.conv2d({ x, filter: filter as tf.Tensor4D, strides: 2, pad: 'same', bias, activation: 'relu' })) as tf.Scalar;
    const losses = minimizeSteps(opt, loss, 40);
    expect(losses[39]).toBeLessThan(losses[0] * 0.8);
    opt.dispose();
    tf.dispose([filter, bias, x, target]);
    expect(tf.memory().numTensors).toBe(before);
  });
});

/** `steps` optimizer steps on wasm; the losses. Tensors must not grow after the first step (its optimizer state). */
function minimizeSteps(opt: tf.Optimizer, loss: () => tf.Scalar, steps: number): number[] {
  const losses: number[] = [];
  let afterFirst = 0;
  for (let step = 0; step < steps; step++) {
    const l = opt.minimize(loss, true)!;
    losses.push(l.dataSync()[0]);
    l.dispose();
    if (step === 0) afterFirst = tf.memory().numTensors;
  }
  expect(tf.getBackend()).toBe('wasm');
  expect(tf.memory().numTensors).toBe(afterFirst);
  return losses;
}
