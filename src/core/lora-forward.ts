import * as tf from '@tensorflow/tfjs-core';
import { withLazyGrad } from './custom-grad.js';

/**
 * The arithmetic of a LoRA linear layer, kept apart from the layer's state.
 *
 * Two gradient paths compute the same numbers:
 * - `autodiff`: plain ops; TensorFlow.js derives the backward pass. Its matMul gradient
 *   uses transposed matMuls, which the wasm backend runs as scalar loops (~8x slower for
 *   `transposeB`, ~30x for `transposeA` at 2048², measured here).
 * - `fused`: one `tf.customGrad` whose backward pass uses only untransposed matMuls: the
 *   frozen weight's transpose is cached (it never changes) and the thin LoRA factors are
 *   transposed explicitly, which costs next to nothing at rank r.
 */
export type GradientPath = 'auto' | 'fused' | 'autodiff';

/** The frozen part of a linear layer. `weightT` is a lazily built cache of Wᵀ. */
export interface FrozenLinear {
  readonly weight: tf.Tensor2D;
  weightT?: tf.Tensor2D;
  readonly bias?: tf.Tensor1D;
}

/** The trainable low-rank term s·(x·A)·B. */
export interface LowRankTerm {
  readonly A: tf.Tensor2D;
  readonly B: tf.Tensor2D;
  readonly scale: number;
}

export interface LinearForwardOptions {
  /** Dropout on the adapter's input; null for none. */
  dropout: { rate: number; seed: number } | null;
  path: GradientPath;
  /** When false the gradient w.r.t. x is never computed (nothing upstream trains). */
  needsInputGrad: boolean;
}

/** Backends whose transposed matMuls are slow enough that the fused path pays off. */
const FUSED_BACKENDS = new Set(['wasm', 'cpu']);

/** Resolve `auto` for the active backend. */
export function resolveGradientPath(path: GradientPath): 'fused' | 'autodiff' {
  if (path !== 'auto') return path;
  return FUSED_BACKENDS.has(tf.getBackend()) ? 'fused' : 'autodiff';
}

/** Wᵀ, built once per weight and kept until the weight is replaced or the layer disposed. */
export function cachedTranspose(base: FrozenLinear): tf.Tensor2D {
  if (base.weightT === undefined || base.weightT.isDisposed) {
    base.weightT = tf.keep(tf.transpose(base.weight));
  }
  return base.weightT;
}

/**
 * y = x·W + b + s·(dropout(x)·A)·B for a 2-D x `[n, in]`. With `term` null, the base alone.
 */
export function linearForward(
  x: tf.Tensor2D,
  base: FrozenLinear,
  term: LowRankTerm | null,
  options: LinearForwardOptions,
): tf.Tensor2D {
  return tf.tidy(() => {
    if (term === null) return addBias(tf.matMul(x, base.weight), base.bias);
    const xd = options.dropout === null ? x : tf.dropout(x, options.dropout.rate, undefined, options.dropout.seed) as tf.Tensor2D;
    const y =
      resolveGradientPath(options.path) === 'fused'
        ? fusedLoRA(x, xd, base, term, options.needsInputGrad)
        : tf.add(tf.matMul(x, base.weight), tf.mul(tf.matMul(tf.matMul(xd, term.A), term.B), term.scale)) as tf.Tensor2D;
    return addBias(y, base.bias);
  });
}

function addBias(y: tf.Tensor2D, bias: tf.Tensor1D | undefined): tf.Tensor2D {
  return bias === undefined ? y : tf.add(y, bias);
}

/**
 * x·W + s·(xd·A)·B with a backward pass made of untransposed matMuls:
 *   g  = s·dy·Bᵀ          dB = s·(xd·A)ᵀ·dy        dA = xdᵀ·g
 *   dx = dy·Wᵀ (+ g·Aᵀ, into xd)
 * Each gradient is computed only when tfjs asks for it (an input gradient only when
 * something upstream trains). With `needsInputGrad` false, x is not an input at all;
 * when xd is x, one input carries both terms.
 */
function fusedLoRA(
  x: tf.Tensor2D,
  xd: tf.Tensor2D,
  base: FrozenLinear,
  term: LowRankTerm,
  needsInputGrad: boolean,
): tf.Tensor2D {
  const W = base.weight;
  const s = term.scale;
  const separateXd = needsInputGrad && xd !== x;
  const inputs = [term.A, term.B, ...(needsInputGrad ? [x] : []), ...(separateXd ? [xd] : [])];

  const f = withLazyGrad(([A, B], save) => {
    const xa = tf.matMul(xd, A);
    // Whatever the backward pass reads must be saved: unsaved intermediates are freed.
    save([A, B, xa, xd]);
    return {
      value: tf.add(tf.matMul(x, W), tf.mul(tf.matMul(xa, B), s)),
      gradFunc: (dy, [Asaved, Bsaved, xaSaved, xdSaved]) => {
        // g is cheap (n × out × r): each thunk that needs it computes it.
        const g = () => tf.matMul(tf.mul(dy, s) as tf.Tensor2D, tf.transpose(Bsaved));
        const dA = () => tf.matMul(tf.transpose(xdSaved), g());
        const dB = () => tf.matMul(tf.transpose(xaSaved), tf.mul(dy, s) as tf.Tensor2D);
        if (!needsInputGrad) return [dA, dB];
        const dxBase = () => tf.matMul(dy as tf.Tensor2D, cachedTranspose(base));
        const dxLora = () => tf.matMul(g(), tf.transpose(Asaved));
        return separateXd ? [dA, dB, dxBase, dxLora] : [dA, dB, () => tf.add(dxBase(), dxLora())];
      },
    };
  });
  return f(inputs) as tf.Tensor2D;
}
