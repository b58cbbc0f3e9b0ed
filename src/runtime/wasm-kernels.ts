import * as tf from '@tensorflow/tfjs-core';

/**
 * Training kernels the wasm backend (tfjs-backend-wasm 4.22) lacks, composed from stock wasm
 * kernels so that Embedding (`gather`) and Conv2D layers train on wasm:
 *
 * - `UnsortedSegmentSum`, the gradient of `gather`: one `ScatterNd` (which sums duplicate
 *   indices) into `[numSegments, ...rest]`. Ids outside `[0, numSegments)` are dropped, as in
 *   TensorFlow (negative ids) and in the cpu kernel (all of them).
 * - `Conv2DBackpropFilter`, the gradient of `conv2d` w.r.t. its filter: itself a convolution.
 *   With the batch and channel axes swapped, `x` becomes the image `[inC, H, W, n]` and `dy`
 *   the filter `[oh, ow, n, outC]`; their convolution (the forward strides as dilations, the
 *   forward dilations as strides, the forward padding made explicit) is `dW` as
 *   `[inC, kh, kw, outC]`, which one transpose puts into the filter layout. No im2col patch
 *   tensor is built, so memory stays at the size of the inputs and no batch chunking is needed.
 *   Measured here, this beat im2col (a one-hot depthwise convolution, a transpose and a
 *   matMul) except at batch 1 with ≥ 64 channels (up to 2x slower there).
 *
 * Kernel functions look the stock kernels up when they run, so registering before the wasm
 * backend is initialised is safe, and a stock kernel replaced later is picked up.
 */

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs: tf.NamedAttrMap };
type Info = tf.TensorInfo;
type Quad = [number, number, number, number];

const ours: string[] = [];

/** Runs stock wasm kernels, keeping every output until `release`, so nothing leaks on error. */
class Scope {
  private readonly temps: Info[] = [];

  constructor(
    private readonly kernel: string,
    private readonly backend: tf.KernelBackend,
  ) {}

  run(name: string, inputs: Record<string, Info>, attrs: Record<string, unknown> = {}): Info {
    const k = tf.getKernel(name, 'wasm');
    if (k === undefined) throw new Error(`${this.kernel} (wasm): the stock wasm kernel "${name}" it is built from is not registered`);
    const out = k.kernelFunc({ inputs, backend: this.backend, attrs } as never) as Info;
    this.temps.push(out);
    return out;
  }

  /** Dispose every intermediate except `keep` (the kernel's output, when it succeeded). */
  release(keep?: Info): void {
    for (const t of this.temps) if (t !== keep) this.backend.disposeData(t.dataId);
    this.temps.length = 0;
  }
}

function compose(kernel: string, backend: tf.KernelBackend, body: (s: Scope) => Info): Info {
  const scope = new Scope(kernel, backend);
  let out: Info | undefined;
  try {
    out = body(scope);
    return out;
  } finally {
    scope.release(out);
  }
}

const size = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

function unsortedSegmentSum({ inputs, backend, attrs }: KernelArgs): Info {
  const x = inputs.x as Info;
  const ids = inputs.segmentIds as Info;
  const numSegments = attrs.numSegments as number;
  const name = 'UnsortedSegmentSum';
  if (!Number.isInteger(numSegments) || numSegments < 0) {
    throw new Error(`${name} (wasm): numSegments must be a non-negative integer, got ${String(numSegments)}`);
  }
  const k = ids.shape.length;
  if (k > x.shape.length || ids.shape.some((d, i) => d !== x.shape[i])) {
    throw new Error(`${name} (wasm): segmentIds shape [${ids.shape}] must be a leading part of x's shape [${x.shape}]`);
  }
  const rest = x.shape.slice(k);
  const m = size(ids.shape);
  const outShape = [numSegments, ...rest];
  return compose(name, backend, (s) => {
    if (m === 0 || size(outShape) === 0) return s.run('Fill', {}, { shape: outShape, value: 0, dtype: x.dtype });
    let flat = s.run('Reshape', { x: ids }, { shape: [m] });
    if (flat.dtype !== 'int32') flat = s.run('Cast', { x: flat }, { dtype: 'int32' });
    const rows = s.run('Reshape', { x }, { shape: [m, ...rest] });
    const zero = s.run('Fill', {}, { shape: [], value: 0, dtype: 'int32' });
    const count = s.run('Fill', {}, { shape: [], value: numSegments, dtype: 'int32' });
    const bad = s.run('LogicalOr', {
      a: s.run('Less', { a: flat, b: zero }),
      b: s.run('GreaterEqual', { a: flat, b: count }),
    });
    let updates = rows;
    // ScatterNd does not bounds-check. Dropped ids (rare: reading m bools decides) go to row 0
    // with a zero update, by a select rather than a multiply so that NaN or Inf in a dropped
    // row cannot leak into row 0. (The wasm Select's row-wise form, a 1-D condition against
    // n-D values, gives wrong results: the condition is tiled to the full shape.)
    if ((backend.readSync(bad.dataId) as Uint8Array).some((v) => v !== 0)) {
      flat = s.run('Select', { condition: bad, t: s.run('ZerosLike', { x: flat }), e: flat });
      const mask =
        rest.length === 0 ? bad : s.run('Tile', { x: s.run('Reshape', { x: bad }, { shape: [m, ...rest.map(() => 1)] }) }, { reps: [1, ...rest] });
      updates = s.run('Select', { condition: mask, t: s.run('ZerosLike', { x: rows }), e: rows });
    }
    const indices = s.run('Reshape', { x: flat }, { shape: [m, 1] });
    return s.run('ScatterNd', { indices, updates }, { shape: outShape });
  });
}

