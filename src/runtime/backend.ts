import * as tf from '@tensorflow/tfjs-core';
// Gradients and chained ops, which tfjs-core alone does not register (see scripts/build.mjs).
import '#tfjs-registrations';
import '@tensorflow/tfjs-backend-cpu';
import { setThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { checkOneOf, describe, invalid } from '../util/validate.js';
import { warn } from '../util/warnings.js';
import { isSoftwareRenderer, webglRenderer, webgpuProblem } from './gpu-probe.js';
import { registerWasmTrainingKernels } from './wasm-kernels.js';
import { MAX_WASM_THREADS, WASM_THREADS_ENV, checkWasmThreads, installWasmThreads, requestWasmThreads, runningWasmThreads, wasmThreadsFromEnv, wasmThreadsState } from './wasm-threads.js';

// The wasm backend lacks the gradients of gather and conv2d (filter); supply them on import.
registerWasmTrainingKernels();
// In Node, wasm starts tfjs's threaded build, one thread per core (see wasm-threads.ts).
installWasmThreads();

/** The TensorFlow.js backends lora-tfjs can run on. */
export const BACKENDS = ['tensorflow', 'webgpu', 'webgl', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

/**
 * The order `initBackend()` tries backends in, per platform. In Node: the native binding
 * (tfjs-node) when it is installed, then wasm (SIMD; ~45× the plain cpu backend on matMul).
 * In a page: the GPU backends the application registered (`import
 * '@tensorflow/tfjs-backend-webgpu'` / `-webgl'`) when they run on a real GPU (a software
 * rasterizer is skipped: far slower than wasm, see gpu-probe.ts), then wasm, then cpu.
 * lora-tfjs itself registers only wasm and cpu, so a page that imports no GPU backend gets wasm.
 */
export const BACKEND_ORDER: { readonly node: readonly BackendName[]; readonly browser: readonly BackendName[] } = {
  node: ['tensorflow', 'wasm', 'cpu'],
  browser: ['webgpu', 'webgl', 'wasm', 'cpu'],
};

/** The three binaries of `@tensorflow/tfjs-backend-wasm` (in its `dist/`); a page must serve them. */
export const WASM_BINARIES = ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm'] as const;
export type WasmBinary = (typeof WASM_BINARIES)[number];

/** Options of {@link initBackend}. */
export interface InitBackendOptions {
  /** Use exactly this backend (else `LORA_BACKEND`, else the first of {@link BACKEND_ORDER} that starts). */
  backend?: BackendName;
  /**
   * Where a page serves the wasm binaries: a folder URL ending in `/` (e.g. `"/assets/wasm/"`),
   * or one URL per file in {@link WASM_BINARIES}. Without it, they are fetched from beside the
   * bundled script. Takes effect only before wasm first starts. Node finds them itself.
   */
  wasmPaths?: string | Readonly<Record<WasmBinary, string>>;
  /**
   * XNNPACK threads for wasm (else `LORA_WASM_THREADS`, else every core, at most 8). In Node
   * lora-tfjs starts tfjs's threaded build itself; in a page tfjs uses threads only when the
   * page is cross-origin isolated. Takes effect only before wasm first starts.
   */
  threads?: number;
}

type Platform = 'node' | 'browser';

/** The wasmPaths handed to tfjs in this page (undefined: tfjs's default, beside the script). */
let wasmPathsSet: InitBackendOptions['wasmPaths'];

/** Whether tfjs has started (initialised) this backend; looking it up with tf.findBackend would start it. */
function started(name: BackendName): boolean {
  return name in tf.engine().registry;
}

function platform(): Platform {
  return tf.env().getBool('IS_NODE') ? 'node' : 'browser';
}

const NATIVE_PACKAGE = '@tensorflow/tfjs-node';

async function loadNative(): Promise<void> {
  if (tf.findBackendFactory('tensorflow') !== null) return;
  // tfjs-node registers the "tensorflow" backend on the shared tfjs-core when it loads. The
  // name is a variable so that bundlers leave the import alone (it exists only in Node).
  const name: string = NATIVE_PACKAGE;
  await import(/* webpackIgnore: true */ /* @vite-ignore */ name);
}

/** What to do when `name` cannot start on this platform. */
function hint(name: BackendName, where: Platform, wasmPaths: InitBackendOptions['wasmPaths']): string {
  switch (name) {
    case 'tensorflow':
      return where === 'node'
        ? 'install the native backend with `npm install @tensorflow/tfjs-node@4.22.0` (its install downloads libtensorflow, so it needs network access to Google storage)'
        : 'the native backend exists only in Node; in a page use "webgpu", "webgl", "wasm" or "cpu"';
    case 'webgl':
    case 'webgpu':
      if (where === 'node') return `"${name}" needs a browser; in Node use "tensorflow" or "wasm"`;
      if (tf.findBackendFactory(name) !== null) return 'its package is imported, but this browser cannot run it; use "wasm"';
      return `install \`@tensorflow/tfjs-backend-${name}@4.22.0\` and \`import '@tensorflow/tfjs-backend-${name}'\` once before initBackend`;
    case 'wasm': {
      if (where === 'node') return 'reinstall `@tensorflow/tfjs-backend-wasm@4.22.0` (its dist/ holds the .wasm binaries)';
      const at =
        wasmPaths === undefined ? 'beside the bundled script' : typeof wasmPaths === 'string' ? `under ${JSON.stringify(wasmPaths)}` : `at ${describe(wasmPaths)}`;
      return (
        `the page could not fetch the wasm binaries ${at}: serve ${WASM_BINARIES.join(', ')} from ` +
        'node_modules/@tensorflow/tfjs-backend-wasm/dist/ and pass their folder as initBackend({ wasmPaths: "/that/folder/" }), ' +
        'before anything starts the wasm backend (a failed start needs a page reload)'
      );
    }
    case 'cpu':
      return 'install `@tensorflow/tfjs-backend-cpu@4.22.0`';
  }
}

async function tryBackend(name: BackendName, where: Platform, automatic: boolean): Promise<string | null> {
  try {
    if (name === 'tensorflow') {
      if (where !== 'node') return 'not in Node';
      await loadNative();
    }
    if (tf.findBackendFactory(name) === null) return `no "${name}" backend is registered`;
    if (automatic && name === 'webgl') {
      const renderer = webglRenderer();
      if (renderer !== null && isSoftwareRenderer(renderer)) return `WebGL here is a software rasterizer (${renderer}), slower than wasm; initBackend("webgl") uses it anyway`;
    }
    if (name === 'webgpu') {
      // tfjs's own start fails on a missing adapter with a bare warning; say what is missing. A
      // software fallback adapter is refused only in the automatic choice.
      const problem = await webgpuProblem();
      if (problem !== null && (automatic || !problem.includes('software'))) return problem;
    }
    const ok = await tf.setBackend(name);
    if (!ok) return `the "${name}" backend failed to start`;
    await tf.ready();
    return null;
  } catch (err) {
    return String((err as Error)?.message ?? err).split('\n')[0];
  }
}

function checkWasmPaths(value: unknown): InitBackendOptions['wasmPaths'] {
  if (value === undefined) return undefined;
  const expected = `a folder URL ending in "/" (where ${WASM_BINARIES.join(', ')} are served), or an object with a URL for each of them`;
  if (typeof value === 'string') {
    if (value === '' || !value.endsWith('/')) invalid('initBackend', 'wasmPaths', value, expected);
    return value;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) invalid('initBackend', 'wasmPaths', value, expected);
  const map = value as Record<string, unknown>;
  const extra = Object.keys(map).filter((k) => !(WASM_BINARIES as readonly string[]).includes(k));
  const missing = WASM_BINARIES.filter((k) => typeof map[k] !== 'string' || map[k] === '');
  if (extra.length > 0 || missing.length > 0) {
    invalid('initBackend', 'wasmPaths', value, `${expected}${missing.length > 0 ? ` (missing: ${missing.join(', ')})` : ''}${extra.length > 0 ? ` (unknown: ${extra.join(', ')})` : ''}`);
  }
  return map as Record<WasmBinary, string>;
}

/**
 * Select and initialise the TensorFlow.js backend; resolves to its name.
 *
 * A backend name (or `{ backend }`, or else the `LORA_BACKEND` environment variable in Node)
 * forces one backend and fails with what to do when it cannot start. Otherwise the first of
 * {@link BACKEND_ORDER} for this platform that starts wins. In a page, pass `{ wasmPaths }`
 * when the wasm binaries are not served beside the script.
 */
export async function initBackend(preferred?: BackendName | InitBackendOptions): Promise<BackendName> {
  const options: InitBackendOptions = typeof preferred === 'object' && preferred !== null ? preferred : { backend: preferred as BackendName | undefined };
  if (typeof preferred === 'object' && preferred !== null) {
    // A Map, an array or a class instance would pass as "an object" and be read as no options.
    const proto = Object.getPrototypeOf(preferred);
    if (proto !== Object.prototype && proto !== null) invalid('initBackend', 'options', preferred, 'a plain options object { backend?, wasmPaths?, threads? }');
    const unknown = Object.keys(preferred).filter((k) => k !== 'backend' && k !== 'wasmPaths' && k !== 'threads');
    if (unknown.length > 0) invalid('initBackend', 'options', preferred, `an options object { backend?, wasmPaths?, threads? } (unknown: ${unknown.join(', ')})`);
  } else if (preferred !== undefined && typeof preferred !== 'string') {
    invalid('initBackend', 'preferred', preferred, `a backend name (one of ${BACKENDS.map((b) => JSON.stringify(b)).join(', ')}) or an options object { backend?, wasmPaths?, threads? }`);
  }
  const fromEnv = typeof process !== 'undefined' ? process.env?.LORA_BACKEND : undefined;
  const argument = typeof preferred === 'object' && preferred !== null ? 'backend' : 'preferred';
  const forced =
    options.backend !== undefined
      ? checkOneOf('initBackend', argument, options.backend, BACKENDS)
      : fromEnv !== undefined && fromEnv !== ''
        ? checkOneOf('initBackend', 'LORA_BACKEND', fromEnv, BACKENDS)
        : undefined;
  const wasmPaths = checkWasmPaths(options.wasmPaths);
  const threads = options.threads === undefined ? undefined : checkWasmThreads('initBackend', 'threads', options.threads);
  const where = platform();
  if (where === 'node') wasmThreadsFromEnv(); // a bad LORA_WASM_THREADS fails here, before anything starts
  if (threads !== undefined) {
    if (started('wasm')) checkRunningThreads(threads);
    else if (where === 'node') requestWasmThreads(threads);
    else setThreadsCount(threads);
  }
  // Not tf.findBackend: it starts the backend it looks up, which would fetch the binaries
  // from the old location first.
  if (wasmPaths !== undefined && where === 'browser') {
    if (started('wasm')) {
      // Too late for new paths: the binaries are loaded. The same paths again are fine.
      if (JSON.stringify(wasmPaths) !== JSON.stringify(wasmPathsSet)) {
        invalid('initBackend', 'wasmPaths', wasmPaths, `the paths wasm started with (${wasmPathsSet === undefined ? 'beside the bundled script' : describe(wasmPathsSet)}): they cannot change once it has started; reload the page`);
      }
    } else {
      try {
        setWasmPaths(wasmPaths);
        wasmPathsSet = wasmPaths;
      } catch (err) {
        // tfjs refuses new paths after a failed start: the old ones stay, so say what happened.
        throw new Error(`initBackend: wasmPaths cannot change after the wasm backend failed to start (${(err as Error).message}); reload the page and call initBackend({ wasmPaths }) first`);
      }
    }
  }
  if (forced !== undefined) {
    if (tf.getBackend() === forced) {
      await tf.ready(); // a start already under way (tf.setBackend not awaited) finishes first
    } else {
      const failure = await tryBackend(forced, where, false);
      if (failure !== null) {
        throw new Error(`initBackend: backend "${forced}" cannot be used (${failure}); ${hint(forced, where, wasmPaths)}`);
      }
    }
    if (forced === 'wasm' && threads !== undefined && where === 'node') checkRunningThreads(threads);
    return forced;
  }
  const failures: string[] = [];
  for (const name of BACKEND_ORDER[where]) {
    const failure = await tryBackend(name, where, true);
    if (failure === null) {
      // Falling back past wasm costs ~45× on matMul: say so rather than run slowly in silence.
      if (name === 'cpu' && failures.some((f) => f.startsWith('wasm:'))) {
        warn(`initBackend: running on the plain cpu backend because wasm did not start (${failures.find((f) => f.startsWith('wasm:'))}); ${hint('wasm', where, wasmPaths)}`);
      }
      // The app registered a GPU backend that was passed over: say why, once, with the backend chosen.
      for (const skipped of failures.filter((f) => /^web(gl|gpu): /.test(f) && !f.includes('is registered'))) {
        warn(`initBackend: ${skipped.replace(': ', ' skipped: ')}; using ${name}`);
      }
      if (name === 'wasm' && threads !== undefined && where === 'node') checkRunningThreads(threads);
      return name;
    }
    failures.push(`${name}: ${failure}`);
  }
  throw new Error(`initBackend: no backend could be initialised (${failures.join('; ')}); ${hint('wasm', where, wasmPaths)}`);
}

/**
 * Refuse a thread count other than the one wasm runs (it is fixed at the start). A start that
 * fell back to one thread has already warned why, so it passes.
 */
function checkRunningThreads(threads: number): void {
  const running = runningWasmThreads();
  const state = wasmThreadsState();
  if (Math.min(threads, MAX_WASM_THREADS) === running || (state?.fallback ?? null) !== null) return;
  invalid('initBackend', 'threads', threads, `the ${running} thread${running === 1 ? '' : 's'} wasm started with: the count is fixed once wasm has started; set it in the process's first initBackend call, or with ${WASM_THREADS_ENV} before wasm starts`);
}

/** The active backend's name, with wasm's SIMD flag and thread count, e.g. `wasm (SIMD, 2 threads)`. */
export function backendSummary(): string {
  const name = tf.getBackend();
  if (name !== 'wasm') return name;
  const simd = tf.env().getBool('WASM_HAS_SIMD_SUPPORT');
  const threads = runningWasmThreads();
  return `wasm (${simd ? 'SIMD' : 'no SIMD'}, ${threads} thread${threads === 1 ? '' : 's'})`;
}
