/**
 * Starting tfjs-backend-wasm's threaded SIMD build in Node (Node only: the core loads this file
 * on demand, from wasm-threads.ts, so that a page's bundle never sees a Node built-in).
 *
 * tfjs 4.22 turns threads off in Node (its flag WASM_HAS_MULTITHREAD_SUPPORT is false there),
 * and forcing the flag on fails: its init() hands Emscripten `blob:` URLs for the pthread
 * worker and for the main script, and Node's worker_threads refuses them (ERR_WORKER_PATH).
 * The Emscripten glue itself supports Node pthreads, so this file calls the glue's factory
 * itself, with what Node needs, and wraps the module in tfjs's exported BackendWasm:
 *  - `mainScriptUrlOrBlob`: the file path of the standalone glue, which each pthread
 *    evaluates (it defines the global `WasmBackendModuleThreadedSimd`);
 *  - `locateFile`: our own worker entry (wasm-pthread-worker.cjs), which runs the worker code
 *    tfjs ships as a string;
 *  - `instantiateWasm`: tfjs's C side caps threads at `emscripten_num_logical_cores() / 2`
 *    (it assumes two hyper-threads per core), so 2 cores would get 1 thread; the import
 *    reports twice the count asked for, which makes the cap the count itself;
 *  - the workers are unref'd: XNNPACK's pool threads never end, and a ref'd worker keeps
 *    Node alive after a script returns.
 * Everything this relies on is checked before use (and by test/wasm-threads.test.ts), so a
 * different tfjs fails here with a reason, and the caller falls back to one thread.
 */