function conv2DBackpropFilter({ inputs, backend, attrs }: KernelArgs): Info {
  const name = 'Conv2DBackpropFilter';
  const x = inputs.x as Info;
  const dy = inputs.dy as Info;
  const filterShape = attrs.filterShape as Quad;
  const dataFormat = (attrs.dataFormat ?? 'NHWC') as string;
  if (dataFormat !== 'NHWC' && dataFormat !== 'NCHW') {
    throw new Error(`${name} (wasm): dataFormat must be "NHWC" or "NCHW", got ${JSON.stringify(dataFormat)}`);
  }
  if (x.shape.length !== 4 || dy.shape.length !== 4 || filterShape?.length !== 4) {
    throw new Error(`${name} (wasm): x, dy and filterShape must have rank 4, got [${x.shape}], [${dy.shape}], [${filterShape}]`);
  }
  // tfjs-core passes no dilations (its conv2d gradient refuses dilation > 1); honour them if given.
  const dilations = (attrs.dilations ?? 1) as number | [number, number];
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as Quad,
    filterShape,
    attrs.strides as number | [number, number],
    dilations,
    attrs.pad as 'same' | 'valid' | number | tf.backend_util.ExplicitPadding,
    attrs.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined,
    false,
    tf.backend_util.convertConv2DDataFormat(dataFormat as 'NHWC' | 'NCHW'),
  );
  const nhwc = dataFormat === 'NHWC';
  const dyShape = nhwc ? dy.shape : [dy.shape[0], dy.shape[2], dy.shape[3], dy.shape[1]];
  const expected = [info.batchSize, info.outHeight, info.outWidth, info.outChannels];
  if (dyShape.some((d, i) => d !== expected[i])) {
    throw new Error(
      `${name} (wasm): dy has shape [${dy.shape}] (${dataFormat}) but x [${x.shape}], filter [${filterShape}], ` +
        `strides, pad and dilations give an output of [${expected}] (NHWC)`,
    );
  }
  const [kh, kw] = filterShape;
  const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw, outHeight: oh, outWidth: ow } = info;
  const { top, left } = info.padInfo;
  // Zero rows/columns after the input so the swapped convolution yields at least kh × kw
  // outputs; a rounding mode of 'ceil' may need more than the forward bottom/right padding.
  const bottom = Math.max(0, (kh - 1) * dh + (oh - 1) * sh + 1 - info.inHeight - top);
  const right = Math.max(0, (kw - 1) * dw + (ow - 1) * sw + 1 - info.inWidth - left);
  return compose(name, backend, (s) => {
    if (size(x.shape) === 0 || size(dy.shape) === 0) return s.run('Fill', {}, { shape: filterShape, value: 0, dtype: 'float32' });
    const xf = x.dtype === 'float32' ? x : s.run('Cast', { x }, { dtype: 'float32' });
    const dyf = dy.dtype === 'float32' ? dy : s.run('Cast', { x: dy }, { dtype: 'float32' });
    const image = s.run('Transpose', { x: xf }, { perm: nhwc ? [3, 1, 2, 0] : [1, 2, 3, 0] }); // [inC, H, W, n]
    const filter = s.run('Transpose', { x: dyf }, { perm: nhwc ? [1, 2, 0, 3] : [2, 3, 0, 1] }); // [oh, ow, n, outC]
    let dW = s.run(
      'Conv2D',
      { x: image, filter },
      { strides: [dh, dw], dilations: [sh, sw], pad: [[0, 0], [top, bottom], [left, right], [0, 0]], dataFormat: 'NHWC' },
    ); // [inC, ≥kh, ≥kw, outC]
    if (dW.shape[1] < kh || dW.shape[2] < kw) {
      throw new Error(`${name} (wasm): internal error, the swapped convolution gave [${dW.shape}] for a ${kh}×${kw} filter`);
    }
    if (dW.shape[1] !== kh || dW.shape[2] !== kw) {
      dW = s.run('Slice', { x: dW }, { begin: [0, 0, 0, 0], size: [dW.shape[0], kh, kw, dW.shape[3]] });
    }
    return s.run('Transpose', { x: dW }, { perm: [1, 2, 0, 3] }); // [kh, kw, inC, outC]
  });
}

const KERNELS: ReadonlyArray<[string, (args: KernelArgs) => Info]> = [
  ['UnsortedSegmentSum', unsortedSegmentSum],
  ['Conv2DBackpropFilter', conv2DBackpropFilter],
];

/**
 * Register the missing wasm training kernels (`UnsortedSegmentSum`, `Conv2DBackpropFilter`).
 * Idempotent; a kernel already registered for 'wasm' (by a tfjs release that ships it, or by
 * the caller) is left alone. Called when lora-tfjs is imported.
 */
export function registerWasmTrainingKernels(): void {
  for (const [kernelName, fn] of KERNELS) {
    if (tf.getKernel(kernelName, 'wasm') !== undefined) continue;
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: fn as unknown as tf.KernelFunc });
    ours.push(kernelName);
  }
}

/** The names of the wasm kernels lora-tfjs registered (empty where tfjs ships them itself). */
export function wasmTrainingKernelsRegistered(): string[] {
  return [...ours];
}
