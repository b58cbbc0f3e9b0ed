import * as tf from '@tensorflow/tfjs-core';
import type { Model } from './model.js';
import { Rng } from '../util/random.js';
import { checkInteger, checkOneOf, checkPositiveFinite, checkPositiveInt, invalid } from '../util/validate.js';

/** Options of {@link train}. Give exactly one of `steps` and `epochs`. */
export interface TrainOptions {
  /** Inputs `[n, in]`. */
  x: tf.Tensor2D;
  /** Targets `[n, out]`. */
  y: tf.Tensor2D;
  /** Number of optimizer steps, each on a fresh random minibatch (as the reference). */
  steps?: number;
  /** Number of passes over a shuffled copy of the data. */
  epochs?: number;
  /** Minibatch size (default 32, or n when smaller). */
  batchSize?: number;
  /** Adam's learning rate (default 1e-3). */
  learningRate?: number;
  /** Seed of the minibatch order (default 0). */
  seed?: number;
  /** `constant` (the reference) or `cosine`: decays the rate to 0 over the run. */
  schedule?: 'constant' | 'cosine';
  /** Called after every step with its 0-based index and loss. */
  onStep?: (step: number, loss: number) => void;
}

/** What {@link train} returns. */
export interface TrainResult {
  /** The minibatch MSE of every step. */
  losses: number[];
  /** Mean wall time of one step, milliseconds. */
  msPerStep: number;
}

/** Mean squared error, as PyTorch's `F.mse_loss` (mean over every element). */
export function mse(prediction: tf.Tensor, target: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.mean(tf.squaredDifference(prediction, target)) as tf.Scalar);
}

/**
 * Minimise the MSE with Adam over the model's trainable variables only (frozen weights
 * never enter the gradient computation). Minibatches are drawn from a seeded generator, so
 * a run repeats exactly. The optimizer and its state are freed before this returns.
 */
export async function train(model: Model, options: TrainOptions): Promise<TrainResult> {
  const plan = checkTrainOptions(model, options);
  const variables = model.trainableVariables();
  const optimizer = tf.train.adam(plan.learningRate, 0.9, 0.999, 1e-8);
  const rng = new Rng(plan.seed);
  const losses: number[] = [];
  const started = performance.now();
  // Adam reads its learningRate field on every step, so a schedule is an assignment.
  const adam = optimizer as unknown as { learningRate: number };
  try {
    for (const batch of batches(plan, rng)) {
      if (plan.schedule === 'cosine') {
        adam.learningRate = 0.5 * plan.learningRate * (1 + Math.cos((Math.PI * losses.length) / plan.totalSteps));
      }
      const loss = optimizer.minimize(
        () =>
          tf.tidy(() => {
            const idx = tf.tensor1d(batch, 'int32');
            return mse(model.apply(tf.gather(options.x, idx), { training: true }), tf.gather(options.y, idx));
          }),
        true,
        variables,
      ) as tf.Scalar;
      const value = (await loss.data())[0];
      loss.dispose();
      losses.push(value);
      options.onStep?.(losses.length - 1, value);
    }
  } finally {
    optimizer.dispose();
  }
  return { losses, msPerStep: (performance.now() - started) / Math.max(1, losses.length) };
}

/** The MSE of the model's predictions on (x, y). */
export function evaluate(model: Model, x: tf.Tensor, y: tf.Tensor): number {
  const last = model.dims[model.dims.length - 1];
  if (!(y instanceof tf.Tensor) || y.shape[y.rank - 1] !== last) {
    invalid('evaluate', 'y', y, `a tensor of shape [..., ${last}]`);
  }
  const loss = tf.tidy(() => mse(model.predict(x), y));
  const value = loss.dataSync()[0];
  loss.dispose();
  return value;
}

interface TrainPlan {
  n: number;
  totalSteps: number;
  schedule: 'constant' | 'cosine';
  steps?: number;
  epochs?: number;
  batchSize: number;
  learningRate: number;
  seed: number;
}

function checkTrainOptions(model: Model, o: TrainOptions): TrainPlan {
  if (o === null || typeof o !== 'object') invalid('train', 'options', o, 'an options object');
  const inF = model.dims[0];
  const outF = model.dims[model.dims.length - 1];
  if (!(o.x instanceof tf.Tensor) || o.x.rank !== 2 || o.x.shape[1] !== inF) {
    invalid('train', 'x', o.x, `a tensor of shape [n, ${inF}]`);
  }
  const n = o.x.shape[0];
  if (!(o.y instanceof tf.Tensor) || o.y.rank !== 2 || o.y.shape[0] !== n || o.y.shape[1] !== outF) {
    invalid('train', 'y', o.y, `a tensor of shape [${n}, ${outF}] (one target row per input row)`);
  }
  if ((o.steps === undefined) === (o.epochs === undefined)) {
    invalid('train', 'steps/epochs', { steps: o.steps, epochs: o.epochs }, 'exactly one of steps and epochs');
  }
  if (o.steps !== undefined) checkPositiveInt('train', 'steps', o.steps);
  if (o.epochs !== undefined) checkPositiveInt('train', 'epochs', o.epochs);
  const batchSize = checkPositiveInt('train', 'batchSize', o.batchSize ?? Math.min(32, n), n, `the number of samples (${n})`);
  const learningRate = checkPositiveFinite('train', 'learningRate', o.learningRate ?? 1e-3);
  const seed = checkInteger('train', 'seed', o.seed ?? 0);
  if (model.merged === true) {
    throw new Error('train: the model has a merged adapter; call unmerge() before training');
  }
  if (model.trainableVariables().length === 0) {
    throw new Error('train: the model has no trainable variables (no active adapter?)');
  }
  const schedule = checkOneOf('train', 'schedule', o.schedule ?? 'constant', ['constant', 'cosine'] as const);
  const totalSteps = o.steps ?? (o.epochs ?? 0) * Math.ceil(n / batchSize);
  return { n, totalSteps, schedule, steps: o.steps, epochs: o.epochs, batchSize, learningRate, seed };
}

/** Row indices of each minibatch: random draws per step, or shuffled epochs. */
function* batches(plan: TrainPlan, rng: Rng): Generator<Int32Array> {
  if (plan.steps !== undefined) {
    for (let s = 0; s < plan.steps; s++) yield rng.sample(plan.n, plan.batchSize);
    return;
  }
  for (let e = 0; e < (plan.epochs ?? 0); e++) {
    const order = rng.permutation(plan.n);
    for (let i = 0; i < plan.n; i += plan.batchSize) yield order.subarray(i, i + plan.batchSize);
  }
}
