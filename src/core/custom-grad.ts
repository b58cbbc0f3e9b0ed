import * as tf from '@tensorflow/tfjs-core';

/** A forward computation with a hand-written backward pass, over a list of inputs. */
export type GradFunction = (
  inputs: tf.Tensor[],
  save: tf.GradSaveFunc,
) => { value: tf.Tensor; gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[] };

/**
 * `tf.customGrad` over a variable-length input list. Every tensor that needs a gradient
 * (variables included) must be an input: one captured in the closure gets none.
 */
export function withCustomGrad(f: GradFunction): (inputs: tf.Tensor[]) => tf.Tensor {
  const custom = tf.customGrad(((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args.pop() as tf.GradSaveFunc;
    return f(args as tf.Tensor[], save);
  }) as Parameters<typeof tf.customGrad>[0]);
  return (inputs) => custom(...inputs);
}

/** A forward computation whose backward pass gives one thunk per input, run only if needed. */
export type LazyGradFunction = (
  inputs: tf.Tensor[],
  save: tf.GradSaveFunc,
) => { value: tf.Tensor; gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => Array<() => tf.Tensor> };

interface KernelFuncEngine {
  runKernelFunc?: (params: {
    forwardFunc: (backend: unknown, save: tf.GradSaveFunc) => tf.Tensor;
    backwardsFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => Record<string, () => tf.Tensor>;
    inputs: Record<string, tf.Tensor>;
  }) => tf.Tensor;
}

/**
 * Like {@link withCustomGrad}, but each input's gradient is a thunk that tfjs calls only
 * when that input lies on a path to what is being differentiated: `tf.customGrad` computes
 * every input's gradient eagerly, so a layer could not skip its input gradient where
 * nothing upstream trains without knowing its place in the model (wrong inside nested
 * models). tfjs's own ops work this way; this goes through the engine method
 * `tf.customGrad` itself uses (`Engine.runKernelFunc`, tfjs 4.x).
 */
export function withLazyGrad(f: LazyGradFunction): (inputs: tf.Tensor[]) => tf.Tensor {
  return (inputs) => {
    const engine = tf.engine() as unknown as KernelFuncEngine;
    if (typeof engine.runKernelFunc !== 'function') {
      throw new Error('lora-tfjs: this tfjs-core has no Engine.runKernelFunc (lora-tfjs is pinned to tfjs 4.22, whose tf.customGrad uses it)');
    }
    let result: ReturnType<LazyGradFunction> | null = null;
    return engine.runKernelFunc({
      forwardFunc: (_backend, save) => {
        result = f(inputs, save);
        return result.value;
      },
      backwardsFunc: (dy, saved) => Object.fromEntries(result!.gradFunc(dy, saved).map((g, i) => [String(i), g])),
      inputs: Object.fromEntries(inputs.map((t, i) => [String(i), t])),
    });
  };
}
