import * as tf from '@tensorflow/tfjs-core';
// tfjs-core's Node build registers no gradient functions; the union package does (and
// shares the core instance). Without it, training fails with "gradient function not found".
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { checkOneOf } from '../util/validate.js';
import { registerWasmTrainingKernels } from './wasm-kernels.js';

// The wasm backend lacks the gradients of gather and conv2d (filter); supply them on import.
registerWasmTrainingKernels();

/** The TensorFlow.js backends lora-tfjs can run on, fastest first. */
export const BACKENDS = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

const INSTALL_HINT: Record<BackendName, string> = {
  tensorflow:
    'install the native backend with `npm install @tensorflow/tfjs-node@4.22.0` (its install downloads libtensorflow, so it needs network access to Google storage)',
  wasm: 'install `@tensorflow/tfjs-backend-wasm@4.22.0`',
  cpu: 'install `@tensorflow/tfjs-backend-cpu@4.22.0`',
};

async function loadNative(): Promise<void> {
  if (tf.findBackend('tensorflow') !== null) return;
  // tfjs-node registers the "tensorflow" backend on the shared tfjs-core instance when it loads.
  await import('@tensorflow/tfjs-node' as string);
}

async function tryBackend(name: BackendName): Promise<string | null> {
  try {
    if (name === 'tensorflow') await loadNative();
    if (tf.findBackendFactory(name) === null) return `no "${name}" backend is registered`;
    const ok = await tf.setBackend(name);
    if (!ok) return `the "${name}" backend failed to initialise`;
    await tf.ready();
    return null;
  } catch (err) {
    return (err as Error).message.split('\n')[0];
  }
}

/**
 * Select and initialise the TensorFlow.js backend; resolves to its name.
 *
 * `preferred` (or else the `LORA_BACKEND` environment variable) forces one backend and
 * fails with an install hint when it cannot load. Otherwise the first that loads wins:
 * `tensorflow` (from the optional `@tensorflow/tfjs-node`), then `wasm`, then `cpu`.
 */
export async function initBackend(preferred?: BackendName): Promise<BackendName> {
  const fromEnv = typeof process !== 'undefined' ? process.env?.LORA_BACKEND : undefined;
  const forced =
    preferred !== undefined
      ? checkOneOf('initBackend', 'preferred', preferred, BACKENDS)
      : fromEnv !== undefined && fromEnv !== ''
        ? checkOneOf('initBackend', 'LORA_BACKEND', fromEnv, BACKENDS)
        : undefined;
  if (forced !== undefined) {
    if (tf.getBackend() === forced) return forced;
    const failure = await tryBackend(forced);
    if (failure !== null) {
      throw new Error(`initBackend: backend "${forced}" cannot be used (${failure}); ${INSTALL_HINT[forced]}`);
    }
    return forced;
  }
  const failures: string[] = [];
  for (const name of BACKENDS) {
    const failure = await tryBackend(name);
    if (failure === null) return name;
    failures.push(`${name}: ${failure}`);
  }
  throw new Error(`initBackend: no backend could be initialised (${failures.join('; ')})`);
}

/** The active backend's name, with wasm's SIMD/thread flags, e.g. `wasm (SIMD, 1 thread)`. */
export function backendSummary(): string {
  const name = tf.getBackend();
  if (name !== 'wasm') return name;
  const simd = tf.env().getBool('WASM_HAS_SIMD_SUPPORT');
  const threads = tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT');
  return `wasm (${simd ? 'SIMD' : 'no SIMD'}, ${threads ? 'multi-threaded' : '1 thread'})`;
}
