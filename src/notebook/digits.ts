import * as tf from '@tensorflow/tfjs-core';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Rng } from '../util/random.js';
import { moduleFile } from '../util/module-url.js';
import { checkInteger, checkOneOf, describe, invalid } from '../util/validate.js';

/**
 * The UCI optical handwritten digits (E. Alpaydin, C. Kaynak; 1,797 images of 8×8 pixels,
 * ten classes) as scikit-learn ships them, `notebooks/data/digits.csv.gz`: one image per
 * line, 64 pixel counts in 0..16 (row by row) and the label 0..9. Loading, a seeded split,
 * and the image transforms notebook 07 adapts to. Only `digitsTensors` and `accuracy`
 * touch tensors.
 */

/** Pixels per side of a digits image. */
export const DIGITS_SIDE = 8;
/** Pixels per digits image. */
export const DIGITS_PIXELS = DIGITS_SIDE * DIGITS_SIDE;
/** The largest pixel count in the data (a pixel is the number of set bits in a 4×4 block). */
export const DIGITS_MAX_VALUE = 16;

/** Images and labels. `images` holds `n` images of 64 pixels, row by row, scaled to [0, 1]. */
export interface Digits {
  images: Float32Array;
  labels: Int32Array;
  n: number;
}

/** Where the digits live in the repository (they are not in the npm package). */
const DIGITS_FILE = ['notebooks', 'data', 'digits.csv.gz'] as const;

/**
 * `notebooks/data/digits.csv.gz` of the checkout this module runs from (found by walking up
 * from it: src/notebook/ and dist/cjs/notebook/ sit at different depths), else of the
 * working folder or one above it.
 */
export function defaultDigitsPath(): string {
  const here = moduleFile();
  const starts = [here === null ? null : dirname(here), process.cwd()].filter((d): d is string => d !== null);
  for (const start of starts) {
    for (let dir = resolve(start); ; dir = dirname(dir)) {
      const file = join(dir, ...DIGITS_FILE);
      if (existsSync(file)) return file;
      if (dirname(dir) === dir) break;
    }
  }
  return join(process.cwd(), ...DIGITS_FILE);
}

/** Read the digits from a `.csv.gz` (or plain `.csv`) file, by default the repository's copy. */
export function loadDigits(path: string = defaultDigitsPath()): Digits {
  if (typeof path !== 'string' || path === '') invalid('loadDigits', 'path', path, 'a file path');
  if (!existsSync(path)) {
    throw new Error(`loadDigits: ${path} does not exist; the digits ship with the lora-tfjs repository (${DIGITS_FILE.join('/')}), not with the npm package: pass the path of a copy`);
  }
  const bytes = readFileSync(path);
  const gzipped = bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
  return parseDigitsCsv((gzipped ? gunzipSync(bytes) : bytes).toString('utf8'), path);
}

/** Parse the CSV text: 65 integers a line (64 pixels in 0..16, then the label in 0..9), no header. */
export function parseDigitsCsv(text: string, source = 'text'): Digits {
  if (typeof text !== 'string') invalid('parseDigitsCsv', 'text', text, 'a string');
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines.length === 0) throw new Error(`parseDigitsCsv: ${source} holds no rows; expected lines of 65 integers`);
  const n = lines.length;
  const images = new Float32Array(n * DIGITS_PIXELS);
  const labels = new Int32Array(n);
  lines.forEach((line, i) => {
    const fields = line.split(',');
    if (fields.length !== DIGITS_PIXELS + 1) {
      throw new Error(`parseDigitsCsv: ${source} line ${i + 1} has ${fields.length} fields; expected ${DIGITS_PIXELS + 1} (64 pixels and a label)`);
    }
    for (let j = 0; j <= DIGITS_PIXELS; j++) {
      const v = Number(fields[j]);
      const max = j < DIGITS_PIXELS ? DIGITS_MAX_VALUE : 9;
      if (fields[j].trim() === '' || !Number.isInteger(v) || v < 0 || v > max) {
        const what = j < DIGITS_PIXELS ? `pixel ${j}` : 'the label';
        throw new Error(`parseDigitsCsv: ${source} line ${i + 1}: ${what} = ${describe(fields[j])} is invalid; expected an integer in 0..${max}`);
      }
      if (j < DIGITS_PIXELS) images[i * DIGITS_PIXELS + j] = v / DIGITS_MAX_VALUE;
      else labels[i] = v;
    }
  });
  return { images, labels, n };
}

