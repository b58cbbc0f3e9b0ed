/**
 * The safetensors format, as bytes (no file I/O, so it also runs in a browser):
 * an 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: { string: string } }`,
 * then the tensor data, offsets relative to its start.
 *
 * The reader treats its input as untrusted: every size, offset and dtype is checked
 * before any data is read, and the data must tile the buffer exactly.
 */

/** A decoded tensor: float32 values (F16 and BF16 are widened), row-major, with its shape. */
export interface DecodedTensor {
  dtype: string;
  shape: number[];
  data: Float32Array;
}

export interface SafetensorsContent {
  tensors: Map<string, DecodedTensor>;
  metadata: Record<string, string>;
}

/** The float dtypes a file can be written in. */
export type EncodeDtype = 'F32' | 'F16' | 'BF16';

/** A tensor to encode: float32 values, written as F32 (default) or rounded to F16 / BF16. */
export interface EncodableTensor {
  shape: readonly number[];
  data: Float32Array;
  dtype?: EncodeDtype;
}

/** The largest header we accept (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000;

const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
};
const FLOAT_DTYPES = new Set(['F64', 'F32', 'F16', 'BF16']);

/** A malformed or unsupported safetensors buffer. */
export class SafetensorsError extends Error {
  constructor(message: string) {
    super(`safetensors: ${message}`);
    this.name = 'SafetensorsError';
  }
}

/** The largest file encoded: 4 GiB (Node 20's Buffer limit; far more than wasm's heap holds). */
const MAX_FILE_BYTES = 2 ** 32;

/**
 * Encode tensors (sorted by name, contiguous) and string metadata. Everything is checked
 * first, so the encoder never writes a file its own decoder refuses: each refusal is a
 * {@link SafetensorsError} naming the tensor (or metadata key), the value and what was expected.
 */
