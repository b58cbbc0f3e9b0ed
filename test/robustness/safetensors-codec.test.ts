/**
 * The safetensors codec under hostile and careless input (issue 10):
 *
 * - bytes given as views (a Node Buffer from a pool, a subarray) decode as exactly the view,
 *   on every dtype path; Float32Array views encode as exactly their values;
 * - the encoder validates everything and never writes what its decoder refuses;
 * - property tests with a seeded PRNG: encode → decode round trips on random shapes, dtypes,
 *   names and metadata (as views at random offsets), and decoding random or mutated bytes
 *   only ever returns well-formed tensors (data.length = product(shape), offsets tiling the
 *   data) or throws SafetensorsError, within a time bound.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EncodableTensor, MAX_HEADER_BYTES, SafetensorsError, decodeSafetensors, encodeSafetensors, initBackend } from '../../src/index.js';
import { bfloat16ToFloat, floatToBfloat16, floatToHalf, halfToFloat } from '../../src/formats/safetensors.js';
import { rawFile } from '../helpers.js';

/** mulberry32: a small seeded PRNG (no dependency), uniform in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const product = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** `bytes` inside a larger pooled Buffer at `offset`, garbage on both sides. */
function inPool(bytes: Uint8Array, offset: number, after = 17, fill = 0xa5): Buffer {
  const pool = Buffer.alloc(offset + bytes.length + after, fill);
  pool.set(bytes, offset);
  return pool.subarray(offset, offset + bytes.length);
}

/** The value `v` becomes once stored as `dtype` and read back as float32. */
function stored(v: number, dtype: string): number {
  if (dtype === 'F16') return halfToFloat(floatToHalf(v));
  if (dtype === 'BF16') return bfloat16ToFloat(floatToBfloat16(v));
  return Math.fround(v);
}

function sameValues(actual: Float32Array, expected: ArrayLike<number>): boolean {
  if (actual.length !== expected.length) return false;
  for (let i = 0; i < actual.length; i++) if (!Object.is(actual[i], expected[i]) && !(Number.isNaN(actual[i]) && Number.isNaN(expected[i]))) return false;
  return true;
}

/** A file with every float dtype the decoder reads, F64 included (the encoder writes no F64). */
function allDtypesFile(): { bytes: Uint8Array; expected: Record<string, { shape: number[]; values: number[] }> } {
  const f32 = new Float32Array([1.5, -2.25, 3e38, -0]);
  const f16 = new Uint16Array([floatToHalf(1), floatToHalf(-0.5), floatToHalf(65504), 0x7c00, floatToHalf(6e-8), 0]);
  const bf16 = new Uint16Array([floatToBfloat16(1), floatToBfloat16(-3.5e38)]);
  const f64 = new Float64Array([0.1, -1e-3, 12345.678]);
  const parts = [new Uint8Array(f32.buffer), new Uint8Array(f16.buffer), new Uint8Array(bf16.buffer), new Uint8Array(f64.buffer)];
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', note: 'ünïcödé ✓' } };
  const names = ['a_f32', 'b_f16', 'c_bf16', 'd_f64'];
  const dtypes = ['F32', 'F16', 'BF16', 'F64'];
  const shapes = [[2, 2], [3, 2], [2], [3, 1]];
  let at = 0;
  names.forEach((n, i) => {
    header[n] = { dtype: dtypes[i], shape: shapes[i], data_offsets: [at, at + parts[i].length] };
    at += parts[i].length;
  });
  const data = new Uint8Array(at);
  let o = 0;
  for (const p of parts) {
    data.set(p, o);
    o += p.length;
  }
  return {
    bytes: rawFile(header, data),
    expected: {
      a_f32: { shape: [2, 2], values: Array.from(f32) },
      b_f16: { shape: [3, 2], values: Array.from(f16, halfToFloat) },
      c_bf16: { shape: [2], values: Array.from(bf16, bfloat16ToFloat) },
      d_f64: { shape: [3, 1], values: Array.from(f64, Math.fround) },
    },
  };
}