import type { EventEmitter } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { BackendWasm, setThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { moduleFile } from '../util/module-url.js';
import { MAX_WASM_THREADS } from './wasm-threads.js';

/** The one tfjs-backend-wasm version whose internals this file was written against. */
export const TFJS_WASM_VERSION = '4.22.0';


/** The files of `@tensorflow/tfjs-backend-wasm` this start uses, relative to the package. */
export const THREADED_FILES = {
  glue: 'wasm-out/tfjs-backend-wasm-threaded-simd.js',
  workerCode: 'wasm-out/tfjs-backend-wasm-threaded-simd.worker.js',
  binary: 'dist/tfjs-backend-wasm-threaded-simd.wasm',
} as const;

/** The C functions tfjs's BackendWasm calls through `module.tfjs` (as tfjs's own init() wraps them). */
const C_FUNCTIONS = {
  init: ['init', null, []],
  initWithThreadsCount: ['init_with_threads_count', null, ['number']],
  getThreadsCount: ['get_threads_count', 'number', []],
  registerTensor: ['register_tensor', null, ['number', 'number', 'number']],
  disposeData: ['dispose_data', null, ['number']],
  dispose: ['dispose', null, []],
} as const;

/** The wasm import that reports the core count to the C side. */
const CORES_IMPORT = 'emscripten_num_logical_cores';

interface PThreadPool {
  runningWorkers: Worker[];
  unusedWorkers: Worker[];
  terminateAllThreads(): void;
}

/** The parts of the Emscripten module this file touches. */
interface ThreadedModule {
  cwrap(name: string, returns: string | null, args: readonly string[]): (...args: number[]) => number | void;
  PThread?: PThreadPool;
  tfjs?: Record<string, unknown>;
}

type ImportObject = { env?: Record<string, unknown> } & Record<string, unknown>;

interface ModuleConfig {
  mainScriptUrlOrBlob: string;
  locateFile(path: string, prefix: string): string;
  instantiateWasm(imports: ImportObject, receive: (instance: WebAssembly.Instance, module: WebAssembly.Module) => void): object;
  onAbort(what: unknown): void;
  PThread?: PThreadPool;
}

type Factory = (config: ModuleConfig) => Promise<ThreadedModule>;

/** The logical cores this process may use (cgroup and affinity limits included). */
export function logicalCores(): number {
  return availableParallelism();
}

/** The default thread count: every core, up to tfjs's pool of {@link MAX_WASM_THREADS}. */
export function defaultWasmThreads(): number {
  return Math.min(logicalCores(), MAX_WASM_THREADS);
}

/** Where the pieces are; throws, naming what is missing, when this tfjs is not the one expected. */
export function threadedWasmFiles(): { glue: string; workerCode: string; binary: string; worker: string; version: string } {
  const here = moduleFile();
  if (here === null) throw new Error('cannot locate lora-tfjs\'s own files (no __filename)');
  const require = createRequire(here);
  const packageJson = require.resolve('@tensorflow/tfjs-backend-wasm/package.json');
  const version = (JSON.parse(readFileSync(packageJson, 'utf8')) as { version?: unknown }).version;
  if (version !== TFJS_WASM_VERSION) {
    throw new Error(`@tensorflow/tfjs-backend-wasm is ${String(version)}; lora-tfjs's threaded start is written for ${TFJS_WASM_VERSION} (npm install @tensorflow/tfjs-backend-wasm@${TFJS_WASM_VERSION})`);
  }
  const root = dirname(packageJson);
  const files = {
    glue: join(root, THREADED_FILES.glue),
    workerCode: join(root, THREADED_FILES.workerCode),
    binary: join(root, THREADED_FILES.binary),
    // Beside this file's folder: src/runtime/ in the checkout, dist/*/runtime/ in the package.
    worker: join(dirname(here), '..', 'runtime', 'wasm-pthread-worker.cjs'),
    version,
  };
  for (const [what, file] of Object.entries(files)) {
    if (what !== 'version' && !existsSync(file)) throw new Error(`${file} is missing`);
  }
  return files;
}

/** What a threaded start gives back: the backend for tfjs's engine, and the thread count it runs. */
export interface ThreadedBackend {
  backend: BackendWasm;
  threads: number;
}

/**
 * Start the threaded SIMD module with `threads` XNNPACK threads (1–8) and wrap it in tfjs's
 * BackendWasm. Rejects with the reason when anything it relies on differs, or when the start
 * takes longer than `timeoutMs` (a worker that never reports back hangs rather than throws);
 * the workers of a failed start are terminated.
 */
export async function startThreadedWasm(threads: number, timeoutMs: number): Promise<ThreadedBackend> {
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_WASM_THREADS) {
    throw new Error(`startThreadedWasm: threads = ${threads} is invalid; expected an integer from 1 to ${MAX_WASM_THREADS}`);
  }
  const files = threadedWasmFiles();
  const require = createRequire(files.glue);
  // Loaded with Node's own require (not an import a bundler or vitest would transform): the
  // glue must keep its real __filename, and the pthreads evaluate the same file.
  const factory = require(files.glue) as unknown;
  if (typeof factory !== 'function') throw new Error(`${files.glue} no longer exports the module factory`);
  const bytes = readFileSync(files.binary);

  let config: ModuleConfig | null = null;
  let starting = true;
  const started = new Promise<ThreadedModule>((resolve, reject) => {
    config = {
      mainScriptUrlOrBlob: files.glue,
      locateFile: (path, prefix) => (path.endsWith('.worker.js') ? files.worker : path.endsWith('.wasm') ? files.binary : prefix + path),
      instantiateWasm(imports, receive) {
        const env = imports.env;
        if (env === undefined || typeof env[CORES_IMPORT] !== 'function') {
          reject(new Error(`the threaded module no longer imports env.${CORES_IMPORT}`));
          return {};
        }
        env[CORES_IMPORT] = () => 2 * threads;
        WebAssembly.instantiate(bytes, imports as WebAssembly.Imports).then((r) => receive(r.instance, r.module), reject);
        return {};
      },
      onAbort: (what) => reject(new Error(`the threaded module aborted (${String(what)})`)),
    };
    // The glue makes every uncaught exception and unhandled rejection of the process rethrow
    // from its own handler (which prints its whole minified source and exits with code 7, in a
    // tslab kernel too). Node's defaults already end the process on both, readably: keep those.
    const events = ['uncaughtException', 'unhandledRejection'];
    const emitter = process as unknown as EventEmitter;
    const before = events.map((event) => emitter.listeners(event));
    const restoreWorker = swapGlobalWorker(pthreadWorkerClass(() => starting, reject));
    try {
      (factory as Factory)(config).then(resolve, reject);
    } finally {
      restoreWorker();
      events.forEach((event, i) => {
        for (const listener of emitter.listeners(event)) {
          if (!before[i].includes(listener)) emitter.removeListener(event, listener as (...args: unknown[]) => void);
        }
      });
    }
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`its pthread workers did not start within ${timeoutMs} ms`)), timeoutMs);
  });
  let mod: ThreadedModule;
  try {
    mod = await Promise.race([started, timeout]);
    starting = false;
  } catch (err) {
    terminate(config);
    throw err;
  } finally {
    clearTimeout(timer);
  }
  try {
    const pool = mod.PThread;
    if (pool === undefined || !Array.isArray(pool.unusedWorkers) || !Array.isArray(pool.runningWorkers)) {
      throw new Error('the threaded module no longer exposes PThread.{unusedWorkers,runningWorkers}');
    }
    mod.tfjs = Object.fromEntries(Object.entries(C_FUNCTIONS).map(([key, [name, returns, args]]) => [key, mod.cwrap(name, returns, args)]));
    // The count is read by BackendWasm's constructor, which starts XNNPACK's pool with it.
    setThreadsCount(threads);
    // Running a pthread ref()s its worker (glue: spawnThread). Stop that before the pool starts,
    // then unref every worker: work reaches them through shared memory, not the event loop.
    for (const worker of [...pool.unusedWorkers, ...pool.runningWorkers]) {
      worker.unref();
      worker.ref = () => worker;
    }
    const backend = new BackendWasm(mod as never);
    const running = (mod.tfjs.getThreadsCount as () => number)();
    if (running !== threads) throw new Error(`XNNPACK started ${running} threads, not the ${threads} asked for`);
    return { backend, threads: running };
  } catch (err) {
    terminate(mod);
    throw err;
  }
}

