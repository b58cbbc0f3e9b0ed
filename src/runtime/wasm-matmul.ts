import * as tf from '@tensorflow/tfjs-core';

/**
 * An optional replacement for the wasm backend's BatchMatMul kernel. The stock kernel sends
 * only untransposed, unbatched products to XNNPACK; transposed operands and a batched
 * (3-D) input against a 2-D weight fall back to scalar loops (~8–30x slower here). The
 * replacement transposes explicitly and flattens broadcast batches, then calls the stock
 * kernel's fast path. It speeds up *any* autodiff code on wasm (full fine-tuning's dW
 * included), at the cost of an explicit transpose of the operand on every call — where
 * the operand is a large frozen weight, the fused LoRA gradient (which caches Wᵀ) is faster.
 */

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs: tf.NamedAttrMap };
type Info = tf.TensorInfo;

let stock: tf.KernelConfig | null = null;

/** Whether the replacement kernel is installed. */
export function wasmMatMulFastPathEnabled(): boolean {
  return stock !== null;
}

/** Install the replacement BatchMatMul kernel on the wasm backend. Idempotent. */
export function enableWasmMatMulFastPath(): void {
  if (stock !== null) return;
  const original = tf.getKernel('BatchMatMul', 'wasm');
  if (original === undefined) throw new Error('enableWasmMatMulFastPath: the wasm backend is not registered');
  const transpose = tf.getKernel('Transpose', 'wasm');
  const reshape = tf.getKernel('Reshape', 'wasm');
  if (transpose === undefined || reshape === undefined) throw new Error('enableWasmMatMulFastPath: wasm Transpose/Reshape kernels are missing');
  const call = (k: tf.KernelConfig, args: KernelArgs) => k.kernelFunc(args as never) as Info;

  const kernelFunc = (args: KernelArgs): Info => {
    const { backend } = args;
    let a = args.inputs.a as Info;
    let b = args.inputs.b as Info;
    const transposeA = args.attrs.transposeA === true;
    const transposeB = args.attrs.transposeB === true;
    const temps: Info[] = [];
    const swap = (x: Info): Info => {
      const perm = x.shape.map((_, i) => i);
      [perm[perm.length - 2], perm[perm.length - 1]] = [perm[perm.length - 1], perm[perm.length - 2]];
      const t = call(transpose, { inputs: { x }, backend, attrs: { perm } });
      temps.push(t);
      return t;
    };
    if (transposeA) a = swap(a);
    if (transposeB) b = swap(b);
    // A batched a against an unbatched b is one 2-D product over the flattened rows.
    let outShape: number[] | null = null;
    if (a.shape.length > 2 && b.shape.length === 2) {
      const k = a.shape[a.shape.length - 1];
      outShape = [...a.shape.slice(0, -1), b.shape[1]];
      const flat = call(reshape, { inputs: { x: a }, backend, attrs: { shape: [-1, k] } });
      temps.push(flat);
      a = flat;
    }
    const out = call(original, { inputs: { a, b }, backend, attrs: { ...args.attrs, transposeA: false, transposeB: false } });
    for (const t of temps) backend.disposeData(t.dataId);
    if (outShape !== null) out.shape = outShape;
    return out;
  };
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({ ...original, kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  stock = original;
}

/** Restore the stock kernel. */
export function disableWasmMatMulFastPath(): void {
  if (stock === null) return;
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel(stock);
  stock = null;
}
