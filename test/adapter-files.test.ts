import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, LoRAMLP, MLP, initBackend, maxAbsDiff } from '../src/index.js';
import { loadAdapter, loadAdapters, saveAdapter, saveAdapters } from '../src/node/index.js';
import { trainLike, tree } from './helpers.js';

const DIMS = [8, 12, 6, 4];


function without(t: Record<string, string>, ...names: string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(t).filter(([k]) => !names.includes(k)));
}

function outputsEqual(a: LoRAMLP, b: LoRAMLP, adapter: string): number {
  const x = tf.randomNormal([5, DIMS[0]], 0, 1, 'float32', 1);
  a.setActiveAdapter(adapter);
  b.setActiveAdapter(adapter);
  const ya = a.predict(x);
  const yb = b.predict(x);
  const d = maxAbsDiff(ya, yb);
  tf.dispose([x, ya, yb]);
  return d;
}

describe('adapter files: a save changes only the files it writes; a load reads only what it should', () => {
  let base: MLP;
  let model: LoRAMLP;
  let root: string;
  let tensorsAtStart: number;
  beforeAll(async () => {
    await initBackend('wasm');
    tensorsAtStart = tf.memory().numTensors;
    base = new MLP(DIMS, { seed: 2 });
    model = LoRAMLP.fromBase(base, { rank: 2, alpha: 4, seed: 1 });
    model.addAdapter('task_B', { rank: 3, seed: 2, targetModules: ['fc1', 'fc3'] });
    model.addAdapter('task_C', { rank: 1, seed: 3, modulesToSave: ['fc3'] });
    for (const [n, s] of [['default', 1], ['task_B', 2], ['task_C', 3]] as const) trainLike(model, n, s);
    root = mkdtempSync(join(tmpdir(), 'lora-files-'));
  });
  afterAll(() => {
    model.dispose();
    base.dispose();
    rmSync(root, { recursive: true, force: true });
    expect(tf.memory().numTensors).toBe(tensorsAtStart);
  });

  it('saving into a PEFT multi-adapter folder keeps its subfolders, other adapters, links and unrelated or read-only files', () => {
    const dir = join(root, 'multi');
    saveAdapters(model, dir, { names: ['task_B', 'task_C'] });
    mkdirSync(join(dir, 'sub', 'deeper'), { recursive: true });
    writeFileSync(join(dir, 'sub', 'deeper', 'keep.bin'), new Uint8Array([1, 2, 3]));
    writeFileSync(join(dir, 'README.md'), '# notes');
    writeFileSync(join(dir, 'locked.txt'), 'read-only');
    chmodSync(join(dir, 'locked.txt'), 0o444);
    writeFileSync(join(root, 'elsewhere.txt'), 'target');
    symlinkSync(join(root, 'elsewhere.txt'), join(dir, 'link.txt'));
    const before = tree(dir);
    saveAdapter(model, dir, { adapterName: 'default' });
    const after = tree(dir);
    expect(without(after, ADAPTER_CONFIG, ADAPTER_WEIGHTS)).toEqual(before); // nothing else changed, nothing left over
    expect(Object.keys(after).filter((k) => k.includes('.tmp-'))).toEqual([]);
    // Saving twice replaces the pair and only the pair.
    saveAdapter(model, dir, { adapterName: 'task_B' });
    expect(without(tree(dir), ADAPTER_CONFIG, ADAPTER_WEIGHTS)).toEqual(before);
    const fresh = LoRAMLP.fromBase(base, { noAdapter: true });
    expect(loadAdapter(fresh, dir, { adapterName: 'task_B' })).toBe('task_B');
    expect(outputsEqual(model, fresh, 'task_B')).toBeLessThan(1e-6);
    // The other adapters in their subfolders are still loadable and still theirs.
    expect(loadAdapters(fresh, dir).sort()).toEqual(['default', 'task_B', 'task_C']);
    expect(outputsEqual(model, fresh, 'task_C')).toBeLessThan(1e-6);
    expect(statSync(join(dir, 'locked.txt')).mode & 0o777).toBe(0o444);
    fresh.dispose();
  });

  it('writes through a symlinked folder without replacing the link', () => {
    const real = join(root, 'real');
    mkdirSync(real);
    symlinkSync(real, join(root, 'linked'));
    saveAdapter(model, join(root, 'linked'));
    expect(lstatSync(join(root, 'linked')).isSymbolicLink()).toBe(true);
    expect(readdirSync(real).sort()).toEqual([ADAPTER_CONFIG, ADAPTER_WEIGHTS]);
  });

  it('a crash between the two renames leaves a pair that loads as nothing: it is refused, the model unchanged', () => {
    const dir = join(root, 'crash');
    saveAdapter(model, dir, { adapterName: 'default' });
    const oldConfig = readFileSync(join(dir, ADAPTER_CONFIG));
    const crash = new Error('simulated crash');
    expect(() =>
      saveAdapter(model, dir, { adapterName: 'task_B' }, {
        afterRename: (file) => {
          if (file.endsWith(ADAPTER_WEIGHTS)) throw crash;
        },
      }),
    ).toThrow(crash);
    expect(readFileSync(join(dir, ADAPTER_CONFIG)).equals(oldConfig)).toBe(true); // task_B's weights beside default's config
    expect(readdirSync(dir).sort()).toEqual([ADAPTER_CONFIG, ADAPTER_WEIGHTS]); // the config's temporary file was removed
    const target = LoRAMLP.fromBase(base, { rank: 2, seed: 5 });
    const values = target.layers.map((l) => Array.from(l.adapter('default').A.dataSync()));
    const tensors = tf.memory().numTensors;
    expect(() => loadAdapter(target, dir)).toThrow(/do not belong together: the weights were saved with a config whose SHA-256 is [0-9a-f]{12}…, this config's is [0-9a-f]{12}…/);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(target.layers.map((l) => Array.from(l.adapter('default').A.dataSync()))).toEqual(values);
    // Saving again repairs the pair.
    saveAdapter(model, dir, { adapterName: 'task_B' });
    loadAdapter(target, dir, { adapterName: 'task_B' });
    expect(outputsEqual(model, target, 'task_B')).toBeLessThan(1e-6);
    target.dispose();
  });

  it('refuses paths it cannot write, before writing anything, and leaves no temporary files or folders', () => {
    const before = tree(root);
    expect(() => saveAdapter(model, '')).toThrow('saveAdapter: dir = "" is invalid; expected a folder path');
    writeFileSync(join(root, 'a-file'), 'x');
    const withFile = tree(root);
    expect(() => saveAdapter(model, join(root, 'a-file'))).toThrow(/cannot write into .*a-file: it is a file, not a folder/);
    expect(() => saveAdapter(model, join(root, 'a-file', 'below'))).toThrow(/saveAdapter: /);
    const blocked = join(root, 'blocked');
    mkdirSync(join(blocked, ADAPTER_WEIGHTS), { recursive: true }); // a folder where the weights file goes
    const blockedTree = tree(root);
    expect(() => saveAdapter(model, blocked)).toThrow(/cannot write .*adapter_model\.safetensors: it is a folder; remove it or choose another folder/);
    expect(tree(root)).toEqual(blockedTree);
    // A save into new nested folders that fails removes the folders it created.
    expect(() => saveAdapter(model, join(root, 'new', 'nested'), { adapterName: 'no-such' })).toThrow(/adapter name = "no-such" is invalid/);
    expect(existsSync(join(root, 'new'))).toBe(false);
    expect(Object.keys(withFile).length).toBe(Object.keys(before).length + 1);
  });

  it('reads only regular files of a sane size: a FIFO, a device, a folder or a huge file is refused at once', () => {
    const dir = join(root, 'odd');
    saveAdapter(model, dir);
    const target = LoRAMLP.fromBase(base, { noAdapter: true });
    rmSync(join(dir, ADAPTER_CONFIG));
    execFileSync('mkfifo', [join(dir, ADAPTER_CONFIG)]);
    const t0 = Date.now();
    expect(() => loadAdapter(target, dir)).toThrow(/adapter_config\.json is a FIFO, not a regular file/);
    expect(Date.now() - t0).toBeLessThan(5000);
    rmSync(join(dir, ADAPTER_WEIGHTS));
    symlinkSync('/dev/zero', join(dir, ADAPTER_WEIGHTS));
    expect(() => loadAdapter(target, dir)).toThrow(/adapter_model\.safetensors is a device, not a regular file/);
    rmSync(join(dir, ADAPTER_WEIGHTS));
    writeFileSync(join(dir, ADAPTER_WEIGHTS), '');
    truncateSync(join(dir, ADAPTER_WEIGHTS), 3 * 2 ** 30); // sparse: 3 GiB that take no disk
    expect(() => loadAdapter(target, dir)).toThrow(/adapter_model\.safetensors is 3,221,225,472 bytes, more than the 2,147,483,647-byte limit/);
    expect(target.adapterNames()).toEqual([]);
    target.dispose();
  });

  it("PEFT's multi-adapter layout both ways: default at the root, the others in subfolders", () => {
    const dir = join(root, 'layout');
    const written = saveAdapters(model, dir);
    expect(written).toEqual({ default: dir, task_B: join(dir, 'task_B'), task_C: join(dir, 'task_C') });
    expect(readdirSync(dir).sort()).toEqual([ADAPTER_CONFIG, ADAPTER_WEIGHTS, 'task_B', 'task_C']);
    const config = JSON.parse(readFileSync(join(dir, 'task_C', ADAPTER_CONFIG), 'utf8'));
    expect(config).toMatchObject({ r: 1, target_modules: ['fc1', 'fc2'], modules_to_save: ['fc3'] });
    const fresh = LoRAMLP.fromBase(base, { noAdapter: true });
    expect(loadAdapters(fresh, dir)).toEqual(['default', 'task_B', 'task_C']);
    for (const n of ['default', 'task_B', 'task_C']) {
      expect(fresh.adapterLayers(n)).toEqual(model.adapterLayers(n));
      expect(outputsEqual(model, fresh, n), n).toBeLessThan(1e-6);
    }
    expect(() => saveAdapters(model, dir, { names: ['../evil'] })).toThrow(/adapter name "\.\.\/evil" cannot be a folder name/);
    fresh.dispose();
  });

  it('loadAdapters reads every adapter folder whatever its name, and refuses partial or ambiguous ones rather than skip them', () => {
    const dir = join(root, 'names');
    const named = LoRAMLP.fromBase(base, { rank: 2, seed: 11 });
    named.addAdapter('task B', { rank: 1, seed: 12 });
    named.addAdapter('tâche', { rank: 3, seed: 13, targetModules: ['fc2'] });
    for (const [n, seed] of [['default', 11], ['task B', 12], ['tâche', 13]] as const) trainLike(named, n, seed);
    saveAdapters(named, dir);
    expect(readdirSync(dir).sort()).toEqual([ADAPTER_CONFIG, ADAPTER_WEIGHTS, 'task B', 'tâche']);
    const fresh = LoRAMLP.fromBase(base, { noAdapter: true });
    expect(loadAdapters(fresh, dir)).toEqual(['default', 'task B', 'tâche']);
    fresh.dispose();
    // A subfolder with weights and no config (a save interrupted before its second file).
    cpSync(join(dir, 'tâche'), join(dir, 'partial'), { recursive: true });
    unlinkSync(join(dir, 'partial', ADAPTER_CONFIG));
    const target = LoRAMLP.fromBase(base, { noAdapter: true });
    expect(() => loadAdapters(target, dir)).toThrow(/partial holds adapter_model\.safetensors without adapter_config\.json \(an interrupted save or a partial copy\?\)/);
    expect(target.adapterNames()).toEqual([]);
    rmSync(join(dir, 'partial'), { recursive: true });
    // A "default" subfolder beside a root adapter is ambiguous; alone, it is the default.
    cpSync(join(dir, 'task B'), join(dir, 'default'), { recursive: true });
    expect(() => loadAdapters(target, dir)).toThrow(/holds an adapter and a subfolder "default" with another one/);
    const only = join(root, 'only-default');
    mkdirSync(only);
    renameSync(join(dir, 'default'), join(only, 'default'));
    expect(loadAdapters(target, only)).toEqual(['default']);
    expect(target.adapterLayers('default')).toEqual(named.adapterLayers('task B')); // task B's adapter, under the folder's name
    named.addAdapter('a/b', { rank: 1 });
    named.addAdapter('.hidden', { rank: 1 });
    expect(() => saveAdapters(named, dir, { names: ['a/b'] })).toThrow(/adapter name "a\/b" cannot be a folder name/);
    expect(() => saveAdapters(named, dir, { names: ['.hidden'] })).toThrow(/cannot be a folder name/);
    named.dispose();
    target.dispose();
  });

  it('loadAdapter names what it found instead: subfolder adapters, a pickled .bin; loadAdapters is all or nothing', () => {
    const dir = join(root, 'layout'); // from the previous test
    const only = join(root, 'only-subfolders');
    saveAdapters(model, only, { names: ['task_B', 'task_C'] });
    const target = LoRAMLP.fromBase(base, { noAdapter: true });
    expect(() => loadAdapter(target, only)).toThrow(/holds no adapter_model\.safetensors, but its subfolders hold adapters \["task_B","task_C"\] \(PEFT's multi-adapter layout\): use loadAdapters\(model, dir\)/);
    const pickled = join(root, 'pickled');
    mkdirSync(pickled);
    writeFileSync(join(pickled, 'adapter_model.bin'), 'not read');
    writeFileSync(join(pickled, ADAPTER_CONFIG), '{}');
    expect(() => loadAdapter(target, pickled)).toThrow(/holds adapter_model\.bin .* never unpickles.*save_pretrained\(dir, safe_serialization=True\)/);
    // One broken subfolder: nothing is added, and the error names the folder.
    writeFileSync(join(dir, 'task_C', ADAPTER_CONFIG), '{ broken');
    const tensors = tf.memory().numTensors;
    expect(() => loadAdapters(target, dir)).toThrow(/task_C: adapter_config\.json is not valid JSON/);
    expect(target.adapterNames()).toEqual([]);
    expect(tf.memory().numTensors).toBe(tensors);
    target.dispose();
  });
});