/**
 * The Worker class the glue's pthreads are made with while the module starts:
 *  - without `--input-type` in the workers' flags (inherited from `node --input-type=module -e`,
 *    it makes Node refuse a file entry);
 *  - a worker error during the start rejects the start (the glue's own handler rethrows it from
 *    an event listener, which would end the process instead of falling back to one thread);
 *    after the start, errors go to the glue's handler as before.
 */
function pthreadWorkerClass(starting: () => boolean, fail: (err: Error) => void): typeof Worker {
  const execArgv = process.execArgv.filter((arg, i, all) => !arg.startsWith('--input-type') && all[i - 1] !== '--input-type');
  return class PthreadWorker extends Worker {
    constructor(file: string | URL, options?: WorkerOptions) {
      super(file, { ...options, execArgv });
      let glueOnError: ((e: unknown) => void) | undefined;
      Object.defineProperty(this, 'onerror', {
        configurable: true,
        get: () => (e: unknown) => {
          if (starting()) fail(new Error(`a pthread worker failed (${String((e as Error)?.message ?? e).split('\n')[0]})`));
          else glueOnError?.(e);
        },
        set: (fn: (e: unknown) => void) => {
          glueOnError = fn;
        },
      });
    }
  };
}

/**
 * While the factory runs (it makes all 8 pool workers then), `Worker` in the glue is `replacement`:
 * the glue assigns `global.Worker = worker_threads.Worker` and then calls `new Worker(file)`.
 * Afterwards `global.Worker` is what the glue meant it to be (tfjs's own start leaves it so too).
 */
function swapGlobalWorker(replacement: typeof Worker): () => void {
  const g = globalThis as Record<string, unknown>;
  const previous = Object.getOwnPropertyDescriptor(g, 'Worker');
  let assigned: unknown = previous?.value;
  Object.defineProperty(g, 'Worker', {
    configurable: true,
    get: () => replacement,
    set: (value: unknown) => {
      assigned = value;
    },
  });
  return () => {
    if (previous !== undefined && !('value' in previous)) Object.defineProperty(g, 'Worker', previous);
    else Object.defineProperty(g, 'Worker', { configurable: true, writable: true, enumerable: false, value: assigned ?? Worker });
  };
}

function terminate(mod: { PThread?: PThreadPool } | null): void {
  try {
    mod?.PThread?.terminateAllThreads();
  } catch {
    /* a half-started pool: nothing more to stop */
  }
}
