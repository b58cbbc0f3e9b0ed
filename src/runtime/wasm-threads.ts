/**
 * Threads for the wasm backend in Node. On import (in Node, before wasm has started) the
 * stock "wasm" backend factory is replaced by one that starts tfjs's threaded SIMD build with
 * one XNNPACK thread per core (wasm-threads-node.ts says how), so `initBackend()`,
 * `tf.setBackend('wasm')` and a tfjs Layers model all get every core. When the threaded build
 * cannot start, the stock single-threaded SIMD build runs instead, after a warning that says why.
 *
 * The count: {@link initBackend}'s `threads`, else `LORA_WASM_THREADS`, else every core (at
 * most 8, tfjs's pool). It is fixed when wasm starts. In a page, threads need a
 * cross-origin-isolated page and tfjs's own start; nothing here runs there.
 */
import * as tf from '@tensorflow/tfjs-core';
import { getThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { describe } from '../util/validate.js';
import { warn } from '../util/warnings.js';
import type * as NodeThreads from './wasm-threads-node.js';

/** The environment variable that sets the wasm thread count in Node (`LORA_WASM_THREADS=2`). */
export const WASM_THREADS_ENV = 'LORA_WASM_THREADS';

/** tfjs's C side pre-starts 8 pthread workers and never uses more (backend.cc, max_num_threads). */
export const MAX_WASM_THREADS = 8;

/** Long enough for 8 workers to compile the binary on a loaded machine (quiet: ~0.3 s). */
const START_TIMEOUT_MS = 30_000;

/** How wasm started in this process (Node), for {@link backendSummary} and the tests. */
export interface WasmThreadsState {
  /** XNNPACK threads the running wasm backend uses. */
  threads: number;
  /** Whether the threaded build runs (false: the stock single-threaded SIMD build). */
  threaded: boolean;
  /** Why the threaded build is not running, when it was wanted; null otherwise. */
  fallback: string | null;
}

type Factory = () => tf.KernelBackend | Promise<tf.KernelBackend>;

/**
 * Shared by every copy of lora-tfjs in the process (a test may load the source and the build):
 * tfjs's own factory, saved once, and the count asked for by initBackend.
 */
interface Shared {
  stock: Factory;
  requested: number | undefined;
  state: WasmThreadsState | null;
}
const SHARED = Symbol.for('lora-tfjs.wasmThreads');
const globalSlot = globalThis as unknown as { [SHARED]?: Shared };

function isNode(): boolean {
  return typeof process !== 'undefined' && typeof process.versions?.node === 'string' && tf.env().getBool('IS_NODE');
}

/** Check a thread count (`initBackend({ threads })`): a positive integer. */
export function checkWasmThreads(where: string, name: string, value: unknown, text = false): number {
  // From an environment variable, "2" (digits only) is the number 2.
  const n = text && typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) {
    throw new Error(`${where}: ${name} = ${describe(value)} is invalid; expected a positive whole number of threads (e.g. 2)`);
  }
  return n;
}

/** The count `LORA_WASM_THREADS` asks for, or undefined when it is unset or empty. */
export function wasmThreadsFromEnv(where = 'initBackend'): number | undefined {
  const raw = typeof process !== 'undefined' ? process.env?.[WASM_THREADS_ENV] : undefined;
  if (raw === undefined || raw.trim() === '') return undefined;
  return checkWasmThreads(where, WASM_THREADS_ENV, raw, true);
}

/** Install the threaded factory (Node, wasm not started yet). Idempotent across copies. */
export function installWasmThreads(): void {
  if (!isNode() || 'wasm' in tf.engine().registry) return;
  const current = tf.findBackendFactory('wasm') as Factory | null;
  // Ours, or another copy's of lora-tfjs (which saved tfjs's own already).
  if (current === null || (current as { [SHARED]?: true })[SHARED] === true) return;
  globalSlot[SHARED] = { stock: current, requested: undefined, state: null };
  tf.removeBackend('wasm'); // the factory only: the wasm kernels stay registered
  tf.registerBackend('wasm', threadedFactory, 2);
}
(threadedFactory as unknown as { [SHARED]: true })[SHARED] = true;

/** Ask for `threads` before wasm starts (initBackend's `threads`). */
export function requestWasmThreads(threads: number | undefined): void {
  const shared = globalSlot[SHARED];
  if (shared !== undefined) shared.requested = threads;
}

/** How the running wasm backend started, or null (not started, not Node, or started by tfjs itself). */
export function wasmThreadsState(): WasmThreadsState | null {
  return 'wasm' in tf.engine().registry ? (globalSlot[SHARED]?.state ?? null) : null;
}

