import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoRAMLP, decodeSafetensors, encodeSafetensors, initBackend, mlpFromTorchSafetensors, mlpToTorchSafetensors, type EncodableTensor } from '../src/index.js';

const DIMS = [12, 16, 10, 6];

/** A state dict as `torch.save_file` would write it: `name.weight [out, in]`, `name.bias`, with seeded values. */
function stateDict(names: string[], dims: number[], bias = true, extra: Record<string, EncodableTensor> = {}): Uint8Array {
  const tensors: Record<string, EncodableTensor> = { ...extra };
  let seed = 1;
  names.forEach((n, i) => {
    const w = new Float32Array(dims[i + 1] * dims[i]).map(() => Math.sin(seed++ * 12.9898) * 0.5);
    tensors[`${n}.weight`] = { shape: [dims[i + 1], dims[i]], data: w };
    if (bias) tensors[`${n}.bias`] = { shape: [dims[i + 1]], data: new Float32Array(dims[i + 1]).map(() => Math.cos(seed++) * 0.1) };
  });
  return encodeSafetensors(tensors, { format: 'pt' });
}

/** The network a state dict describes, in plain JS: ReLU between the layers, in the given order. */
function forwardJs(bytes: Uint8Array, order: string[], x: number[][]): number[][] {
  const { tensors } = decodeSafetensors(bytes);
  let h = x;
  order.forEach((n, li) => {
    const w = tensors.get(`${n}.weight`)!;
    const b = tensors.get(`${n}.bias`);
    const [out, inF] = w.shape;
    h = h.map((row) =>
      Array.from({ length: out }, (_, o) => {
        let s = b ? b.data[o] : 0;
        for (let k = 0; k < inF; k++) s += row[k] * w.data[o * inF + k];
        return li < order.length - 1 ? Math.max(0, s) : s;
      }),
    );
  });
  return h;
}

function maxDiff(a: number[][], b: number[][]): number {
  return Math.max(...a.flatMap((r, i) => r.map((v, j) => Math.abs(v - b[i][j]))));
}

