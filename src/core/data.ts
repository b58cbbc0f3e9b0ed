import * as tf from '@tensorflow/tfjs-core';
import { MLP } from './mlp.js';
import { Rng, randomNormal } from '../util/random.js';
import { checkDims, checkInteger, checkNoNullFields, checkPositiveFinite, checkPositiveInt, invalid } from '../util/validate.js';
import { checkAllocation } from '../runtime/memory-budget.js';

/** Inputs and targets of a regression task. */
export interface Regression {
  x: tf.Tensor2D;
  y: tf.Tensor2D;
}

/** Options of {@link randomRegression}. */
export interface RandomRegressionOptions {
  samples: number;
  inputDim: number;
  outputDim: number;
  seed?: number;
}

/**
 * The reference's data: X, y ~ N(0, 1), independent. There is nothing to learn; the best
 * any model can do is predict the mean, an MSE of about 1.
 */
export function randomRegression(options: RandomRegressionOptions): Regression {
  const where = 'randomRegression';
  if (options === null || typeof options !== 'object') invalid(where, 'options', options, 'an options object { samples, inputDim, outputDim, seed? }');
  checkNoNullFields(where, options);
  const samples = checkPositiveInt(where, 'samples', options.samples);
  const inputDim = checkPositiveInt(where, 'inputDim', options.inputDim);
  const outputDim = checkPositiveInt(where, 'outputDim', options.outputDim);
  const rng = new Rng(checkInteger(where, 'seed', options.seed ?? 0));
  checkAllocation(where, [
    { what: `x [${samples}, ${inputDim}]`, elements: samples * inputDim },
    { what: `y [${samples}, ${outputDim}]`, elements: samples * outputDim },
  ]);
  const x = randomNormal<tf.Rank.R2>([samples, inputDim], rng);
  const y = randomNormal<tf.Rank.R2>([samples, outputDim], rng);
  return { x, y };
}

/** Options of {@link lowRankShiftTask}. */
export interface LowRankShiftOptions {
  /** Layer sizes of the teacher network, e.g. [32, 64, 64, 8]. */
  dims: readonly number[];
  /** Rank k of the weight change on every layer. */
  shiftRank: number;
  /** Training samples. */
  samples: number;
  /** Held-out samples (default: samples / 4, at least 1). */
  testSamples?: number;
  /** ‖ΔW‖ relative to ‖W‖ on each layer (default 0.5). */
  shiftScale?: number;
  /** How many shifted tasks to draw on the same base (default 1). */
  tasks?: number;
  seed?: number;
}

/** One shifted task: the base with W_l + ΔW_l in every layer. */
export interface ShiftedTask {
  /** The weight change ΔW_l = U_l·V_l `[in, out]` of each layer, of rank `shiftRank`. */
  deltas: tf.Tensor2D[];
  /** Targets on the training inputs. */
  y: tf.Tensor2D;
  /** Targets on the held-out inputs. */
  yTest: tf.Tensor2D;
}

/** A teacher–student task whose targets differ from a known base by rank-k changes. */
export interface LowRankShiftTask {
  /** The base teacher (He-initialised MLP). Adapting a copy of it can reach zero loss at rank ≥ k. */
  base: MLP;
  shiftRank: number;
  x: tf.Tensor2D;
  /** base(x): the task the base was made for. */
  yBase: tf.Tensor2D;
  xTest: tf.Tensor2D;
  yTestBase: tf.Tensor2D;
  /** Every shifted task (`tasks` of them), sharing the base and the inputs. */
  tasks: ShiftedTask[];
  /** The first task's deltas, targets and held-out targets. */
  deltas: tf.Tensor2D[];
  yShifted: tf.Tensor2D;
  yTestShifted: tf.Tensor2D;
  /** Free every tensor of the task, the base network included. */
  dispose(): void;
}

/**
 * A teacher–student task: a random base network, and the same network with a weight change
 * of known rank k on every layer. A LoRA student built on the base can represent the
 * shifted teacher exactly once its rank reaches k, so a rank sweep shows what rank buys.
 */
