import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  LoRAMLP,
  MLP,
  combineAdapters,
  decodeSafetensors,
  initBackend,
  mlpFromTorchSafetensors,
  mlpToTorchSafetensors,
} from '../src/index.js';
import {
  loadAdapter,
  loadAdapters,
  saveAdapter,
  saveAdapters,
} from '../src/node/index.js';
import { trainLike } from './helpers.js';
import { PeftBridge, peftPython } from './peft/bridge.js';

// Real PEFT 0.21 on torch 2.13, both ways: every adapter that loads must give PEFT's
// outputs (unmerged and merged) to 1e-5, and every refusal must name its field and leave
// the model as it was. One Python process serves the whole file.

type Outputs = Record<string, { unmerged: number[][]; merged: number[][] }>;
type BaseSpec = { kind: 'fc' | 'sequential' | 'nested'; dims: readonly number[]; bias?: boolean; seed?: number; state?: string };
interface AdapterSpec {
  name: string;
  config: Record<string, unknown>;
  seed?: number;
}

let bridge: PeftBridge;
let tmp: string;
let counter = 0;
const fresh = (label: string) => join(tmp, `${String(++counter).padStart(2, '0')}-${label}`);

/** Seeded inputs `[rows, inF]`. */
function inputs(rows: number, inF: number, seed = 7): number[][] {
  return Array.from({ length: rows }, (_, i) => Array.from({ length: inF }, (_, j) => Math.sin(seed * 1000 + i * 37 + j * 1.7) * 1.5));
}

/** max |ours − theirs| relative to the largest |theirs|. */
function relDiff(ours: number[][], theirs: number[][]): number {
  let peak = 0;
  let diff = 0;
  theirs.forEach((row, i) =>
    row.forEach((v, j) => {
      peak = Math.max(peak, Math.abs(v));
      diff = Math.max(diff, Math.abs(ours[i][j] - v));
    }),
  );
  return diff / Math.max(peak, 1e-12);
}

function predict(model: LoRAMLP, x: number[][], adapter: string, merged: boolean): number[][] {
  model.setActiveAdapter(adapter);
  if (merged) model.merge();
  const xt = tf.tensor2d(x);
  const y = model.predict(xt);
  const out = y.arraySync() as number[][];
  tf.dispose([xt, y]);
  if (merged) model.unmerge();
  return out;
}

/** Our outputs against PEFT's for every adapter, unmerged and merged. */
function expectSameOutputs(model: LoRAMLP, x: number[][], theirs: Outputs): void {
  for (const [name, o] of Object.entries(theirs)) {
    expect(relDiff(predict(model, x, name, false), o.unmerged), `${name} unmerged`).toBeLessThan(1e-5);
    expect(relDiff(predict(model, x, name, true), o.merged), `${name} merged`).toBeLessThan(1e-5);
  }
}

/** Warnings PEFT raised, minus its note that layers an adapter does not cover were never merged. */
const meaningful = (warnings: string[]) => warnings.filter((w) => !/Already unmerged/.test(w));


/** PEFT trains-like and saves; we load its base and adapters. */
async function fromPeft(base: BaseSpec, adapters: AdapterSpec[], options: { prefix?: string; dtype?: string } = {}) {
  const dir = fresh('peft');
  const basePath = `${dir}-base.safetensors`;
  const x = inputs(6, base.dims[0]);
  const saved = await bridge.call<{ outputs: Outputs; warnings: string[] }>('save_peft', { base, adapters, dir, x, save_base: basePath, dtype: options.dtype });
  const mlp = mlpFromTorchSafetensors(new Uint8Array(readFileSync(basePath)), { prefix: options.prefix });
  const model = LoRAMLP.fromBase(mlp, { noAdapter: true });
  mlp.dispose();
  return { dir, x, model, theirs: saved.outputs };
}

