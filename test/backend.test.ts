import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
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
      'initBackend: preferred = "gpu" is invalid; expected one of "tensorflow", "wasm", "cpu"',
    );
    process.env.LORA_BACKEND = 'webgpu';
    await expect(initBackend()).rejects.toThrow('initBackend: LORA_BACKEND = "webgpu" is invalid');
  });

  it.runIf(!nativeInstalled)('explains how to install the native backend when it is forced but missing', async () => {
    const active = tf.getBackend();
    await expect(initBackend('tensorflow')).rejects.toThrow(/npm install @tensorflow\/tfjs-node@4\.22\.0/);
    expect(tf.getBackend()).toBe(active); // a failed switch changes nothing
  });
});