export function lowRankShiftTask(options: LowRankShiftOptions): LowRankShiftTask {
  const where = 'lowRankShiftTask';
  if (options === null || typeof options !== 'object') invalid(where, 'options', options, 'an options object { dims, shiftRank, samples, … }');
  checkNoNullFields(where, options);
  const dims = checkDims(where, options.dims);
  const maxRank = Math.min(...dims);
  const k = checkPositiveInt(where, 'shiftRank', options.shiftRank, maxRank, `the narrowest layer (${maxRank})`);
  const samples = checkPositiveInt(where, 'samples', options.samples);
  const testSamples = checkPositiveInt(where, 'testSamples', options.testSamples ?? Math.max(1, Math.floor(samples / 4)));
  const shiftScale = checkPositiveFinite(where, 'shiftScale', options.shiftScale ?? 0.5);
  const count = checkPositiveInt(where, 'tasks', options.tasks ?? 1);
  const seed = checkInteger(where, 'seed', options.seed ?? 0);

  const rows = samples + testSamples;
  const out = dims[dims.length - 1];
  checkAllocation(where, [
    ...dims.slice(1).flatMap((o, i) => [
      { what: `base fc${i + 1} weight [${dims[i]}, ${o}]`, elements: dims[i] * o },
      { what: `base fc${i + 1} bias [${o}]`, elements: o },
      ...Array.from({ length: count }, (_, t) => ({ what: `task ${t} fc${i + 1} change [${dims[i]}, ${o}]`, elements: dims[i] * o })),
    ]),
    { what: `inputs [${rows}, ${dims[0]}]`, elements: rows * dims[0] },
    ...Array.from({ length: count + 1 }, (_, t) => ({ what: `targets ${t} [${rows}, ${out}]`, elements: rows * out })),
  ]);
  const rng = new Rng(seed);
  const base = new MLP(dims, { seed, init: 'he' });
  const x = randomNormal<tf.Rank.R2>([samples, dims[0]], rng);
  const xTest = randomNormal<tf.Rank.R2>([testSamples, dims[0]], rng);
  const tasks: ShiftedTask[] = [];
  for (let t = 0; t < count; t++) {
    // ΔW = shiftScale·U·V/√k with U ~ N(0, 2/in), V ~ N(0, 1): entries have shiftScale² times W's variance.
    const deltas = base.layers.map((layer) =>
      tf.tidy(() => {
        const U = randomNormal<tf.Rank.R2>([layer.inFeatures, k], rng, Math.sqrt(2 / layer.inFeatures));
        const V = randomNormal<tf.Rank.R2>([k, layer.outFeatures], rng);
        return tf.mul(tf.matMul(U, V), shiftScale / Math.sqrt(k)) as tf.Tensor2D;
      }),
    );
    const shifted = (input: tf.Tensor2D): tf.Tensor2D =>
      tf.tidy(() => {
        let h: tf.Tensor2D = input;
        base.layers.forEach((layer, i) => {
          h = tf.matMul(h, tf.add(layer.W, deltas[i]));
          if (layer.b !== undefined) h = tf.add(h, layer.b);
          if (i < base.layers.length - 1) h = tf.relu(h);
        });
        return h;
      });
    tasks.push({ deltas, y: shifted(x), yTest: shifted(xTest) });
  }
  const yBase = base.predict(x) as tf.Tensor2D;
  const yTestBase = base.predict(xTest) as tf.Tensor2D;
  return {
    base,
    shiftRank: k,
    x,
    yBase,
    xTest,
    yTestBase,
    tasks,
    deltas: tasks[0].deltas,
    yShifted: tasks[0].y,
    yTestShifted: tasks[0].yTest,
    dispose() {
      base.dispose();
      tf.dispose([x, yBase, xTest, yTestBase, ...tasks.flatMap((t) => [...t.deltas, t.y, t.yTest])]);
    },
  };
}
