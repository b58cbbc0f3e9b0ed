import * as tf from '@tensorflow/tfjs-core';
import type { Model } from './model.js';
import { Rng } from '../util/random.js';
import { checkFloatTensor, checkInteger, checkLiveTensor, checkOneOf, checkPositiveFinite, checkPositiveInt, invalid } from '../util/validate.js';
import { checkAllocation } from '../runtime/memory-budget.js';
import { lockForTraining } from './training-lock.js';

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
  /** Called after every step with its 0-based index and loss (awaited when it returns a promise). */
  onStep?: (step: number, loss: number) => unknown;
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
 *
 * Every option is checked before the first step. A step whose loss or gradients are not
 * finite (a NaN in the data, a learning rate that diverged) is not applied: `train` throws
 * {@link NonFiniteLossError} naming the step, with the weights as they were before it.
 * While it runs, the model refuses state changes (merge, switch, add, delete, dispose) and
 * a second concurrent `train`.
 */
export async function train(model: Model, options: TrainOptions): Promise<TrainResult> {
  const plan = checkTrainOptions(model, options);
  const variables = model.trainableVariables();
  const trainable = variables.reduce((n, v) => n + v.size, 0);
  // Adam's two moments, one set of gradients and the step's snapshot live beside the
  // variables; a step's activations (up to ~5 per layer output, forward and backward) too.
  // Checked here: a refusal inside tf.variableGrads would leave its tape's tensors behind.
  const widths = model.dims.slice(1).reduce((a, b) => a + b, 0);
  checkAllocation('train', [
    { what: "Adam's moments", elements: 2 * trainable },
    { what: 'the gradients', elements: trainable },
    { what: 'the weights before each step (to undo a bad one)', elements: trainable },
    { what: `one step's activations (batch ${plan.batchSize})`, elements: 5 * plan.batchSize * widths },
  ]);
  // A LoRAMLP's layers are locked too: onStep could reach them through model.layers.
  const layers = (model as unknown as { layers?: unknown }).layers;
  const owners: object[] = [model, ...(Array.isArray(layers) ? (layers as object[]) : [])];
  const release = lockForTraining('train', owners);
  const optimizer = tf.train.adam(plan.learningRate, 0.9, 0.999, 1e-8);
  const rng = new Rng(plan.seed);
  const losses: number[] = [];
  const started = performance.now();
  // Adam reads its learningRate field on every step, so a schedule is an assignment.
  const adam = optimizer as unknown as { learningRate: number };
  try {
    for (const batch of batches(plan, rng)) {
      const step = losses.length;
      if (plan.schedule === 'cosine') {
        adam.learningRate = 0.5 * plan.learningRate * (1 + Math.cos((Math.PI * step) / plan.totalSteps));
      }
      // onStep may have disposed the data: check before the tape starts.
      checkFloatTensor('train', 'x', options.x, [plan.n, model.dims[0]]);
      checkFloatTensor('train', 'y', options.y, [plan.n, model.dims[model.dims.length - 1]]);
      const { value, grads } = tf.variableGrads(
        () =>
          tf.tidy(() => {
            const idx = tf.tensor1d(batch, 'int32');
            return mse(model.apply(tf.gather(options.x, idx), { training: true }), tf.gather(options.y, idx));
          }),
        variables,
      );
      // The step is applied, then checked in one read: the loss, the gradients and the
      // updated weights (a finite gradient can still overflow a weight). A bad step is undone.
      const before = variables.map((v) => tf.clone(v));
      optimizer.applyGradients(grads as Parameters<typeof optimizer.applyGradients>[0]);
      const check = tf.tidy(() => {
        const finite = [...Object.values(grads), ...variables].map((t) => tf.all(tf.isFinite(t)));
        return tf.stack([value, tf.cast(tf.all(tf.stack(finite)), 'float32')]);
      });
      tf.dispose(Object.values(grads));
      value.dispose();
      const [loss, allFinite] = await check.data();
      check.dispose();
      if (!Number.isFinite(loss) || allFinite !== 1) {
        variables.forEach((v, i) => v.assign(before[i]));
        tf.dispose(before);
        throw new NonFiniteLossError(step, loss);
      }
      tf.dispose(before);
      losses.push(loss);
      await plan.onStep?.(step, loss);
    }
  } finally {
    optimizer.dispose();
    release();
  }
  return { losses, msPerStep: (performance.now() - started) / Math.max(1, losses.length) };
}

/** A training step whose loss or gradients were NaN or ±Infinity; it was not applied. */
export class NonFiniteLossError extends Error {
  /** The 0-based index of the step that was not applied. */
  readonly step: number;
  readonly loss: number;
  constructor(step: number, loss: number) {
    const what = Number.isFinite(loss) ? `the gradients or the updated weights of step ${step} are not finite (loss ${loss})` : `the loss of step ${step} is ${loss}`;
    const kept = step === 0 ? 'the weights are as they were before train()' : `the weights are those after step ${step - 1}`;
    super(
      `train: ${what}; the step was not applied, so ${kept}. ` +
        'Check the data for NaN/Infinity and lower learningRate if the loss was growing.',
    );
    this.name = 'NonFiniteLossError';
    this.step = step;
    this.loss = loss;
  }
}