let tensorsAtStart: number;
beforeAll(async () => {
  await initBackend('wasm');
  tensorsAtStart = tf.memory().numTensors;
});
afterAll(() => {
  // The codec allocates no tensors, and tf still runs.
  expect(tf.memory().numTensors).toBe(tensorsAtStart);
  const t = tf.add(tf.scalar(1), tf.scalar(2));
  expect(t.dataSync()[0]).toBe(3);
});

// ---- views ---------------------------------------------------------------------------------

describe('views into larger buffers: exactly the view is read or written', () => {
  it('decode: a Buffer view at every byte offset (0–15) reads F32, F16, BF16, F64, header and metadata from the view only', () => {
    const { bytes, expected } = allDtypesFile();
    for (let offset = 0; offset < 16; offset++) {
      for (const fill of [0x00, 0xff, 0x7f]) {
        const view = inPool(bytes, offset, 23, fill);
        expect(view.byteOffset).toBe(offset);
        expect(view.buffer.byteLength).toBeGreaterThan(view.byteLength);
        const out = decodeSafetensors(view);
        expect(out.metadata).toEqual({ format: 'pt', note: 'ünïcödé ✓' });
        expect([...out.tensors.keys()].sort()).toEqual(Object.keys(expected));
        for (const [name, { shape, values }] of Object.entries(expected)) {
          const t = out.tensors.get(name)!;
          expect(t.shape, name).toEqual(shape);
          expect(t.data.length, name).toBe(product(shape));
          expect(sameValues(t.data, values), `${name} at offset ${offset}`).toBe(true);
          // The returned data owns its bytes: it is not a window onto the caller's pool.
          expect(t.data.buffer).not.toBe(view.buffer);
        }
      }
    }
  });

  it('decode: a plain Uint8Array subarray, and a view over a file whose bytes continue past it, are refused or read only within the view', () => {
    const { bytes } = allDtypesFile();
    const big = new Uint8Array(bytes.length + 64);
    big.set(bytes, 32);
    expect(decodeSafetensors(big.subarray(32, 32 + bytes.length)).tensors.size).toBe(4);
    // The same file, with the view cut 4 bytes short: refused (the data would run past the view),
    // although the bytes exist in the underlying buffer.
    expect(() => decodeSafetensors(big.subarray(32, 32 + bytes.length - 4))).toThrow(SafetensorsError);
    expect(() => decodeSafetensors(big.subarray(32, 32 + bytes.length - 4))).toThrow(/past the end of the data/);
  });

  it('encode: Float32Array subarrays (odd element offsets) write exactly their values, in F32, F16 and BF16', () => {
    const backing = new Float32Array(64).map((_, i) => (i - 20) * 0.37);
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      for (const start of [0, 1, 3, 7]) {
        const data = backing.subarray(start, start + 6);
        const bytes = encodeSafetensors({ t: { shape: [2, 3], data, dtype } });
        const back = decodeSafetensors(bytes).tensors.get('t')!;
        expect(back.dtype).toBe(dtype);
        expect(sameValues(back.data, Array.from(data, (v) => stored(v, dtype))), `${dtype} from element ${start}`).toBe(true);
        // Nothing of the rest of the backing buffer is in the file.
        expect(bytes.length).toBe(8 + Number(new DataView(bytes.buffer).getBigUint64(0, true)) + 6 * (dtype === 'F32' ? 4 : 2));
      }
    }
  });
});

// ---- the encoder validates everything ------------------------------------------------------