export function encodeSafetensors(tensors: Record<string, EncodableTensor>, metadata: Record<string, string> = {}): Uint8Array {
  const where = 'encodeSafetensors';
  const bad = (name: string, value: unknown, expected: string): never => {
    throw new SafetensorsError(`${where}: ${name} = ${brief(value)} is invalid; expected ${expected}`);
  };
  if (tensors === null || typeof tensors !== 'object' || Array.isArray(tensors) || ArrayBuffer.isView(tensors)) bad('tensors', tensors, 'an object { name: { shape, data, dtype? } }');
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata) || ArrayBuffer.isView(metadata)) bad('metadata', metadata, 'an object of strings');
  // Null-prototype objects, so that a name such as "__proto__" is written as any other.
  const meta: Record<string, string> = Object.create(null);
  let metaChars = 0;
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') bad(`metadata[${JSON.stringify(k)}]`, v, 'a string');
    meta[k] = v;
    metaChars += k.length + v.length;
  }
  // Each character is at least one byte of JSON: refuse at once what cannot fit, before building it.
  if (metaChars > MAX_HEADER_BYTES) {
    throw new SafetensorsError(`${where}: the header would be more than ${metaChars} bytes (its metadata alone), more than the ${MAX_HEADER_BYTES}-byte limit readers enforce (fewer tensors or shorter metadata)`);
  }
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = Object.create(null);
  if (Object.keys(meta).length > 0) header.__metadata__ = meta;
  const sizes: number[] = [];
  let offset = 0;
  for (const name of names) {
    const at = `tensors[${JSON.stringify(name)}]`;
    if (name === '' || name === '__metadata__') bad('tensor name', name, 'a non-empty name other than "__metadata__" (the header key for metadata)');
    const t = tensors[name];
    if (t === null || typeof t !== 'object' || Array.isArray(t) || ArrayBuffer.isView(t)) bad(at, t, 'an object { shape, data, dtype? }');
    const dtype = t.dtype ?? 'F32';
    if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') bad(`${at}.dtype`, dtype, '"F32", "F16" or "BF16"');
    const data: unknown = t.data;
    if (!(data instanceof Float32Array)) {
      bad(`${at}.data`, data, `a Float32Array${ArrayBuffer.isView(data) || Array.isArray(data) ? ' (convert it with new Float32Array(data))' : ''}`);
    }
    if (!Array.isArray(t.shape) || t.shape.length > 64 || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      bad(`${at}.shape`, t.shape, 'an array of at most 64 non-negative integers');
    }
    const expected = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== expected) {
      throw new SafetensorsError(`${where}: tensor ${JSON.stringify(name)} has ${t.data.length} values but shape [${t.shape.join(', ')}] needs ${Number.isSafeInteger(expected) ? expected : 'more than 2^53'}`);
    }
    const bytes = expected * DTYPE_BYTES[dtype];
    header[name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    sizes.push(bytes);
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
  json += ' '.repeat((8 - ((8 + new TextEncoder().encode(json).length) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  if (headerBytes.length > MAX_HEADER_BYTES) {
    throw new SafetensorsError(`${where}: the header would be ${headerBytes.length} bytes, more than the ${MAX_HEADER_BYTES}-byte limit readers enforce (fewer tensors or shorter metadata)`);
  }
  const total = 8 + headerBytes.length + offset;
  let out: Uint8Array;
  try {
    if (total > MAX_FILE_BYTES) throw new RangeError('too large');
    out = new Uint8Array(total);
  } catch {
    throw new SafetensorsError(`${where}: the file would be ${total} bytes, more than this runtime can hold in one array (${MAX_FILE_BYTES} bytes); split the tensors into several files`);
  }
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  names.forEach((name, i) => {
    const { data, dtype } = tensors[name];
    if ((dtype ?? 'F32') === 'F32') {
      // The view's own bytes (byteOffset, byteLength): a subarray shares a larger buffer.
      if (isLittleEndianHost()) out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
      else for (let j = 0; j < data.length; j++) view.setFloat32(at + j * 4, data[j], true);
    } else {
      const round = dtype === 'F16' ? floatToHalf : floatToBfloat16;
      for (let j = 0; j < data.length; j++) view.setUint16(at + j * 2, round(data[j]), true);
    }
    at += sizes[i];
  });
  return out;
}

/** A value for a message, short: long arrays by their length, typed arrays by their type. */
function brief(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  if (Array.isArray(value)) return value.length > 16 ? `an array of ${value.length} values` : `[${value.map((v) => (typeof v === 'number' ? String(v) : brief(v))).join(', ')}]`;
  if (ArrayBuffer.isView(value)) return `${/^[AEIOU]/.test(value.constructor.name) ? 'an' : 'a'} ${value.constructor.name}`;
  if (value !== null && typeof value === 'object') return Object.prototype.toString.call(value);
  return String(value);
}

/** Decode and validate a safetensors buffer. Float tensors come back as float32. */
export function decodeSafetensors(bytes: Uint8Array): SafetensorsContent {
  if (!(bytes instanceof Uint8Array)) throw new SafetensorsError(`decodeSafetensors: bytes = ${brief(bytes)} is invalid; expected a Uint8Array (a Node Buffer is one; wrap an ArrayBuffer in new Uint8Array(buffer))`);
  if (bytes.length < 8) throw new SafetensorsError(`file is ${bytes.length} bytes; a safetensors file has at least an 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(`header length ${headerLength} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const n = Number(headerLength);
  if (8 + n > bytes.length) {
    throw new SafetensorsError(`header length ${n} runs past the end of the file (${bytes.length} bytes)`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    throw new SafetensorsError('header is not valid UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError(`header is not valid JSON (${(err as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new SafetensorsError('header is not a JSON object');
  }
  const dataStart = 8 + n;
  const dataLength = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const entries: Array<{ name: string; dtype: string; shape: number[]; begin: number; end: number }> = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new SafetensorsError('__metadata__ is not an object');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') throw new SafetensorsError(`__metadata__ value "${k}" is not a string`);
        // defineProperty: a key "__proto__" stays a key (assignment would set the prototype).
        Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
      }
      continue;
    }
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (info === null || typeof info !== 'object' || Array.isArray(info)) throw new SafetensorsError(`entry "${name}" is not an object`);
    if (typeof info.dtype !== 'string' || !Object.prototype.hasOwnProperty.call(DTYPE_BYTES, info.dtype)) {
      throw new SafetensorsError(`tensor "${name}" has unknown dtype ${JSON.stringify(info.dtype)}`);
    }
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(`tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
    }
    const offsets = info.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[1] < offsets[0]) {
      throw new SafetensorsError(`tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    const expectedBytes = (shape as number[]).reduce((a, b) => a * b, 1) * DTYPE_BYTES[info.dtype];
    if (end - begin !== expectedBytes) {
      throw new SafetensorsError(
        `tensor "${name}": shape [${(shape as number[]).join(', ')}] of ${info.dtype} needs ${expectedBytes} bytes but its offsets [${begin}, ${end}] span ${end - begin}`,
      );
    }
    if (end > dataLength) throw new SafetensorsError(`tensor "${name}" ends at ${end}, past the end of the data (${dataLength} bytes)`);
    entries.push({ name, dtype: info.dtype, shape: shape as number[], begin, end });
  }
  // The tensors must tile the data exactly: no overlap, no gap, nothing after the last.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const e of sorted) {
    if (e.begin < cursor) throw new SafetensorsError(`tensor "${e.name}" overlaps the previous tensor (starts at ${e.begin}, previous ends at ${cursor})`);
    if (e.begin > cursor) throw new SafetensorsError(`gap before tensor "${e.name}" (bytes ${cursor}–${e.begin} belong to no tensor)`);
    cursor = e.end;
  }
  if (cursor !== dataLength) {
    throw new SafetensorsError(`the data ends at byte ${cursor} of the data section but the file has ${dataLength} bytes of data`);
  }
  const tensors = new Map<string, DecodedTensor>();
  for (const e of entries) {
    if (!FLOAT_DTYPES.has(e.dtype)) throw new SafetensorsError(`tensor "${e.name}" has dtype ${e.dtype}; only F32, F16, BF16 and F64 tensors can be loaded`);
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: toFloat32(bytes, dataStart + e.begin, e.end - e.begin, e.dtype) });
  }
  return { tensors, metadata };
}

function toFloat32(bytes: Uint8Array, at: number, length: number, dtype: string): Float32Array {
  // Copy through Uint8Array's own slice: a Node Buffer's slice is a view into a shared pool.
  if (dtype === 'F32' && isLittleEndianHost()) return new Float32Array(Uint8Array.prototype.slice.call(bytes, at, at + length).buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, length);
  const size = length / DTYPE_BYTES[dtype];
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    if (dtype === 'F32') out[i] = view.getFloat32(i * 4, true);
    else if (dtype === 'F64') out[i] = view.getFloat64(i * 8, true);
    else if (dtype === 'F16') out[i] = halfToFloat(view.getUint16(i * 2, true));
    else out[i] = bfloat16ToFloat(view.getUint16(i * 2, true));
  }
  return out;
}

/** IEEE 754 half → float. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac === 0 ? sign * Infinity : NaN;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float → IEEE 754 half, rounding to nearest even (as PyTorch's `.half()`). */
export function floatToHalf(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const full = mant | 0x800000;
    const shift = 14 - e;
    let h = full >>> shift;
    const rest = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (h & 1) === 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++; // a carry into the exponent is correct
  return sign | h;
}

/** float → bfloat16 (top 16 bits of a float32), rounding to nearest even (as PyTorch). */
export function floatToBfloat16(v: number): number {
  f32[0] = v;
  const x = u32[0];
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bfloat16 (the top 16 bits of a float32) → float. */
export function bfloat16ToFloat(b: number): number {
  const buf = new DataView(new ArrayBuffer(4));
  buf.setUint32(0, b << 16, false);
  return buf.getFloat32(0, false);
}

function isLittleEndianHost(): boolean {
  return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
}