/** The XNNPACK thread count of the running wasm backend (1 when tfjs cannot say). */
export function runningWasmThreads(): number {
  try {
    return getThreadsCount();
  } catch {
    return wasmThreadsState()?.threads ?? 1;
  }
}

async function threadedFactory(): Promise<tf.KernelBackend> {
  const shared = globalSlot[SHARED];
  if (shared === undefined) throw new Error('lora-tfjs: the wasm thread state is missing');
  // Read before the first await: a start under way keeps the count it began with.
  const requested = shared.requested;
  let wanted: number | undefined;
  let fallback: string | null = null;
  try {
    const env = wasmThreadsFromEnv('the wasm backend');
    // A variable specifier: bundlers leave the Node-only file out of a page's bundle.
    const spec = './wasm-threads-node.js';
    const node = (await import(/* webpackIgnore: true */ /* @vite-ignore */ spec)) as typeof NodeThreads;
    wanted = requested ?? env ?? node.defaultWasmThreads();
    if (wanted > MAX_WASM_THREADS) {
      warn(`lora-tfjs: ${wanted} wasm threads asked for; tfjs's pool has ${MAX_WASM_THREADS}, so wasm uses ${MAX_WASM_THREADS}`);
      wanted = MAX_WASM_THREADS;
    }
    if (wanted > 1) {
      // tfjs's own start evaluates both flags; backendSummary reads SIMD synchronously later.
      if (!(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'))) throw new Error('this runtime has no wasm SIMD, which the threaded build needs');
      const { backend, threads } = await node.startThreadedWasm(wanted, START_TIMEOUT_MS);
      tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
      shared.state = { threads, threaded: true, fallback: null };
      return backend;
    }
  } catch (err) {
    fallback = String((err as Error)?.message ?? err).split('\n')[0];
    warn(`lora-tfjs: wasm runs on 1 thread${wanted === undefined ? '' : ` instead of ${wanted}`}: the threaded build did not start (${fallback}); set ${WASM_THREADS_ENV}=1 to skip trying`);
  }
  return stock(shared, { threads: 1, threaded: false, fallback });
}

/** tfjs's own single-threaded start (its init() picks the SIMD build when the flag says no threads). */
async function stock(shared: Shared, state: WasmThreadsState): Promise<tf.KernelBackend> {
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  const backend = await shared.stock();
  shared.state = state;
  return backend;
}

/**
 * Stop the wasm backend (if it runs) and register lora-tfjs's factory afresh, asking for
 * `threads`; the next `tf.setBackend('wasm')` starts it. Every tensor on wasm would be lost, so
 * live ones are refused. For {@link restartWasm} and the tests.
 */
export function resetWasm(threads: number): void {
  checkWasmThreads('restartWasm', 'threads', threads);
  if (!isNode()) throw new Error('restartWasm: Node only');
  installWasmThreads();
  const shared = globalSlot[SHARED];
  if (shared === undefined) throw new Error('restartWasm: the wasm backend is not lora-tfjs\'s (it started before lora-tfjs was imported)');
  if ('wasm' in tf.engine().registry) {
    const live = (tf.engine().registry.wasm as unknown as { numDataIds(): number }).numDataIds();
    if (live > 0) throw new Error(`restartWasm: ${live} tensor${live === 1 ? '' : 's'} still on wasm would be lost; dispose ${live === 1 ? 'it' : 'them'} first`);
    tf.removeBackend('wasm'); // disposes the backend, which terminates its pthreads
  }
  if (tf.findBackendFactory('wasm') === null) tf.registerBackend('wasm', threadedFactory, 2);
  shared.requested = threads;
}

/**
 * Stop the wasm backend and start it again with `threads` (for the benchmark and the tests,
 * which compare thread counts in one process). Tensors on wasm must be disposed first.
 */
export async function restartWasm(threads: number): Promise<void> {
  resetWasm(threads);
  if (!(await tf.setBackend('wasm'))) throw new Error(`restartWasm: wasm did not start with ${threads} threads`);
  // A fallback to one thread (warned) must not pass for the count asked for in a measurement.
  const running = runningWasmThreads();
  const shared = globalSlot[SHARED];
  if (running !== Math.min(threads, MAX_WASM_THREADS)) throw new Error(`restartWasm: wasm runs ${running} thread${running === 1 ? '' : 's'}, not ${threads} (${shared?.state?.fallback ?? 'no reason recorded'})`);
}