describe("base networks in PyTorch's state-dict layout", () => {
  let tensorsAtStart: number;
  const x = Array.from({ length: 3 }, (_, i) => Array.from({ length: 12 }, (_, j) => Math.sin(i * 12 + j)));
  beforeAll(async () => {
    await initBackend('wasm');
    tensorsAtStart = tf.memory().numTensors;
  });
  afterAll(() => expect(tf.memory().numTensors).toBe(tensorsAtStart));

  const cases: Array<[string, string[], string[], { prefix?: string; layers?: string[] }]> = [
    ['fcN, as the reference names them', ['fc1', 'fc2', 'fc3'], ['fc1', 'fc2', 'fc3'], {}],
    ['nn.Sequential: 0, 2, 4 with activations between', ['0', '2', '4'], ['0', '2', '4'], {}],
    ['nested in a larger model, read with a prefix', ['mlp.fc1', 'mlp.fc2', 'mlp.fc3'], ['mlp.fc1', 'mlp.fc2', 'mlp.fc3'], { prefix: 'mlp.' }],
    ['nested Sequential', ['net.0', 'net.2', 'net.4'], ['net.0', 'net.2', 'net.4'], { prefix: 'net.' }],
    ['any names, in an order given', ['encoder', 'middle', 'head'], ['encoder', 'middle', 'head'], { layers: ['encoder', 'middle', 'head'] }],
  ];
  it.each(cases)('%s: the MLP computes what the file describes and keeps its names', (_, keys, names, options) => {
    const bytes = stateDict(keys, DIMS);
    const mlp = mlpFromTorchSafetensors(bytes, options);
    expect(mlp.dims).toEqual(DIMS);
    expect(mlp.names).toEqual(names);
    const xt = tf.tensor2d(x);
    const y = mlp.predict(xt);
    expect(maxDiff(y.arraySync() as number[][], forwardJs(bytes, keys, x))).toBeLessThan(1e-5);
    // Written back, it is the same state dict, key for key and bit for bit.
    const again = decodeSafetensors(mlpToTorchSafetensors(mlp));
    const original = decodeSafetensors(bytes);
    expect([...again.tensors.keys()].sort()).toEqual([...original.tensors.keys()].sort());
    for (const [k, t] of original.tensors) expect(Array.from(again.tensors.get(k)!.data), k).toEqual(Array.from(t.data));
    tf.dispose([xt, y]);
    mlp.dispose();
  });

  it('orders Sequential indices numerically (10 after 2) and requires fc1…fcN without gaps', () => {
    const dims = [4, 5, 6, 7, 3];
    const bytes = stateDict(['0', '2', '4', '10'], dims);
    const mlp = mlpFromTorchSafetensors(bytes);
    expect(mlp.names).toEqual(['0', '2', '4', '10']);
    expect(mlp.dims).toEqual(dims);
    mlp.dispose();
    expect(() => mlpFromTorchSafetensors(stateDict(['fc1', 'fc3'], [12, 16, 10]))).toThrow(/layer names = \["fc1", "fc3"\] is invalid; expected consecutive layers fc1, fc2/);
    // nn.Sequential(Linear, Linear): nothing between them, so not a ReLU network.
    expect(() => mlpFromTorchSafetensors(stateDict(['0', '1'], [2, 3, 1]))).toThrow(/0 and 1 are adjacent, so nothing sits between them; lora-tfjs's MLP puts a ReLU there/);
  });

  it('reads and writes bias-free layers (nn.Linear(bias=False)), and a LoRAMLP exports its frozen base', () => {
    const bytes = stateDict(['fc1', 'fc2', 'fc3'], DIMS, false);
    const mlp = mlpFromTorchSafetensors(bytes);
    expect(mlp.layers.every((l) => l.b === undefined)).toBe(true);
    expect(mlp.parameterCounts().total).toBe(12 * 16 + 16 * 10 + 10 * 6);
    const model = LoRAMLP.fromBase(mlp, { rank: 2, seed: 1 });
    model.layers.forEach((l, i) => {
      const b = tf.fill(l.B.shape, 0.1 * (i + 1));
      l.B.assign(b as tf.Tensor2D);
      b.dispose();
    });
    const exported = decodeSafetensors(mlpToTorchSafetensors(model)); // the frozen base, not base + adapter
    expect([...exported.tensors.keys()].sort()).toEqual(['fc1.weight', 'fc2.weight', 'fc3.weight']);
    for (const [k, t] of decodeSafetensors(bytes).tensors) expect(Array.from(exported.tensors.get(k)!.data), k).toEqual(Array.from(t.data));
    model.merge();
    expect(() => mlpToTorchSafetensors(model)).toThrow('mlpToTorchSafetensors: adapter "default" is merged into the weights; call unmerge() to export the frozen base');
    model.unmerge();
    // F16 export rounds as PyTorch's .half() does, and reads back as float32.
    const half = decodeSafetensors(mlpToTorchSafetensors(mlp, { dtype: 'F16', prefix: 'mlp.' }));
    expect(half.tensors.get('mlp.fc1.weight')!.dtype).toBe('F16');
    const w = mlp.layers[0].W.arraySync();
    expect(Math.abs(half.tensors.get('mlp.fc1.weight')!.data[1 * 12 + 5] - w[5][1])).toBeLessThan(1e-3);
    model.dispose();
    mlp.dispose();
  });

  it('refuses files that are not a stack of linear layers, naming the key, and allocates nothing', () => {
    const before = tf.memory().numTensors;
    const good = decodeSafetensors(stateDict(['fc1', 'fc2', 'fc3'], DIMS));
    const edit = (f: (m: Map<string, EncodableTensor>) => void) => {
      const m = new Map<string, EncodableTensor>([...good.tensors].map(([k, v]) => [k, { shape: v.shape, data: v.data }]));
      f(m);
      return encodeSafetensors(Object.fromEntries(m));
    };
    expect(() => mlpFromTorchSafetensors(edit((m) => m.delete('fc2.bias')))).toThrow('mlpFromTorchSafetensors: fc2.bias = undefined is invalid; expected a bias (the first layer has one, so every layer needs one)');
    expect(() => mlpFromTorchSafetensors(edit((m) => m.set('fc2.weight', { shape: [10, 15], data: new Float32Array(150) })))).toThrow(
      /fc2\.weight = a tensor of shape \[10, 15\] is invalid; expected a tensor \[out, 16\] \(its input must be fc1's output\)/,
    );
    expect(() => mlpFromTorchSafetensors(edit((m) => m.set('fc2.running_mean', { shape: [10], data: new Float32Array(10) })))).toThrow(/unexpected keys; pass \{ prefix \}/);
    expect(() => mlpFromTorchSafetensors(stateDict(['mlp.fc1', 'mlp.fc2'], [12, 16, 10]))).toThrow(/these look nested: pass \{ prefix: "mlp\." \}/);
    expect(() => mlpFromTorchSafetensors(stateDict(['a', 'b'], [12, 16, 10]))).toThrow(/or pass \{ layers: \[\.\.\.\] \} in forward order/);
    expect(() => mlpFromTorchSafetensors(encodeSafetensors({ 'x.weight': { shape: [1], data: new Float32Array(1) } }))).toThrow(/expected 2-D tensors named <layer>\.weight/);
    expect(() => mlpFromTorchSafetensors(stateDict(['fc1'], [2, 3]), { prefix: 'mlp' })).toThrow(/prefix = "mlp" is invalid; expected a module path ending in "\."/);
    expect(tf.memory().numTensors).toBe(before);
  });
});