/** What `transformImages` can do to every image. */
export const DIGITS_TRANSFORMS = ['none', 'rotate90', 'rotate180', 'rotate270', 'mirror', 'invert'] as const;
export type DigitsTransform = (typeof DIGITS_TRANSFORMS)[number];

/**
 * A transformed copy of 8×8 images (row by row): `rotate90` turns each a quarter turn
 * counter-clockwise (numpy's `rot90`), `rotate180`/`rotate270` two and three quarter
 * turns, `mirror` flips left–right, `invert` maps a pixel v to 1 − v.
 */
export function transformImages(images: Float32Array, transform: DigitsTransform): Float32Array {
  const where = 'transformImages';
  if (!(images instanceof Float32Array) || images.length % DIGITS_PIXELS !== 0) {
    invalid(where, 'images', images, `a Float32Array of 64 pixels per image`);
  }
  checkOneOf(where, 'transform', transform, DIGITS_TRANSFORMS);
  const s = DIGITS_SIDE;
  const out = new Float32Array(images.length);
  // source pixel (row, column) of output pixel (i, j)
  const from: Record<DigitsTransform, (i: number, j: number) => number> = {
    none: (i, j) => i * s + j,
    rotate90: (i, j) => j * s + (s - 1 - i),
    rotate180: (i, j) => (s - 1 - i) * s + (s - 1 - j),
    rotate270: (i, j) => (s - 1 - j) * s + i,
    mirror: (i, j) => i * s + (s - 1 - j),
    invert: (i, j) => i * s + j,
  };
  const src = from[transform];
  for (let k = 0; k < images.length; k += DIGITS_PIXELS) {
    for (let i = 0; i < s; i++) {
      for (let j = 0; j < s; j++) {
        const v = images[k + src(i, j)];
        out[k + i * s + j] = transform === 'invert' ? 1 - v : v;
      }
    }
  }
  return out;
}

/**
 * A seeded random split of `0..n-1`: one index array per entry of `sizes`, then the rest
 * (possibly empty). Each array keeps the random order, so batches taken in order are mixed.
 */
export function splitIndices(n: number, sizes: readonly number[], seed: number): Int32Array[] {
  const where = 'splitIndices';
  if (!Number.isInteger(n) || n < 0) invalid(where, 'n', n, 'a non-negative integer');
  if (!Array.isArray(sizes) || !sizes.every((s) => Number.isInteger(s) && s >= 0)) invalid(where, 'sizes', sizes, 'an array of non-negative integers');
  const total = sizes.reduce((a, b) => a + b, 0);
  if (total > n) invalid(where, 'sizes', sizes, `sizes that add up to at most n = ${n} (they add up to ${total})`);
  checkInteger(where, 'seed', seed);
  const perm = new Rng(seed).permutation(n);
  const parts: Int32Array[] = [];
  let at = 0;
  for (const size of sizes) {
    parts.push(perm.slice(at, at + size));
    at += size;
  }
  parts.push(perm.slice(at));
  return parts;
}

/** The images and labels at `indices` (in that order), optionally transformed. */
export function digitsSubset(digits: Digits, indices: Int32Array | readonly number[], transform: DigitsTransform = 'none'): Digits {
  const where = 'digitsSubset';
  checkDigits(where, digits);
  const idx = Array.from(indices as ArrayLike<number>);
  const bad = idx.find((k) => !Number.isInteger(k) || k < 0 || k >= digits.n);
  if (bad !== undefined) invalid(where, 'indices', bad, `indices in 0..${digits.n - 1}`);
  checkOneOf(where, 'transform', transform, DIGITS_TRANSFORMS);
  const images = new Float32Array(idx.length * DIGITS_PIXELS);
  const labels = new Int32Array(idx.length);
  idx.forEach((k, i) => {
    images.set(digits.images.subarray(k * DIGITS_PIXELS, (k + 1) * DIGITS_PIXELS), i * DIGITS_PIXELS);
    labels[i] = digits.labels[k];
  });
  return { images: transform === 'none' ? images : transformImages(images, transform), labels, n: idx.length };
}

