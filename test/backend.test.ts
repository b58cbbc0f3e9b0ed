import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { afterEach, describe, expect, it } from 'vitest';
import { backendSummary, initBackend } from '../src/index.js';

const nativeInstalled = (() => {
  try {
    createRequire(import.meta.url).resolve('@tensorflow/tfjs-node');
    return true;
  } catch {
    return false;
  }
})();

describe('initBackend', () => {
  afterEach(() => {
    delete process.env.LORA_BACKEND;
  });

  it('picks the fastest backend that loads, and says which', async () => {
    const name = await initBackend();
    expect(name).toBe(nativeInstalled ? 'tensorflow' : 'wasm');
    expect(tf.getBackend()).toBe(name);
    if (name === 'wasm') expect(backendSummary()).toMatch(/^wasm \((SIMD|no SIMD), /);
  });

  it('honours LORA_BACKEND', async () => {
    process.env.LORA_BACKEND = 'cpu';
    expect(await initBackend()).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    process.env.LORA_BACKEND = 'wasm';
    expect(await initBackend()).toBe('wasm');
  });

  it('lets an explicit argument win over LORA_BACKEND', async () => {
    process.env.LORA_BACKEND = 'wasm';
    expect(await initBackend('cpu')).toBe('cpu');
  });

  it('rejects an unknown backend, naming the argument and the choices', async () => {
    await expect(initBackend('gpu' as never)).rejects.toThrow(
      'initBackend: preferred = "gpu" is invalid; expected one of "tensorflow", "webgpu", "webgl", "wasm", "cpu"',
    );
    process.env.LORA_BACKEND = 'gpu';
    await expect(initBackend()).rejects.toThrow('initBackend: LORA_BACKEND = "gpu" is invalid');
    await expect(initBackend({ backend: 'gpu' as never })).rejects.toThrow('initBackend: backend = "gpu" is invalid');
    await expect(initBackend({ backnd: 'wasm' } as never)).rejects.toThrow('initBackend: options = { backnd: "wasm" } is invalid; expected an options object { backend?, wasmPaths?, threads? } (unknown: backnd)');
    await expect(initBackend(3 as never)).rejects.toThrow('initBackend: preferred = 3 is invalid; expected a backend name');
    // Objects that are not plain options are refused, not read as "no options".
    for (const odd of [[], new Map([['backend', 'cpu']]), new Date(0), Object.create({ backend: 'cpu' })]) {
      await expect(initBackend(odd as never)).rejects.toThrow(/^initBackend: options = .* is invalid; expected a plain options object \{ backend\?, wasmPaths\?, threads\? \}$/);
    }
    expect(await initBackend(Object.assign(Object.create(null), { backend: 'cpu' }))).toBe('cpu');
  });

  it('says that the GPU backends need a page, and what a page needs', async () => {
    const active = tf.getBackend();
    for (const name of ['webgl', 'webgpu'] as const) {
      await expect(initBackend(name)).rejects.toThrow(`initBackend: backend "${name}" cannot be used (no "${name}" backend is registered); "${name}" needs a browser; in Node use "tensorflow" or "wasm"`);
    }
    expect(tf.getBackend()).toBe(active);
  });

  it('refuses wasmPaths that tfjs would misread, before anything changes', async () => {
    const active = tf.getBackend();
    for (const bad of ['', '/assets', 3, null, [], { 'tfjs-backend-wasm.wasm': '/a.wasm' }, { 'tfjs-backend-wasm.wasm': 'a', 'tfjs-backend-wasm-simd.wasm': 'b', 'tfjs-backend-wasm-threaded-simd.wasm': 'c', extra: 'd' }]) {
      await expect(initBackend({ wasmPaths: bad as never })).rejects.toThrow(/^initBackend: wasmPaths = .* is invalid; expected a folder URL ending in "\/"/);
    }
    await expect(initBackend({ wasmPaths: { 'tfjs-backend-wasm.wasm': '/a.wasm' } as never })).rejects.toThrow('(missing: tfjs-backend-wasm-simd.wasm, tfjs-backend-wasm-threaded-simd.wasm)');
    expect(tf.getBackend()).toBe(active);
    // In Node the binaries are found beside the package: a valid folder is accepted and unused.
    expect(await initBackend({ backend: 'wasm', wasmPaths: '/nowhere/' })).toBe('wasm');
  });

  it('tries the native backend first in Node when one is registered (a stand-in here: tfjs-node cannot install on these machines)', async () => {
    const active = tf.getBackend();
    tf.registerBackend('tensorflow', () => new MathBackendCPU());
    try {
      expect(await initBackend()).toBe('tensorflow');
      expect(tf.getBackend()).toBe('tensorflow');
    } finally {
      await tf.setBackend(active);
      tf.removeBackend('tensorflow');
    }
    expect(tf.findBackendFactory('tensorflow')).toBeNull();
  });

  it.runIf(!nativeInstalled)('explains how to install the native backend when it is forced but missing', async () => {
    const active = tf.getBackend();
    await expect(initBackend('tensorflow')).rejects.toThrow(/npm install @tensorflow\/tfjs-node@4\.22\.0/);
    expect(tf.getBackend()).toBe(active); // a failed switch changes nothing
  });
});
