import * as tf from '@tensorflow/tfjs-core';
import { invalid } from '../util/validate.js';

/**
 * Refuse allocations that cannot fit, before anything is allocated.
 *
 * Why: the wasm backend's heap is one WebAssembly memory of at most 4 GiB. When a tensor
 * does not fit, emscripten calls `abort()`, and from then on every tf op in the process
 * fails with `RuntimeError: Aborted()`. A typo such as `inFeatures: 1e9` must therefore be
 * refused up front, with the bytes it needs and the limit it meets, not attempted.
 *
 * The limits: one tensor's values must fit one typed array (2³² elements in V8) and, on
 * wasm, the heap; all the tensors alive at once must fit the heap on wasm, and any limit
 * the caller set with {@link setMemoryLimit} on every backend.
 */

/** The largest WebAssembly heap tfjs-backend-wasm 4.22 can grow to (its `maximum` memory). */
export const WASM_HEAP_BYTES = 2 ** 32;
/** Kept free in the wasm heap for the backend's own buffers (stacks, XNNPACK workspaces). */
const WASM_RESERVE_BYTES = 256 * 2 ** 20;
/** The longest typed array V8 (Node 20) allocates, in elements. */
export const MAX_TYPED_ARRAY_ELEMENTS = 2 ** 32;

let userLimit: number | null = null;

/**
 * Cap the bytes of tensor memory (`tf.memory().numBytes`) lora-tfjs may bring the process
 * to when it allocates; null removes the cap. Useful on backends whose limit the library
 * cannot see (cpu uses ordinary memory; webgl a GPU's).
 */
export function setMemoryLimit(bytes: number | null): void {
  if (bytes !== null && (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes <= 0)) {
    invalid('setMemoryLimit', 'bytes', bytes, 'a positive integer number of bytes, or null for no limit');
  }
  userLimit = bytes;
}

/** The limits allocations are checked against now, on the active backend. */
export interface MemoryLimits {
  /** Bytes all tensors together may reach (Infinity: no known limit). */
  totalBytes: number;
  /** Bytes one float32 tensor may hold. */
  tensorBytes: number;
  /** What the limit is, for messages. */
  label: string;
}

export function memoryLimits(): MemoryLimits {
  const typed = MAX_TYPED_ARRAY_ELEMENTS * 4;
  const wasm = tf.getBackend() === 'wasm';
  const backendTotal = wasm ? WASM_HEAP_BYTES - WASM_RESERVE_BYTES : Infinity;
  const totalBytes = Math.min(backendTotal, userLimit ?? Infinity);
  const label =
    userLimit !== null && userLimit <= backendTotal
      ? `the limit set with setMemoryLimit (${formatBytes(userLimit)})`
      : wasm
        ? `the wasm backend's heap (at most 4 GiB, ${formatBytes(WASM_RESERVE_BYTES)} of it kept for the backend)`
        : 'no known limit';
  return { totalBytes, tensorBytes: Math.min(typed, backendTotal), label };
}

/**
 * True where each matMul weight also costs a hidden copy: wasm's XNNPACK packs the weight
 * operand of a matMul into its own buffer, kept while the weight lives, which
 * `tf.memory()` does not count.
 */
export function packsMatMulWeights(): boolean {
  return tf.getBackend() === 'wasm';
}

/**
 * A forward pass holds up to this many output-sized tensors at once (x·W, the low-rank
 * term, its scaling, the sum, the bias), freed only when its tidy ends.
 */
export const FORWARD_TEMPORARIES = 5;

/** `count` tensors of one size: an output and the temporaries of the same size beside it. */
export function outputAndTemporaries(what: string, elements: number, count: number): PlannedTensor[] {
  return Array.from({ length: count }, (_, i) => ({ what: i === 0 ? what : `temporary ${i} of its size`, elements }));
}

/** One tensor of an allocation: what it is, and its number of float32 values. */
export interface PlannedTensor {
  what: string;
  elements: number;
}

/**
 * Throw unless every planned tensor fits one typed array (and the heap), and all of them
 * together fit on top of what is already allocated. Call before allocating any of them.
 */
export function checkAllocation(where: string, planned: readonly PlannedTensor[]): void {
  const limits = memoryLimits();
  let total = 0;
  for (const t of planned) {
    const bytes = t.elements * 4;
    total += bytes;
    if (t.elements > MAX_TYPED_ARRAY_ELEMENTS || bytes > limits.tensorBytes) {
      const cap = t.elements > MAX_TYPED_ARRAY_ELEMENTS ? `a typed array holds at most ${MAX_TYPED_ARRAY_ELEMENTS.toLocaleString('en-US')} values` : `one tensor may take at most ${formatBytes(limits.tensorBytes)} (${limits.label})`;
      throw new Error(`${where}: ${t.what} would need ${formatValues(t.elements)} (${formatBytes(bytes)}), but ${cap}; nothing was allocated`);
    }
  }
  const inUse = tf.memory().numBytes;
  if (inUse + total > limits.totalBytes) {
    const parts = planned.filter((t) => t.elements > 0).map((t) => `${t.what} ${formatBytes(t.elements * 4)}`);
    const shown = parts.length > 6 ? [...parts.slice(0, 6), `${parts.length - 6} more`] : parts;
    throw new Error(
      `${where}: needs ${formatBytes(total)} of tensors (${shown.join(', ')}) on top of the ${formatBytes(inUse)} in use, more than ${formatBytes(limits.totalBytes)} (${limits.label}); nothing was allocated`,
    );
  }
}

/** Elements of a shape, as a float (no overflow into wrong integers for absurd sizes). */
export function elementsOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function formatValues(n: number): string {
  return `${n.toLocaleString('en-US', { maximumFractionDigits: 0 })} values`;
}

/** Bytes for a human: 1.5 GiB, 12.0 MiB, 512 bytes. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} bytes` : `${v.toFixed(1)} ${units[u]}`;
}
