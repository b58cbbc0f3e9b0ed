import * as tf from '@tensorflow/tfjs-core';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/index.js';
import {
  DIGITS_PIXELS,
  accuracy,
  asciiDigit,
  classCounts,
  defaultDigitsPath,
  digitsSubset,
  digitsTensors,
  loadDigits,
  parseDigitsCsv,
  splitIndices,
  transformImages,
} from '../src/notebook/index.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dataFile = join(root, 'notebooks', 'data', 'digits.csv.gz');

/** An 8×8 image whose pixel (r, c) is r·8 + c (scaled by 1/64, so all differ). */
const ramp = () => Float32Array.from({ length: 64 }, (_, k) => k / 64);
const at = (img: Float32Array, r: number, c: number) => img[r * 8 + c];

describe('loadDigits: the repository copy of the UCI digits', () => {
  it('reads 1,797 images of 64 pixels in [0, 1] and their labels', () => {
    const d = loadDigits(dataFile);
    expect(d.n).toBe(1797);
    expect(d.images).toBeInstanceOf(Float32Array);
    expect(d.labels).toBeInstanceOf(Int32Array);
    expect(d.images.length).toBe(1797 * 64);
    expect(classCounts(d.labels)).toEqual([178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    expect(Math.min(...d.images)).toBe(0);
    expect(Math.max(...d.images)).toBe(1);
    // The first image of scikit-learn's load_digits(): a 0, pixel row 0 = 0 0 5 13 9 1 0 0.
    expect(d.labels[0]).toBe(0);
    expect(Array.from(d.images.subarray(0, 8))).toEqual([0, 0, 5, 13, 9, 1, 0, 0].map((v) => v / 16));
    expect(Array.from(d.labels.subarray(0, 10))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('defaults to notebooks/data/digits.csv.gz of the checkout', () => {
    expect(resolve(defaultDigitsPath())).toBe(dataFile);
    const d = loadDigits();
    expect(d.n).toBe(1797);
    expect(d.images).toEqual(loadDigits(dataFile).images);
  });

  it('finds the same file from the built CommonJS entry (dist/cjs/notebook sits deeper than src/notebook), from any working folder', () => {
    for (const cwd of [join(root, 'notebooks'), tmpdir()]) {
      const out = execFileSync(process.execPath, ['-e', `console.log(require(${JSON.stringify(join(root, 'dist', 'cjs', 'notebook', 'index.js'))}).defaultDigitsPath())`], { cwd, encoding: 'utf8' });
      expect(out.trim()).toBe(dataFile);
    }
  });

  it('says where the digits come from when the file is missing', () => {
    const missing = join(tmpdir(), 'no-such-digits.csv.gz');
    expect(() => loadDigits(missing)).toThrow(`loadDigits: ${missing} does not exist; the digits ship with the lora-tfjs repository (notebooks/data/digits.csv.gz), not with the npm package: pass the path of a copy`);
  });

  it('reads plain and gzipped CSV alike, and names the line of a bad row', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lora-digits-'));
    try {
      const row = (label: number) => [...Array.from({ length: 64 }, (_, k) => k % 17), label].join(',');
      const text = `${row(3)}\r\n${row(7)}\n\n`;
      writeFileSync(join(dir, 'd.csv'), text);
      writeFileSync(join(dir, 'd.csv.gz'), gzipSync(text));
      const plain = loadDigits(join(dir, 'd.csv'));
      expect(plain.n).toBe(2);
      expect(Array.from(plain.labels)).toEqual([3, 7]);
      expect(plain.images[16]).toBe(1); // 16/16
      expect(loadDigits(join(dir, 'd.csv.gz'))).toEqual(plain);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const good = Array.from({ length: 64 }, () => '0').join(',');
    expect(() => parseDigitsCsv(`${good},1\n${good}`)).toThrow('parseDigitsCsv: text line 2 has 64 fields; expected 65');
    expect(() => parseDigitsCsv(`${good},10`)).toThrow('line 1: the label = "10" is invalid; expected an integer in 0..9');
    expect(() => parseDigitsCsv(`17,${good.slice(2)},1`)).toThrow('line 1: pixel 0 = "17" is invalid; expected an integer in 0..16');
    expect(() => parseDigitsCsv(`${good.slice(0, -1)}x,1`)).toThrow('pixel 63 = "x" is invalid');
    expect(() => parseDigitsCsv('\n')).toThrow('holds no rows');
    expect(() => loadDigits('')).toThrow('loadDigits: path = "" is invalid');
  });
});

describe('transformImages (pure)', () => {
  it('rotates a quarter turn counter-clockwise as numpy.rot90 does', () => {
    const img = ramp();
    const r = transformImages(img, 'rotate90');
    // rot90: out[i][j] = in[j][7 - i]; the top-right corner goes to the top-left.
    expect(at(r, 0, 0)).toBe(at(img, 0, 7));
    expect(at(r, 7, 0)).toBe(at(img, 0, 0));
    expect(at(r, 2, 5)).toBe(at(img, 5, 5));
    expect(at(r, 1, 6)).toBe(at(img, 6, 6));
    expect(at(r, 3, 1)).toBe(at(img, 1, 4));
    const twice = transformImages(r, 'rotate90');
    expect(twice).toEqual(transformImages(img, 'rotate180'));
    expect(transformImages(twice, 'rotate90')).toEqual(transformImages(img, 'rotate270'));
    expect(transformImages(transformImages(twice, 'rotate90'), 'rotate90')).toEqual(img);
  });

  it('mirrors left–right, inverts intensities, and works image by image', () => {
    const two = new Float32Array(128);
    two.set(ramp(), 0);
    two.set(ramp().map((v) => 1 - v), 64);
    const m = transformImages(two, 'mirror');
    expect(at(m, 2, 0)).toBe(at(two, 2, 7));
    expect(m[64 + 3 * 8 + 1]).toBe(two[64 + 3 * 8 + 6]);
    expect(transformImages(m, 'mirror')).toEqual(two);
    const inv = transformImages(two, 'invert');
    expect(inv[5]).toBeCloseTo(1 - two[5], 7);
    expect(inv[64 + 5]).toBeCloseTo(two[5], 7);
    expect(transformImages(two, 'none')).toEqual(two);
    expect(transformImages(two, 'none')).not.toBe(two); // always a copy
    expect(() => transformImages(new Float32Array(10), 'mirror')).toThrow('transformImages: images = ');
    expect(() => transformImages(two, 'flip' as never)).toThrow('transformImages: transform = "flip" is invalid; expected one of "none", "rotate90"');
  });
});

describe('asciiDigit', () => {
  it('draws 8 lines of 16 characters, blank for 0 and @ for 1, image by image', () => {
    const two = new Float32Array(128);
    two[0] = 1;
    two[7] = 0.5;
    two[64 + 63] = 1;
    const first = asciiDigit(two).split('\n');
    expect(first).toHaveLength(8);
    expect(first.every((l) => l.length === 16)).toBe(true);
    expect(first[0]).toBe('@@            ++'); // 0.5 → the middle of " .:-=+*#%@"
    expect(first.slice(1).every((l) => l.trim() === '')).toBe(true);
    expect(asciiDigit(two, 1).split('\n')[7]).toBe('              @@');
    expect(() => asciiDigit(two, 2)).toThrow('asciiDigit: index = 2 is invalid; expected an image index in 0..1');
    expect(asciiDigit(loadDigits(dataFile).images, 0).split('\n')[1]).toBe('    ##%%**%%--  '); // row 1 of the first 0: 0 0 13 15 10 15 5 0
  });
});

describe('splitIndices and digitsSubset (pure, seeded)', () => {
  it('splits 0..n-1 into disjoint random parts plus the rest, the same for the same seed', () => {
    const [a, b, rest] = splitIndices(100, [30, 20], 4);
    expect([a.length, b.length, rest.length]).toEqual([30, 20, 50]);
    const all = [...a, ...b, ...rest].sort((x, y) => x - y);
    expect(all).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(splitIndices(100, [30, 20], 4)).toEqual([a, b, rest]);
    expect(splitIndices(100, [30, 20], 5)[0]).not.toEqual(a);
    expect(Array.from(a)).not.toEqual([...a].sort((x, y) => x - y)); // random order kept
    expect(splitIndices(5, [5], 0)[1].length).toBe(0);
    expect(() => splitIndices(10, [6, 5], 0)).toThrow('splitIndices: sizes = [6, 5] is invalid; expected sizes that add up to at most n = 10 (they add up to 11)');
    expect(() => splitIndices(10, [1.5], 0)).toThrow('splitIndices: sizes = [1.5] is invalid');
    expect(() => splitIndices(10, [1], 0.5)).toThrow('splitIndices: seed = 0.5 is invalid; expected an integer');
  });

  it('takes the images at the indices, in order, optionally transformed', () => {
    const d = loadDigits(dataFile);
    const s = digitsSubset(d, [5, 0, 1796]);
    expect(s.n).toBe(3);
    expect(Array.from(s.labels)).toEqual([d.labels[5], d.labels[0], d.labels[1796]]);
    expect(s.images.subarray(64, 128)).toEqual(d.images.subarray(0, 64));
    const rotated = digitsSubset(d, Int32Array.from([5, 0]), 'rotate90');
    expect(rotated.images.subarray(0, 64)).toEqual(transformImages(d.images.slice(5 * 64, 6 * 64), 'rotate90'));
    expect(rotated.labels).toEqual(Int32Array.from([d.labels[5], d.labels[0]]));
    expect(() => digitsSubset(d, [1797])).toThrow('digitsSubset: indices = 1797 is invalid; expected indices in 0..1796');
    expect(() => digitsSubset({ images: new Float32Array(3), labels: new Int32Array(1), n: 1 }, [0])).toThrow('digitsSubset: digits = ');
  });
});

describe('digitsTensors and accuracy', () => {
  beforeAll(async () => {
    await initBackend();
  });
  afterAll(() => tf.disposeVariables());

  it('makes NHWC inputs and one-hot targets; accuracy counts argmax hits; no tensor leaks', () => {
    const d = digitsSubset(loadDigits(dataFile), [0, 1, 2, 3]);
    const before = tf.memory().numTensors;
    const { x, y } = digitsTensors(d);
    expect(x.shape).toEqual([4, 8, 8, 1]);
    expect(y.shape).toEqual([4, 10]);
    expect(y.dtype).toBe('float32');
    expect(Array.from(x.dataSync())).toEqual(Array.from(d.images));
    expect((y.arraySync() as number[][]).map((row) => row.indexOf(1))).toEqual([0, 1, 2, 3]);
    expect(accuracy(y, d.labels)).toBe(1);
    const scores = tf.tensor2d([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]);
    expect(accuracy(scores, Int32Array.from([0, 1, 1, 0]))).toBe(0.5);
    const empty = tf.zeros([0, 10]);
    expect(accuracy(empty, new Int32Array(0))).toBe(0);
    expect(() => accuracy(scores, Int32Array.from([0]))).toThrow('accuracy: labels = ');
    expect(() => accuracy(x, d.labels)).toThrow('accuracy: scores = a tensor of shape [4, 8, 8, 1] is invalid; expected a tensor of shape [n, classes]');
    tf.dispose([x, y, scores, empty]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('allocates nothing that outlives its call', () => {
    const d = digitsSubset(loadDigits(dataFile), [0, 1, 2, 3, 4, 5, 6, 7]);
    const before = tf.memory().numTensors;
    const { x, y } = digitsTensors(d);
    accuracy(y, d.labels);
    tf.dispose([x, y]);
    expect(tf.memory().numTensors).toBe(before);
  });
});

it('the data file is the gzip scikit-learn ships (magic bytes, README beside it)', () => {
  const bytes = readFileSync(dataFile);
  expect([bytes[0], bytes[1]]).toEqual([0x1f, 0x8b]);
  expect(DIGITS_PIXELS).toBe(64);
  const readme = readFileSync(join(root, 'notebooks', 'data', 'README.md'), 'utf8');
  expect(readme).toContain('https://doi.org/10.24432/C50P49');
  expect(readme).toContain('CC BY 4.0');
});