/** The MSE of the model's predictions on (x, y): x `[n, in]`, y `[n, out]` (same rows; no broadcasting). */
export function evaluate(model: Model, x: tf.Tensor, y: tf.Tensor): number {
  checkModel('evaluate', model);
  const first = model.dims[0];
  const last = model.dims[model.dims.length - 1];
  checkLiveTensor('evaluate', 'x', x, `a live tensor of shape [n, ${first}]`);
  if (x.rank !== 2 || x.shape[1] !== first) invalid('evaluate', 'x', x, `a tensor of shape [n, ${first}]`);
  checkLiveTensor('evaluate', 'y', y, `a live tensor of shape [${x.shape[0]}, ${last}]`);
  if (y.rank !== 2 || y.shape[0] !== x.shape[0] || y.shape[1] !== last) {
    invalid('evaluate', 'y', y, `a tensor of shape [${x.shape[0]}, ${last}] (one target row per row of x)`);
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
  onStep?: (step: number, loss: number) => unknown;
}

const TRAIN_FIELDS = ['x', 'y', 'steps', 'epochs', 'batchSize', 'learningRate', 'seed', 'schedule', 'onStep'];

function checkTrainOptions(model: Model, o: TrainOptions): TrainPlan {
  checkModel('train', model);
  if (o === null || typeof o !== 'object') invalid('train', 'options', o, 'an options object');
  const unknown = Object.keys(o).filter((k) => !TRAIN_FIELDS.includes(k));
  if (unknown.length > 0) invalid('train', 'options', unknown, `only the fields ${TRAIN_FIELDS.join(', ')}`);
  const inF = model.dims[0];
  const outF = model.dims[model.dims.length - 1];
  checkFloatTensor('train', 'x', o.x, [null, inF]);
  const n = (o.x as tf.Tensor).shape[0];
  checkFloatTensor('train', 'y', o.y, [n, outF]);
  if (n === 0) invalid('train', 'x', o.x, 'at least one row');
  if ((o.steps === undefined) === (o.epochs === undefined)) {
    invalid('train', 'steps/epochs', { steps: o.steps, epochs: o.epochs }, 'exactly one of steps and epochs');
  }
  if (o.steps !== undefined) checkPositiveInt('train', 'steps', o.steps);
  if (o.epochs !== undefined) checkPositiveInt('train', 'epochs', o.epochs);
  for (const k of TRAIN_FIELDS) {
    if ((o as unknown as Record<string, unknown>)[k] === null) invalid('train', k, null, 'a value (leave the field out for its default)');
  }
  const batchSize = checkPositiveInt('train', 'batchSize', o.batchSize ?? Math.min(32, n), n, `the number of samples (${n})`);
  const learningRate = checkPositiveFinite('train', 'learningRate', o.learningRate ?? 1e-3);
  // Adam computes in float32: a rate that is Infinity there would wreck every weight at once.
  if (!Number.isFinite(Math.fround(learningRate))) invalid('train', 'learningRate', learningRate, 'a rate that is finite in float32 (below 3.4e38)');
  const seed = checkInteger('train', 'seed', o.seed ?? 0);
  if (model.merged === true) {
    throw new Error('train: the model has a merged adapter; call unmerge() before training');
  }
  if (model.trainableVariables().length === 0) {
    throw new Error('train: the model has no trainable variables (no active adapter?)');
  }
  const schedule = checkOneOf('train', 'schedule', o.schedule ?? 'constant', ['constant', 'cosine'] as const);
  if (o.onStep !== undefined && typeof o.onStep !== 'function') invalid('train', 'onStep', o.onStep, 'a function (step, loss) => void');
  // Bad rows would only show as a NaN loss at whichever step first draws them: say which now.
  firstNonFinite('x', o.x);
  firstNonFinite('y', o.y);
  const totalSteps = o.steps ?? (o.epochs ?? 0) * Math.ceil(n / batchSize);
  return { n, totalSteps, schedule, steps: o.steps, epochs: o.epochs, batchSize, learningRate, seed, onStep: o.onStep };
}

function checkModel(where: string, model: unknown): void {
  const m = model as Model | null;
  if (m === null || typeof m !== 'object' || typeof m.trainableVariables !== 'function' || typeof m.apply !== 'function' || !Array.isArray(m.dims)) {
    invalid(where, 'model', model, 'a model (LoRAMLP, MLP or another Model)');
  }
}

function firstNonFinite(name: string, t: tf.Tensor2D): void {
  const bad = tf.tidy(() => tf.logicalNot(tf.all(tf.isFinite(t), 1)));
  const rows = Array.from(bad.dataSync());
  bad.dispose();
  const i = rows.indexOf(1);
  if (i >= 0) {
    const count = rows.filter((v) => v === 1).length;
    invalid('train', name, t, `finite values (row ${i}${count > 1 ? ` and ${count - 1} more rows hold` : ' holds'} NaN or ±Infinity)`);
  }
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
