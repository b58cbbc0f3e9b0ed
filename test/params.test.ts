import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  LoRALinear,
  LoRAMLP,
  MLP,
  initBackend,
  mlpParameterCount,
  parameterCounts,
  parameterEfficiencyTable,
} from '../src/index.js';

const DEMO1 = [512, 2048, 2048, 128];

describe('parameter accounting (the reference demos 1 and 2)', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('reproduces demo 1 from the sizes alone', () => {
    expect(mlpParameterCount(DEMO1)).toBe(5_509_248);
    const rows = parameterEfficiencyTable(DEMO1, [2, 4, 8, 16, 32]);
    expect(rows.map((r) => r.trainable)).toEqual([17_664, 35_328, 70_656, 141_312, 282_624]);
    expect(rows.every((r) => r.frozen === 5_505_024)).toBe(true);
    expect(rows.map((r) => r.reductionPercent.toFixed(2))).toEqual(['99.68', '99.36', '98.72', '97.44', '94.87']);
    expect(rows.map((r) => r.compressionRatio.toFixed(1))).toEqual(['311.9', '155.9', '78.0', '39.0', '19.5']);
    expect(rows[0].total).toBe(5_505_024 + 17_664);
  });

  it('counts the same on real models as the table says', () => {
    const before = tf.memory().numTensors;
    const mlp = new MLP(DEMO1);
    expect(parameterCounts(mlp)).toEqual({ total: 5_509_248, trainable: 5_509_248, frozen: 0, lora: 0, saved: 0 });
    mlp.dispose();
    for (const row of parameterEfficiencyTable(DEMO1, [2, 32])) {
      const model = new LoRAMLP(DEMO1, { rank: row.rank });
      expect(parameterCounts(model)).toEqual({
        total: row.total,
        trainable: row.trainable,
        frozen: row.frozen,
        lora: row.lora,
        saved: 0,
      });
      expect(model.trainableVariables().reduce((n, v) => n + v.size, 0)).toBe(row.trainable);
      model.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('reproduces demo 2: 8→4 at rank 2 has W 32, A+B 24, a 25.0 % reduction, A [2,8] and B [4,2] in PyTorch layout', () => {
    const layer = new LoRALinear({ inFeatures: 8, outFeatures: 4, rank: 2 });
    const c = layer.parameterCounts();
    expect(c.frozen).toBe(32);
    expect(c.lora).toBe(24);
    expect(((1 - c.lora / c.frozen) * 100).toFixed(1)).toBe('25.0');
    // tfjs layout is the transpose of PyTorch's: A [in, r], B [r, out].
    expect(layer.weight.shape).toEqual([8, 4]);
    expect(layer.A.shape).toEqual([8, 2]);
    expect(layer.B.shape).toEqual([2, 4]);
    layer.dispose();
  });

  it('fromBase freezes weights and biases and trains only the adapters', () => {
    const before = tf.memory().numTensors;
    const mlp = new MLP([6, 10, 3], { seed: 1 });
    const lora = LoRAMLP.fromBase(mlp, { rank: 2 });
    expect(parameterCounts(lora)).toEqual({
      frozen: mlpParameterCount([6, 10, 3]),
      trainable: 2 * (6 + 10) + 2 * (10 + 3),
      lora: 2 * (6 + 10) + 2 * (10 + 3),
      total: mlpParameterCount([6, 10, 3]) + 2 * (6 + 10) + 2 * (10 + 3),
      saved: 0,
    });
    // A fresh adapter (B = 0) reproduces the base network exactly.
    const x = tf.randomNormal([5, 6], 0, 1, 'float32', 3);
    const a = mlp.predict(x);
    const b = lora.predict(x);
    expect(Array.from(a.dataSync())).toEqual(Array.from(b.dataSync()));
    tf.dispose([x, a, b]);
    mlp.dispose();
    lora.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