/** How many images of each class 0..9. */
export function classCounts(labels: Int32Array): number[] {
  if (!(labels instanceof Int32Array)) invalid('classCounts', 'labels', labels, 'an Int32Array of digit labels 0–9');
  const counts = new Array<number>(10).fill(0);
  labels.forEach((l, i) => {
    if (l < 0 || l > 9) invalid('classCounts', `labels[${i}]`, l, 'a digit label 0–9');
    counts[l] += 1;
  });
  return counts;
}

/** Model inputs `x` `[n, 8, 8, 1]` (NHWC) and one-hot targets `y` `[n, 10]`; the caller disposes them. */
export function digitsTensors(digits: Digits): { x: tf.Tensor4D; y: tf.Tensor2D } {
  checkDigits('digitsTensors', digits);
  const x = tf.tensor4d(digits.images, [digits.n, DIGITS_SIDE, DIGITS_SIDE, 1]);
  const y = tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(digits.labels, 'int32'), 10), 'float32') as tf.Tensor2D);
  return { x, y };
}

/** The fraction of rows of `scores` `[n, classes]` whose largest entry is at the row's label. */
export function accuracy(scores: tf.Tensor, labels: Int32Array): number {
  const where = 'accuracy';
  if (!(scores instanceof tf.Tensor) || scores.rank !== 2) invalid(where, 'scores', scores, 'a tensor of shape [n, classes]');
  if (!(labels instanceof Int32Array) || labels.length !== scores.shape[0]) {
    invalid(where, 'labels', labels, `an Int32Array of ${scores.shape[0]} labels (one per row of scores)`);
  }
  if (labels.length === 0) return 0;
  const predicted = tf.tidy(() => tf.argMax(scores, 1).dataSync());
  let correct = 0;
  for (let i = 0; i < labels.length; i++) if (predicted[i] === labels[i]) correct += 1;
  return correct / labels.length;
}

function checkDigits(where: string, digits: Digits): void {
  const ok =
    digits !== null &&
    typeof digits === 'object' &&
    digits.images instanceof Float32Array &&
    digits.labels instanceof Int32Array &&
    Number.isInteger(digits.n) &&
    digits.images.length === digits.n * DIGITS_PIXELS &&
    digits.labels.length === digits.n;
  if (!ok) invalid(where, 'digits', digits, '{ images: Float32Array (n × 64), labels: Int32Array (n), n }');
}

/** Image `index` of `images` as 8 lines of text, darkest pixels as `@` (for printing a digit). */
export function asciiDigit(images: Float32Array, index = 0): string {
  const where = 'asciiDigit';
  if (!(images instanceof Float32Array) || images.length % DIGITS_PIXELS !== 0) invalid(where, 'images', images, 'a Float32Array of 64 pixels per image');
  const count = images.length / DIGITS_PIXELS;
  if (!Number.isInteger(index) || index < 0 || index >= count) invalid(where, 'index', index, `an image index in 0..${count - 1}`);
  const ramp = ' .:-=+*#%@';
  const lines: string[] = [];
  for (let i = 0; i < DIGITS_SIDE; i++) {
    let line = '';
    for (let j = 0; j < DIGITS_SIDE; j++) {
      const v = Math.min(1, Math.max(0, images[index * DIGITS_PIXELS + i * DIGITS_SIDE + j]));
      line += ramp[Math.round(v * (ramp.length - 1))].repeat(2);
    }
    lines.push(line);
  }
  return lines.join('\n');
}