describe('encodeSafetensors refuses what its decoder would refuse, naming the tensor and what was expected', () => {
  const ok = (over: Partial<EncodableTensor> = {}) => ({ shape: [2], data: new Float32Array(2), ...over }) as EncodableTensor;
  const cases: Array<[string, () => unknown, string | RegExp]> = [
    ['Float64Array data', () => encodeSafetensors({ w: ok({ data: new Float64Array(2) as never }) }), 'safetensors: encodeSafetensors: tensors["w"].data = a Float64Array is invalid; expected a Float32Array (convert it with new Float32Array(data))'],
    ['a plain array as data', () => encodeSafetensors({ w: ok({ data: [1, 2] as never }) }), 'safetensors: encodeSafetensors: tensors["w"].data = [1, 2] is invalid; expected a Float32Array (convert it with new Float32Array(data))'],
    ['Int32Array data', () => encodeSafetensors({ w: ok({ data: new Int32Array(2) as never }) }), 'tensors["w"].data = an Int32Array is invalid; expected a Float32Array (convert it with new Float32Array(data))'],
    ['no data', () => encodeSafetensors({ w: { shape: [2] } as never }), 'tensors["w"].data = undefined is invalid; expected a Float32Array'],
    ['a negative dim', () => encodeSafetensors({ w: ok({ shape: [-2] }) }), 'safetensors: encodeSafetensors: tensors["w"].shape = [-2] is invalid; expected an array of at most 64 non-negative integers'],
    ['a non-integer dim', () => encodeSafetensors({ w: ok({ shape: [1.5] }) }), 'tensors["w"].shape = [1.5] is invalid; expected an array of at most 64 non-negative integers'],
    ['a NaN dim', () => encodeSafetensors({ w: ok({ shape: [Number.NaN] }) }), 'tensors["w"].shape = [NaN] is invalid'],
    ['an Infinity dim', () => encodeSafetensors({ w: ok({ shape: [Number.POSITIVE_INFINITY] }) }), 'tensors["w"].shape = [Infinity] is invalid'],
    ['a dim beyond 2^53', () => encodeSafetensors({ w: ok({ shape: [2 ** 60] }) }), 'tensors["w"].shape = [1152921504606847000] is invalid'],
    ['a string dim', () => encodeSafetensors({ w: ok({ shape: ['2'] as never }) }), 'tensors["w"].shape = ["2"] is invalid'],
    ['a shape that is not an array', () => encodeSafetensors({ w: ok({ shape: 2 as never }) }), 'tensors["w"].shape = 2 is invalid'],
    ['a shape as a typed array', () => encodeSafetensors({ w: ok({ shape: new Int32Array([2]) as never }) }), 'tensors["w"].shape = an Int32Array is invalid'],
    ['a rank over 64', () => encodeSafetensors({ w: ok({ shape: new Array(65).fill(1), data: new Float32Array(1) }) }), 'tensors["w"].shape = an array of 65 values is invalid; expected an array of at most 64 non-negative integers'],
    ['data not matching the shape', () => encodeSafetensors({ w: ok({ shape: [3] }) }), 'safetensors: encodeSafetensors: tensor "w" has 2 values but shape [3] needs 3'],
    ['a shape too large to hold', () => encodeSafetensors({ w: ok({ shape: [2 ** 30, 2 ** 30] }) }), 'tensor "w" has 2 values but shape [1073741824, 1073741824] needs more than 2^53'],
    ['dtype F64', () => encodeSafetensors({ w: ok({ dtype: 'F64' as never }) }), 'tensors["w"].dtype = "F64" is invalid; expected "F32", "F16" or "BF16"'],
    ['dtype in lower case', () => encodeSafetensors({ w: ok({ dtype: 'f16' as never }) }), 'tensors["w"].dtype = "f16" is invalid'],
    ['a null tensor', () => encodeSafetensors({ w: null as never }), 'tensors["w"] = null is invalid; expected an object { shape, data, dtype? }'],
    ['a Float32Array given as the tensor', () => encodeSafetensors({ w: new Float32Array(2) as never }), 'safetensors: encodeSafetensors: tensors["w"] = a Float32Array is invalid; expected an object { shape, data, dtype? }'],
    ['an empty name', () => encodeSafetensors({ '': ok() }), 'safetensors: encodeSafetensors: tensor name = "" is invalid; expected a non-empty name other than "__metadata__"'],
    ['the name __metadata__', () => encodeSafetensors({ __metadata__: ok() }), 'tensor name = "__metadata__" is invalid'],
    ['tensors = null', () => encodeSafetensors(null as never), 'safetensors: encodeSafetensors: tensors = null is invalid; expected an object { name: { shape, data, dtype? } }'],
    ['tensors as an array', () => encodeSafetensors([ok()] as never), 'tensors = [[object Object]] is invalid'],
    ['a non-string metadata value', () => encodeSafetensors({ w: ok() }, { format: 1 as never }), 'safetensors: encodeSafetensors: metadata["format"] = 1 is invalid; expected a string'],
    ['a nested metadata value', () => encodeSafetensors({ w: ok() }, { layers: { fc1: [1, 2] } as never }), 'metadata["layers"] = [object Object] is invalid; expected a string'],
    ['metadata = null', () => encodeSafetensors({ w: ok() }, null as never), 'metadata = null is invalid; expected an object of strings'],
    ['metadata as an array', () => encodeSafetensors({ w: ok() }, ['pt'] as never), 'metadata = ["pt"] is invalid'],
    ['a header over the readers\' limit', () => encodeSafetensors({ w: ok() }, { big: 'x'.repeat(MAX_HEADER_BYTES) }), /^safetensors: encodeSafetensors: the header would be (more than )?\d+ bytes.*, more than the 100000000-byte limit readers enforce/],
  ];
  for (const [what, call, message] of cases) {
    it(what, () => {
      let caught: unknown;
      try {
        call();
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(SafetensorsError);
      if (typeof message === 'string') expect((caught as Error).message).toContain(message);
      else expect((caught as Error).message).toMatch(message);
    });
  }

  it('odd names round-trip as any other: "__proto__", "constructor", dots, unicode, quotes, very long', () => {
    const names = ['__proto__', 'constructor', 'toString', 'a.b.c', 'ü∆✓', 'quo"te\\back', ' space ', 'x'.repeat(5000)];
    const tensors: Record<string, EncodableTensor> = {};
    names.forEach((n, i) => Object.defineProperty(tensors, n, { value: { shape: [1], data: new Float32Array([i]) }, enumerable: true }));
    const metadata: Record<string, string> = {};
    Object.defineProperty(metadata, '__proto__', { value: 'kept', enumerable: true });
    Object.defineProperty(metadata, 'constructor', { value: 'also kept', enumerable: true });
    const back = decodeSafetensors(encodeSafetensors(tensors, metadata));
    expect([...back.tensors.keys()].sort()).toEqual([...names].sort());
    names.forEach((n, i) => expect(Array.from(back.tensors.get(n)!.data), n).toEqual([i]));
    expect(Object.keys(back.metadata).sort()).toEqual(['__proto__', 'constructor']);
    expect(Object.getOwnPropertyDescriptor(back.metadata, '__proto__')?.value).toBe('kept');
    expect(Object.getPrototypeOf(back.metadata)).toBe(Object.prototype);
  });

  it('duplicate names in a header: the last wins and the first one\'s bytes are a gap, which is refused', () => {
    const data = new Uint8Array(new Float32Array([1, 2]).buffer);
    expect(() => decodeSafetensors(rawFile('{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', data))).toThrow(
      new SafetensorsError('gap before tensor "t" (bytes 0–4 belong to no tensor)'),
    );
  });

  it('dtypes named after Object.prototype members ("toString", "__proto__", "constructor") are unknown dtypes', () => {
    for (const dtype of ['toString', '__proto__', 'constructor', 'hasOwnProperty']) {
      expect(() => decodeSafetensors(rawFile({ t: { dtype, shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)))).toThrow(new SafetensorsError(`tensor "t" has unknown dtype ${JSON.stringify(dtype)}`));
    }
  });

  it('the decoder names a wrong input type', () => {
    expect(() => decodeSafetensors(new ArrayBuffer(16) as never)).toThrow(/^safetensors: decodeSafetensors: bytes = \[object ArrayBuffer\] is invalid; expected a Uint8Array/);
    expect(() => decodeSafetensors([0, 0, 0] as never)).toThrow(SafetensorsError);
    expect(() => decodeSafetensors(null as never)).toThrow(SafetensorsError);
  });
});

// ---- properties ----------------------------------------------------------------------------

const SPECIALS = [0, -0, 1, -1, 65504, 65520, -65536, 1e-8, 6e-8, 1e-40, 3.4e38, -3.4e38, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN, 2 ** -24, 2 ** -149];

function randomString(rand: () => number, max: number): string {
  const alphabet = ['a', 'b', 'z', '.', '_', '-', '0', '9', ' ', '"', '\\', 'ü', '✓', '𝄞', '\u0000', '\n'];
  const n = 1 + Math.floor(rand() * max);
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
  return s;
}

function randomShape(rand: () => number): number[] {
  const rank = Math.floor(rand() * 5); // 0 (a scalar) … 4
  return Array.from({ length: rank }, () => (rand() < 0.12 ? 0 : 1 + Math.floor(rand() * 5)));
}

function randomValue(rand: () => number): number {
  const r = rand();
  if (r < 0.15) return SPECIALS[Math.floor(rand() * SPECIALS.length)];
  if (r < 0.3) return (rand() - 0.5) * 2 ** Math.floor(rand() * 80 - 40);
  return (rand() - 0.5) * 10;
}

/** A valid file with random content, and what it holds. */
function randomFile(rand: () => number) {
  const tensors: Record<string, EncodableTensor> = {};
  const count = Math.floor(rand() * 5);
  for (let i = 0; i < count; i++) {
    const shape = randomShape(rand);
    const n = product(shape);
    const dtype = (['F32', 'F16', 'BF16'] as const)[Math.floor(rand() * 3)];
    // As a view at a random element offset of a larger array.
    const pad = Math.floor(rand() * 4);
    const backing = new Float32Array(n + pad + 3).map(() => randomValue(rand));
    const data = backing.subarray(pad, pad + n);
    const name = rand() < 0.05 ? '__proto__' : `${randomString(rand, 8)}${i}`;
    Object.defineProperty(tensors, name, { value: { shape, data, dtype }, enumerable: true, configurable: true });
  }
  const metadata: Record<string, string> = {};
  const metaCount = Math.floor(rand() * 4);
  for (let i = 0; i < metaCount; i++) metadata[randomString(rand, 6)] = randomString(rand, 20);
  return { tensors, metadata };
}

/** Well-formed: every tensor's data holds product(shape) float32 values, and the offsets tile the data section. */
function expectWellFormed(bytes: Uint8Array, out: ReturnType<typeof decodeSafetensors>): void {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const entries = Object.entries(header).filter(([k]) => k !== '__metadata__');
  expect(out.tensors.size).toBe(entries.length);
  const spans = entries.map(([, e]) => e.data_offsets).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let cursor = 0;
  for (const [b, e] of spans) {
    expect(b).toBe(cursor);
    cursor = e;
  }
  expect(cursor).toBe(bytes.length - 8 - n);
  for (const [name, t] of out.tensors) {
    expect(t.data).toBeInstanceOf(Float32Array);
    expect(t.shape.every((d) => Number.isSafeInteger(d) && d >= 0), name).toBe(true);
    expect(t.data.length, name).toBe(product(t.shape));
  }
}

describe('property: encode → decode round trips', () => {
  it('600 random files (ranks 0–4, zero-sized dims, F32/F16/BF16, odd names, metadata), decoded from Buffer views at random offsets', () => {
    const rand = prng(20240610);
    const t0 = performance.now();
    let tensorsSeen = 0;
    for (let c = 0; c < 600; c++) {
      const { tensors, metadata } = randomFile(rand);
      const bytes = encodeSafetensors(tensors, metadata);
      const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      expect((8 + headerLength) % 8).toBe(0);
      const view = inPool(bytes, Math.floor(rand() * 40), Math.floor(rand() * 40), Math.floor(rand() * 256));
      const out = decodeSafetensors(view);
      expectWellFormed(view, out);
      expect(Object.entries(out.metadata).sort()).toEqual(Object.entries(metadata).sort());
      expect(out.tensors.size).toBe(Object.keys(tensors).length);
      for (const name of Object.keys(tensors)) {
        const want = tensors[name];
        const got = out.tensors.get(name)!;
        expect(got, `case ${c}: ${JSON.stringify(name)}`).toBeDefined();
        expect(got.dtype).toBe(want.dtype);
        expect(got.shape).toEqual([...want.shape]);
        const expected = Array.from(want.data, (v) => stored(v, want.dtype!));
        expect(sameValues(got.data, expected), `case ${c}: ${JSON.stringify(name)} (${want.dtype})`).toBe(true);
        tensorsSeen++;
      }
    }
    expect(tensorsSeen).toBeGreaterThan(900);
    expect(performance.now() - t0).toBeLessThan(10_000);
  });
});

/** A mutation of a valid file, of one of several kinds. */
function mutate(rand: () => number, bytes: Uint8Array): Uint8Array {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const n = bytes.length >= 8 ? Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true)) : 0;
  const kind = Math.floor(rand() * (bytes.length >= 8 ? 8 : 3));
  const out = bytes.slice();
  switch (kind) {
    case 0: {
      // Bit flips anywhere.
      const flips = 1 + Math.floor(rand() * 4);
      for (let i = 0; i < flips && out.length > 0; i++) out[Math.floor(rand() * out.length)] ^= 1 << Math.floor(rand() * 8);
      return out;
    }
    case 1:
      // Truncated.
      return out.subarray(0, Math.floor(rand() * out.length));
    case 2: {
      // Extended with garbage.
      const more = new Uint8Array(out.length + 1 + Math.floor(rand() * 16));
      more.set(out);
      for (let i = out.length; i < more.length; i++) more[i] = Math.floor(rand() * 256);
      return more;
    }
    case 3: {
      // The header length edited: a little, a lot, or a random u64.
      const view = new DataView(out.buffer);
      const r = rand();
      const v = r < 0.5 ? BigInt(Math.max(0, n + Math.floor(rand() * 17) - 8)) : r < 0.8 ? BigInt(Math.floor(rand() * 2 ** 32)) : BigInt.asUintN(64, BigInt(Math.floor(rand() * 2 ** 53)) << 11n);
      view.setBigUint64(0, v, true);
      return out;
    }
    default: {
      // The header JSON edited: offsets, shapes, dtypes, keys, structure.
      let header: Record<string, any>;
      try {
        header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
      } catch {
        return out;
      }
      if (header === null || typeof header !== 'object' || Array.isArray(header)) return out;
      const data = bytes.subarray(8 + n);
      const isEntry = (e: unknown) => e !== null && typeof e === 'object' && !Array.isArray(e) && Array.isArray((e as { shape?: unknown }).shape) && Array.isArray((e as { data_offsets?: unknown }).data_offsets);
      const names = Object.keys(header).filter((k) => k !== '__metadata__' && isEntry(header[k]));
      const target = names.length > 0 ? header[pick(names)] : null;
      const numbers = [-1, 0, 1, 2, 3, 4, 7, 8, 1.5, 2 ** 31, 2 ** 53, 2 ** 60, 1e308, Number.NaN];
      const edit = Math.floor(rand() * 9);
      if (target !== null && edit === 0) target.data_offsets = [pick(numbers), pick(numbers)].map((v) => (Number.isNaN(v) ? null : v));
      else if (target !== null && edit === 1) target.data_offsets[Math.floor(rand() * 2)] += Math.floor(rand() * 9) - 4;
      else if (target !== null && edit === 2) target.shape = rand() < 0.5 ? [pick(numbers)] : [...target.shape, pick(numbers)];
      else if (target !== null && edit === 3) target.dtype = pick(['F32', 'F16', 'BF16', 'F64', 'I32', 'U8', 'BOOL', 'F8_E4M3', 'toString', '__proto__', 'f32', '', 7, null]);
      else if (target !== null && edit === 4) delete target[pick(['dtype', 'shape', 'data_offsets'])];
      else if (edit === 5) header[pick(['__metadata__', 'extra', names[0] ?? 'x'])] = pick([null, 1, 'str', [], [1, 2], { dtype: 'F32' }, { a: 1 }, { a: 'b' }]);
      else if (target !== null && edit === 6) target.shape = pick([null, 'x', {}, [[1]], ['1'], [true]]);
      else if (edit === 7) header = pick([[], null, 1, 'text', [header]]) as never;
      else if (names.length > 1) {
        // Two tensors swap offsets (sizes may no longer match).
        const [a, b] = [header[names[0]], header[names[1]]];
        [a.data_offsets, b.data_offsets] = [b.data_offsets, a.data_offsets];
      }
      const keepLength = rand() < 0.2;
      const text = JSON.stringify(header);
      if (keepLength) {
        const h = new TextEncoder().encode(text);
        const f = new Uint8Array(8 + h.length + data.length);
        new DataView(f.buffer).setBigUint64(0, BigInt(n), true);
        f.set(h, 8);
        f.set(data, 8 + h.length);
        return f;
      }
      return rawFile(text, data);
    }
  }
}

