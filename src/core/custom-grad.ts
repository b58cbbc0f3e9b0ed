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