/** We save; PEFT loads onto the same base (written by us as a state dict). */
async function toPeft(model: LoRAMLP, base: Omit<BaseSpec, 'state'>, options: { prefix?: string; dtype?: 'F16' | 'BF16'; names?: string[] } = {}) {
  const dir = fresh('ours');
  const basePath = `${dir}-base.safetensors`;
  writeFileSync(basePath, mlpToTorchSafetensors(model, { prefix: options.prefix }));
  const written = saveAdapters(model, dir, { names: options.names, prefix: options.prefix, dtype: options.dtype });
  const x = inputs(6, model.dims[0], 3);
  const loaded = await bridge.call<{ outputs: Outputs; warnings: string[]; base: number[][]; config: { ranks: Record<string, number> } }>('load_ours', {
    base: { ...base, state: basePath },
    adapters: Object.entries(written).map(([name, d]) => ({ name, dir: d })),
    x,
  });
  return { dir, x, loaded };
}

describe('PEFT interop, checked against real PEFT', () => {
  let tensorsAtStart: number;
  beforeAll(async () => {
    await initBackend('wasm');
    tensorsAtStart = tf.memory().numTensors;
    bridge = new PeftBridge();
    const v = await bridge.call<{ peft: string; torch: string }>('versions');
    expect(v.peft).toMatch(/^0\.2\d\./);
    tmp = mkdtempSync(join(tmpdir(), 'lora-peft-'));
  }, 180_000);
  afterAll(() => {
    bridge?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    expect(tf.memory().numTensors).toBe(tensorsAtStart);
  });

  describe('PEFT → lora-tfjs', () => {
    const FC = { kind: 'fc', dims: [6, 10, 8, 4], seed: 1 } as const;
    const cases: Array<[string, BaseSpec, AdapterSpec[], { prefix?: string; dtype?: string }?]> = [
      ['every layer', FC, [{ name: 'default', config: { r: 4, lora_alpha: 8, target_modules: ['fc1', 'fc2', 'fc3'] } }]],
      ['a subset of layers (a list)', FC, [{ name: 'default', config: { r: 3, lora_alpha: 5, target_modules: ['fc1', 'fc3'] } }]],
      ['a subset chosen by a regex (full match)', FC, [{ name: 'default', config: { r: 2, lora_alpha: 2, target_modules: 'fc[12]' } }]],
      ['all-linear with exclude_modules', FC, [{ name: 'default', config: { r: 2, lora_alpha: 4, target_modules: 'all-linear', exclude_modules: ['fc2'] } }]],
      [
        'rank_pattern and alpha_pattern on fc1 … fc10 (names that are prefixes of each other)',
        { kind: 'fc', dims: [5, 6, 5, 6, 5, 6, 5, 6, 5, 6, 3], seed: 2 },
        [{ name: 'default', config: { r: 2, lora_alpha: 4, target_modules: 'all-linear', rank_pattern: { fc1: 3, fc10: 1 }, alpha_pattern: { fc10: 7, fc1: 2 } } }],
      ],
      ['modules_to_save (a layer trained in full)', FC, [{ name: 'default', config: { r: 2, lora_alpha: 4, target_modules: ['fc1', 'fc2'], modules_to_save: ['fc3'] } }]],
      ['rsLoRA with dropout (inactive at inference)', FC, [{ name: 'default', config: { r: 4, lora_alpha: 3, target_modules: ['fc1', 'fc2', 'fc3'], use_rslora: true, lora_dropout: 0.1 } }]],
      [
        'a multi-adapter folder',
        FC,
        [
          { name: 'default', config: { r: 2, lora_alpha: 4, target_modules: ['fc1', 'fc2'] }, seed: 1 },
          { name: 'task_B', config: { r: 3, lora_alpha: 3, target_modules: ['fc1'] }, seed: 2 },
          { name: 'task_C', config: { r: 1, lora_alpha: 2, target_modules: 'fc[12]', rank_pattern: { fc2: 2 } }, seed: 3 },
        ],
      ],
      ['float16 weights', FC, [{ name: 'default', config: { r: 4, lora_alpha: 8, target_modules: ['fc1', 'fc2', 'fc3'] } }], { dtype: 'float16' }],
      ['bfloat16 weights', FC, [{ name: 'default', config: { r: 4, lora_alpha: 8, target_modules: ['fc1', 'fc2', 'fc3'] } }], { dtype: 'bfloat16' }],
      ['an nn.Sequential base (0, 2, 4)', { kind: 'sequential', dims: [6, 10, 8, 4], seed: 3 }, [{ name: 'default', config: { r: 2, lora_alpha: 4, target_modules: ['0', '4'], rank_pattern: { '4': 1 } } }]],
      [
        'a nested base (mlp.fc1, …) with suffix targets',
        { kind: 'nested', dims: [6, 10, 8, 4], seed: 4 },
        [{ name: 'default', config: { r: 3, lora_alpha: 6, target_modules: ['fc1', 'fc2'], rank_pattern: { 'mlp.fc2': 2 }, modules_to_save: ['fc3'] } }],
        { prefix: 'mlp.' },
      ],
      ['a bias-free base', { kind: 'fc', dims: [6, 10, 8, 4], bias: false, seed: 5 }, [{ name: 'default', config: { r: 2, lora_alpha: 2, target_modules: ['fc1', 'fc2', 'fc3'], modules_to_save: [] } }]],
    ];
    it.each(cases)('%s', async (_, base, adapters, options) => {
      const { dir, x, model, theirs } = await fromPeft(base, adapters, options);
      const warnings: string[] = [];
      const names = adapters.length > 1 ? loadAdapters(model, dir, { onWarning: (m) => warnings.push(m) }) : [loadAdapter(model, dir, { onWarning: (m) => warnings.push(m) })];
      expect(names).toEqual(adapters.map((a) => a.name));
      expect(warnings).toEqual([]);
      expectSameOutputs(model, x, theirs);
      model.dispose();
    });

    it('a rank above min(in, out): loaded, with one warning naming the layer', async () => {
      const { dir, x, model, theirs } = await fromPeft({ kind: 'fc', dims: [12, 10, 3], seed: 6 }, [{ name: 'default', config: { r: 8, lora_alpha: 8, target_modules: ['fc1', 'fc2'] } }]);
      const { setWarningHandler } = await import('../src/index.js');
      const seen: string[] = [];
      const previous = setWarningHandler((m) => seen.push(m));
      loadAdapter(model, dir);
      setWarningHandler(previous);
      expect(seen).toEqual(['LoRALinear fc2: rank 8 exceeds min(in, out) = 3 (10 → 3); it adds parameters but no capacity']);
      expectSameOutputs(model, x, theirs);
      model.dispose();
    });

    it('refuses what PEFT can save but lora-tfjs cannot run, naming the field, and changes nothing', async () => {
      const base = { kind: 'fc', dims: [6, 10, 8, 4], seed: 7 } as const;
      const targets = ['fc1', 'fc2', 'fc3'];
      const cases: Array<[string, Record<string, unknown>, RegExp, (c: Record<string, unknown>) => void]> = [
        ['DoRA', { use_dora: true }, /use_dora = true is invalid; expected null or false \(DoRA/, () => undefined],
        ['trained biases', { bias: 'all' }, /bias = "all" is invalid/, () => undefined],
        ['a lora_B bias', { lora_bias: true }, /lora_bias = true is invalid/, () => undefined],
        ['PiSSA (rewrites the base)', { init_lora_weights: 'pissa' }, /init_lora_weights = "pissa" is invalid; .*rewrites the base weights/, () => undefined],
        ['KaSA (set in the saved config)', {}, /kasa_config = \{"enabled":true\} is invalid; expected null or false \(KaSA is not supported\)/, (c) => (c.kasa_config = { enabled: true })],
        ['QALoRA (set in the saved config)', {}, /use_qalora = true is invalid/, (c) => (c.use_qalora = true)],
      ];
      for (const [what, extra, message, edit] of cases) {
        const { dir, model } = await fromPeft(base, [{ name: 'default', config: { r: 2, lora_alpha: 4, target_modules: targets, ...extra } }]);
        const configPath = join(dir, ADAPTER_CONFIG);
        const config = JSON.parse(readFileSync(configPath, 'utf8'));
        edit(config);
        writeFileSync(configPath, JSON.stringify(config));
        model.addAdapter('keep', { rank: 1 });
        const before = model.layers.map((l) => Array.from(l.adapter('keep').A.dataSync()));
        const tensors = tf.memory().numTensors;
        expect(() => loadAdapter(model, dir), what).toThrow(message);
        expect(model.adapterNames(), what).toEqual(['keep']);
        expect(model.layers.map((l) => Array.from(l.adapter('keep').A.dataSync())), what).toEqual(before);
        expect(tf.memory().numTensors, what).toBe(tensors);
        model.dispose();
      }
    });
  });

  describe('lora-tfjs → PEFT', () => {
    let base: MLP;
    beforeAll(() => {
      base = new MLP([6, 10, 8, 4], { seed: 11 });
    });
    afterAll(() => base.dispose());

    it('several adapters with subsets, per-layer ranks and alphas, rsLoRA and a full layer: PEFT loads them without a warning and agrees', async () => {
      const model = LoRAMLP.fromBase(base, { rank: 4, alpha: 8, targetModules: ['fc1', 'fc2'] });
      model.addAdapter('task_B', { rank: 2, alpha: 3, targetModules: ['fc1'], seed: 2 });
      model.addAdapter('task_C', { rank: 3, alpha: 2, targetModules: ['fc1', 'fc2'], rankPattern: { fc2: 1 }, alphaPattern: { fc1: 5 }, useRsLora: true, modulesToSave: ['fc3'], seed: 3 });
      for (const [n, s] of [['default', 1], ['task_B', 2], ['task_C', 3]] as const) trainLike(model, n, s);
      const { x, loaded } = await toPeft(model, { kind: 'fc', dims: [6, 10, 8, 4] });
      expect(meaningful(loaded.warnings)).toEqual([]); // in particular no "Unexpected keyword arguments … LoraConfig"
      for (const [name, o] of Object.entries(loaded.outputs)) {
        expect(relDiff(predict(model, x, name, false), o.unmerged), `${name} unmerged`).toBeLessThan(1e-5);
        expect(relDiff(predict(model, x, name, true), o.merged), `${name} merged`).toBeLessThan(1e-5);
      }
      expect(relDiff(predict(model, x, 'task_C', false), loaded.base)).toBeGreaterThan(1e-2); // the adapters matter
      model.dispose();
    });

    it('per-layer ranks on fc1 … fc10 become a rank_pattern that PEFT resolves to exactly those ranks', async () => {
      const dims = [5, 6, 5, 6, 5, 6, 5, 6, 5, 6, 3];
      const ten = new MLP(dims, { seed: 12 });
      const ranks = [3, 1, 2, 2, 2, 2, 2, 2, 2, 4];
      const names = ten.names;
      const model = LoRAMLP.fromBase(ten, { rank: 2, alpha: 2, rankPattern: Object.fromEntries(names.map((n, i) => [`^${n}$`, ranks[i]])) });
      ten.dispose();
      trainLike(model, 'default', 4);
      expect(model.layers.map((l) => l.rank)).toEqual(ranks);
      const { x, loaded } = await toPeft(model, { kind: 'fc', dims });
      expect(loaded.config.ranks).toEqual(Object.fromEntries(names.map((n, i) => [n, ranks[i]])));
      expect(relDiff(predict(model, x, 'default', false), loaded.outputs.default.unmerged)).toBeLessThan(1e-5);
      model.dispose();
    });

    it('a combined adapter (cat, rank = Σ rᵢ per layer, sources covering different layers) loads in PEFT', async () => {
      const model = LoRAMLP.fromBase(base, { rank: 2, alpha: 4, targetModules: ['fc1', 'fc2'], adapterName: 'p' });
      model.addAdapter('q', { rank: 3, alpha: 1, targetModules: ['fc2', 'fc3'], seed: 2 });
      trainLike(model, 'p', 5);
      trainLike(model, 'q', 6);
      const result = combineAdapters(model, [{ name: 'p', weight: 0.6 }, { name: 'q', weight: -1.2 }], 'mix');
      expect(result.ranks).toEqual([2, 5, 3]);
      const { x, loaded } = await toPeft(model, { kind: 'fc', dims: [6, 10, 8, 4] }, { names: ['mix'] });
      expect(meaningful(loaded.warnings)).toEqual([]);
      expect(relDiff(predict(model, x, 'mix', false), loaded.outputs.mix.unmerged)).toBeLessThan(1e-5);
      model.dispose();
    });

    it.each(['F16', 'BF16'] as const)('%s files: stored as PyTorch rounds, and PEFT agrees with the reloaded adapter', async (dtype) => {
      const model = LoRAMLP.fromBase(base, { rank: 4, alpha: 8, seed: 4 });
      trainLike(model, 'default', 7);
      const { dir, x, loaded } = await toPeft(model, { kind: 'fc', dims: [6, 10, 8, 4] }, { dtype });
      const file = decodeSafetensors(new Uint8Array(readFileSync(join(dir, ADAPTER_WEIGHTS))));
      const stored = file.tensors.get('base_model.model.fc2.lora_B.weight')!;
      expect(stored.dtype).toBe(dtype);
      const exact = tf.tidy(() => tf.transpose(model.layers[1].adapter('default').B).dataSync());
      const rounded = await bridge.call<{ values: number[] }>('round', { values: Array.from(exact), dtype: dtype === 'F16' ? 'float16' : 'bfloat16' });
      expect(Array.from(stored.data)).toEqual(rounded.values); // bit-exact rounding, as torch's .to(dtype)
      const reloaded = LoRAMLP.fromBase(base, { noAdapter: true });
      loadAdapter(reloaded, dir);
      expect(relDiff(predict(reloaded, x, 'default', false), loaded.outputs.default.unmerged)).toBeLessThan(1e-5);
      expect(relDiff(predict(reloaded, x, 'default', true), loaded.outputs.default.merged)).toBeLessThan(1e-5);
      reloaded.dispose();
      model.dispose();
    });

    it('rounds to F16 and BF16 exactly as torch does, ties and overflow included', async () => {
      const tricky = [1 + 2 ** -11, 1 + 3 * 2 ** -11, 2049, 2051, 2 ** -25, 3 * 2 ** -25, 2 ** -24, 65504, 65519, 65520, -0.1, 0.1, 1e-8, -3.14159, 1 + 2 ** -8, 1 + 3 * 2 ** -8];
      const { floatToHalf, floatToBfloat16, halfToFloat, bfloat16ToFloat } = await import('../src/formats/safetensors.js');
      for (const [dtype, round, widen] of [['float16', floatToHalf, halfToFloat], ['bfloat16', floatToBfloat16, bfloat16ToFloat]] as const) {
        const theirs = await bridge.call<{ values: Array<number | string> }>('round', { values: tricky, dtype });
        expect(tricky.map((v) => widen(round(v))), dtype).toEqual(theirs.values.map((v) => (typeof v === 'string' ? Number(v.replace('inf', 'Infinity')) : v)));
      }
    });

    it('a square layer trained in full (8 → 8, where a missing transpose keeps the shape) loads in PEFT and agrees', async () => {
      const square = new MLP([6, 8, 8, 4], { seed: 14 });
      const model = LoRAMLP.fromBase(square, { rank: 2, alpha: 4, targetModules: ['fc1', 'fc3'], modulesToSave: ['fc2'], seed: 6 });
      square.dispose();
      trainLike(model, 'default', 11);
      const { x, loaded } = await toPeft(model, { kind: 'fc', dims: [6, 8, 8, 4] });
      expect(meaningful(loaded.warnings)).toEqual([]);
      expect(relDiff(predict(model, x, 'default', false), loaded.outputs.default.unmerged)).toBeLessThan(1e-5);
      expect(relDiff(predict(model, x, 'default', true), loaded.outputs.default.merged)).toBeLessThan(1e-5);
      model.dispose();
    });

    it('bases named as PyTorch names them: nn.Sequential (0, 2, 4) and nested under a prefix', async () => {
      const seq = new MLP([6, 10, 8, 4], { seed: 13, names: ['0', '2', '4'] });
      const a = LoRAMLP.fromBase(seq, { rank: 2, alpha: 4, targetModules: ['0', '4'], seed: 1 });
      seq.dispose();
      trainLike(a, 'default', 8);
      const s = await toPeft(a, { kind: 'sequential', dims: [6, 10, 8, 4] });
      expect(meaningful(s.loaded.warnings)).toEqual([]);
      expect(relDiff(predict(a, s.x, 'default', false), s.loaded.outputs.default.unmerged)).toBeLessThan(1e-5);
      expect(relDiff(predict(a, s.x, 'default', true), s.loaded.outputs.default.merged)).toBeLessThan(1e-5);
      a.dispose();
      // A model built here (fc1, …) that sits at `mlp.` inside the PyTorch model.
      const b = LoRAMLP.fromBase(base, { rank: 3, alpha: 3, modulesToSave: ['fc3'], targetModules: ['fc1', 'fc2'], seed: 2 });
      trainLike(b, 'default', 9);
      const n = await toPeft(b, { kind: 'nested', dims: [6, 10, 8, 4] }, { prefix: 'mlp.' });
      expect(meaningful(n.loaded.warnings)).toEqual([]);
      expect(relDiff(predict(b, n.x, 'default', false), n.loaded.outputs.default.unmerged)).toBeLessThan(1e-5);
      // And back: the same files load here under the same prefix.
      const back = LoRAMLP.fromBase(base, { noAdapter: true });
      loadAdapter(back, n.dir, { prefix: 'mlp.' });
      expect(relDiff(predict(back, n.x, 'default', false), n.loaded.outputs.default.unmerged)).toBeLessThan(1e-5);
      expect(() => loadAdapter(back, n.dir, { adapterName: 'again' })).toThrow(/pass \{ prefix: "mlp\." \}/);
      back.dispose();
      b.dispose();
    });

    it('a single adapter saved with saveAdapter is what PEFT.from_pretrained reads', async () => {
      const model = LoRAMLP.fromBase(base, { rank: 2, alpha: 2, seed: 5 });
      trainLike(model, 'default', 10);
      const dir = fresh('single');
      const basePath = `${dir}-base.safetensors`;
      writeFileSync(basePath, mlpToTorchSafetensors(base));
      saveAdapter(model, dir);
      const x = inputs(4, 6, 5);
      const loaded = await bridge.call<{ outputs: Outputs; warnings: string[] }>('load_ours', { base: { kind: 'fc', dims: [6, 10, 8, 4], state: basePath }, adapters: [{ name: 'default', dir }], x });
      expect(meaningful(loaded.warnings)).toEqual([]);
      expect(relDiff(predict(model, x, 'default', false), loaded.outputs.default.unmerged)).toBeLessThan(1e-5);
      model.dispose();
    });
  });

  describe("the README's snippets (From PyTorch to TF.js and back)", () => {
    const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const snippet = (name: string): string => {
      const m = new RegExp(`<!-- snippet: ${name.replace('.', '\\.')} -->\\n\`\`\`\\w+\\n([\\s\\S]*?)\`\`\``).exec(readme);
      if (m === null) throw new Error(`README.md has no snippet ${name}`);
      return m[1];
    };
    it('run as written, in order, in one folder: PEFT → lora-tfjs, then lora-tfjs → PEFT', () => {
      const dir = fresh('readme');
      mkdirSync(join(dir, 'node_modules'), { recursive: true });
      symlinkSync(root, join(dir, 'node_modules', 'lora-tfjs')); // `import … from 'lora-tfjs'` as an app would
      const python = peftPython();
      const tsx = join(root, 'node_modules', '.bin', 'tsx');
      const run = (file: string, cmd: string) => {
        writeFileSync(join(dir, file), snippet(file));
        return execFileSync(cmd, [file], { cwd: dir, encoding: 'utf8', timeout: 180_000, env: { ...process.env, LORA_BACKEND: 'wasm' }, stdio: ['ignore', 'pipe', 'pipe'] });
      };
      run('torch-to-tfjs.py', python);
      expect(run('torch-to-tfjs.mts', tsx)).toContain("[ 'lora', 'lora', 'full' ]");
      rmSync(join(dir, 'adapters'), { recursive: true });
      run('tfjs-to-torch.mts', tsx);
      expect(run('tfjs-to-torch.py', python)).toContain("{'fc1': 4, 'fc2': 4, 'fc3': 2}");
    }, 300_000);
  });
});