describe('property: random and mutated bytes decode to well-formed tensors or throw SafetensorsError', () => {
  it('3000 cases (random bytes, bit flips, truncation, header length, offset, shape, dtype and JSON edits), within a time bound', () => {
    const rand = prng(7);
    const t0 = performance.now();
    const outcomes = { decoded: 0, refused: 0 };
    const otherErrors: string[] = [];
    for (let c = 0; c < 3000; c++) {
      let bytes: Uint8Array;
      if (c % 10 === 0) {
        // Pure random bytes, some with a plausible header length.
        bytes = new Uint8Array(Math.floor(rand() * 64)).map(() => Math.floor(rand() * 256));
        if (bytes.length >= 8 && rand() < 0.5) new DataView(bytes.buffer).setBigUint64(0, BigInt(Math.floor(rand() * (bytes.length - 7))), true);
      } else {
        const { tensors, metadata } = randomFile(rand);
        bytes = encodeSafetensors(tensors, metadata);
        const rounds = 1 + Math.floor(rand() * 2);
        for (let r = 0; r < rounds; r++) bytes = mutate(rand, bytes);
      }
      const view = rand() < 0.5 ? inPool(bytes, 1 + Math.floor(rand() * 9)) : bytes;
      let out: ReturnType<typeof decodeSafetensors> | undefined;
      try {
        out = decodeSafetensors(view);
      } catch (err) {
        if (err instanceof SafetensorsError) outcomes.refused++;
        else otherErrors.push(`case ${c}: ${(err as Error)?.name}: ${(err as Error)?.message}`);
        continue;
      }
      outcomes.decoded++;
      expectWellFormed(view, out);
    }
    const took = performance.now() - t0;
    expect(otherErrors).toEqual([]);
    // Both outcomes occur: the mutations are neither all harmless nor all fatal.
    expect(outcomes.decoded).toBeGreaterThan(100);
    expect(outcomes.refused).toBeGreaterThan(1000);
    expect(took).toBeLessThan(30_000);
  });
});
