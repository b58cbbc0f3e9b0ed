/**
 * The thread section of `npm run bench` (and its `--peers` columns): matMul throughput and the
 * demo-1 LoRA step on wasm at 1, 2, … n threads, restarting wasm in this process for each
 * count; with `--peers`, the same step in PyTorch and in Keras 3 (`Dense.enable_lora`) at the
 * same counts, each peer a Python process per count (scripts/peers/lora_step.py) that this one
 * drives over stdin, so that every implementation is timed in the same passes. Passes run
 * the counts in alternating order (1 2, 2 1, …), so a shared machine's drift hits all alike.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { LoRAMLP, backendSummary } from '../../src/index.js';
import { restartWasm } from '../../src/runtime/wasm-threads.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PEER_SCRIPT = join(ROOT, 'scripts', 'peers', 'lora_step.py');
const DIMS = [512, 2048, 2048, 128];
const BATCH = 32;

export type PeerName = 'torch' | 'keras';

/** One peer process (a framework at a thread count), answering one JSON line per request. */
class Peer {
  private readonly lines: AsyncIterator<string>;
  private constructor(
    readonly name: PeerName,
    readonly threads: number,
    readonly info: { version: string; threads: number; trainable: number },
    private readonly child: ChildProcessWithoutNullStreams,
    private readonly reader: Interface,
    lines: AsyncIterator<string>,
  ) {
    this.lines = lines;
  }

  static async start(python: string, name: PeerName, threads: number): Promise<Peer> {
    const child = spawn(python, [PEER_SCRIPT, name, String(threads)], {
      // Each framework also reads these: keep its helper pools at the count under test.
      env: { ...process.env, OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads), TF_CPP_MIN_LOG_LEVEL: '2' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    const reader = createInterface({ input: child.stdout });
    const lines = reader[Symbol.asyncIterator]();
    const first = await lines.next();
    if (first.done) throw new Error(`${name} peer (${threads} threads) ended before it was ready:\n${stderr}`);
    const ready = JSON.parse(first.value) as { ready: boolean; version: string; threads: number; trainable: number };
    return new Peer(name, threads, ready, child, reader, lines);
  }

  async time(op: 'step' | 'matmul', n: number): Promise<number[]> {
    this.child.stdin.write(JSON.stringify({ op, n }) + '\n');
    const line = await this.lines.next();
    if (line.done) throw new Error(`${this.name} peer (${this.threads} threads) ended`);
    return (JSON.parse(line.value) as { ms: number[] }).ms;
  }

  close(): void {
    this.child.stdin.end(JSON.stringify({ op: 'quit' }) + '\n');
    this.reader.close();
  }
}

/** A Python with torch: LORA_PEER_PYTHON, else the project venv, else python3. */
export function peerPython(): string | null {
  const candidates = [process.env.LORA_PEER_PYTHON, join(ROOT, '.venv', 'bin', 'python'), 'python3'].filter((p): p is string => p !== undefined && p !== '');
  for (const python of candidates) {
    if (python.includes('/') && !existsSync(python)) continue;
    if (spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0) return python;
  }
  return null;
}

/** Whether `python` can run the Keras peer (tensorflow + keras 3 installed). */
function hasKeras(python: string): boolean {
  return spawnSync(python, ['-c', 'import tensorflow, keras; assert int(keras.__version__.split(".")[0]) >= 3'], { stdio: 'ignore', env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' } }).status === 0;
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

/** Samples per implementation and thread count. */
export interface ThreadSamples {
  counts: number[];
  /** `[impl][threads]` → step times (ms); impl is "lora-tfjs" or a peer. */
  step: Record<string, Record<number, number[]>>;
  /** `[impl][threads][pass]` → that pass's median step time: adjacent blocks, for paired ratios. */
  passStep: Record<string, Record<number, number[]>>;
  /** The [32, 2048] · [2048, 2048] product (the demo's layer 2), ms. */
  layerMatMul: Record<string, Record<number, number[]>>;
  /** A 1024³ product on wasm, ms (lora-tfjs only). */
  squareMatMul: Record<number, number[]>;
  /** The step of a small model (64 → 256 → 256 → 16, rank 4), ms (lora-tfjs only). */
  smallStep: Record<number, number[]>;
  summaries: Record<number, string>;
  peers: Record<string, string>;
  skipped: string[];
}

/** A seeded LoRAMLP with its Adam step on a fixed minibatch (batch 32), and what frees it all. */
function loraStep(dims: number[], rank: number, seed: number): { step: () => Promise<void>; dispose: () => void } {
  const model = new LoRAMLP(dims, { rank, alpha: 2 * rank, baseInit: 'kaiming', seed });
  const x = tf.randomNormal([BATCH, dims[0]], 0, 1, 'float32', seed + 1) as tf.Tensor2D;
  const y = tf.randomNormal([BATCH, dims.at(-1)!], 0, 1, 'float32', seed + 2) as tf.Tensor2D;
  const optimizer = tf.train.adam(1e-3);
  const variables = model.trainableVariables();
  const step = async () => {
    const loss = optimizer.minimize(() => tf.mean(tf.squaredDifference(model.apply(x, { training: true }), y)) as tf.Scalar, true, variables)!;
    await loss.data();
    loss.dispose();
  };
  return { step, dispose: () => (optimizer.dispose(), model.dispose(), tf.dispose([x, y])) };
}

/** Each run's time (ms) of `n` runs of fn, after 3 untimed ones. */
async function timeEach(fn: () => Promise<void>, n: number): Promise<number[]> {
  for (let i = 0; i < 3; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
}

/** Time our step and matMuls at `threads` (wasm restarted), `steps` samples each. */
async function ours(threads: number, steps: number, samples: ThreadSamples): Promise<void> {
  await restartWasm(threads);
  samples.summaries[threads] = backendSummary();
  const add = (table: Record<string, Record<number, number[]>>, ms: number[]) => ((table['lora-tfjs'] ??= {})[threads] ??= []).push(...ms);
  const demo = loraStep(DIMS, 8, 1);
  const stepMs = await timeEach(demo.step, steps);
  demo.dispose();
  add(samples.step, stepMs);
  add(samples.passStep, [median(stepMs)]);
  const a = tf.randomNormal([BATCH, 2048], 0, 1, 'float32', 4) as tf.Tensor2D;
  const b = tf.randomNormal([2048, 2048], 0, 1, 'float32', 5) as tf.Tensor2D;
  const sq = tf.randomNormal([1024, 1024], 0, 1, 'float32', 6) as tf.Tensor2D;
  const product = (p: tf.Tensor2D, q: tf.Tensor2D) => async () => {
    const out = tf.matMul(p, q);
    await out.data();
    out.dispose();
  };
  add(samples.layerMatMul, await timeEach(product(a, b), steps));
  (samples.squareMatMul[threads] ??= []).push(...(await timeEach(product(sq, sq), Math.max(3, steps >> 1))));
  tf.dispose([a, b, sq]);
  // A small model: per-kernel work too small to split, so threads only add their hand-offs.
  const small = loraStep([64, 256, 256, 16], 4, 7);
  (samples.smallStep[threads] ??= []).push(...(await timeEach(small.step, steps * 4)));
  small.dispose();
}

/**
 * Run the thread section: `passes` passes over `counts`, `steps` timed steps per
 * implementation and count in each pass. With `withPeers`, PyTorch (and Keras, when
 * installed) join each pass at the same counts.
 */
export async function threadScaling(counts: readonly number[], passes: number, steps: number, withPeers: boolean, say: (line?: string) => void): Promise<ThreadSamples> {
  const samples: ThreadSamples = { counts: [...counts], step: {}, passStep: {}, layerMatMul: {}, squareMatMul: {}, smallStep: {}, summaries: {}, peers: {}, skipped: [] };
  const peers: Peer[] = [];
  try {
    if (withPeers) {
      const python = peerPython();
      if (python === null) {
        samples.skipped.push('PyTorch and Keras: no Python with torch (npm run setup:python, or set LORA_PEER_PYTHON)');
      } else {
        const names: PeerName[] = hasKeras(python) ? ['torch', 'keras'] : ['torch'];
        if (!names.includes('keras')) samples.skipped.push(`Keras: ${python} has no tensorflow + keras 3 (npm run setup:python -- --peers)`);
        say(`starting peers (${names.join(', ')}) at ${counts.join(', ')} threads with ${python}…`);
        for (const name of names) for (const t of counts) peers.push(await Peer.start(python, name, t));
        for (const p of peers) samples.peers[p.name] = p.info.version;
      }
    }
    for (let pass = 0; pass < passes; pass++) {
      const order = pass % 2 === 0 ? [...counts] : [...counts].reverse();
      for (const t of order) {
        await ours(t, steps, samples);
        for (const p of peers.filter((q) => q.threads === t)) {
          const ms = await p.time('step', steps);
          ((samples.step[p.name] ??= {})[t] ??= []).push(...ms);
          ((samples.passStep[p.name] ??= {})[t] ??= []).push(median(ms));
          ((samples.layerMatMul[p.name] ??= {})[t] ??= []).push(...(await p.time('matmul', steps)));
        }
      }
    }
  } finally {
    peers.forEach((p) => p.close());
  }
  return samples;
}

export interface ThreadRow {
  [column: string]: string | number;
}

const quantile = (xs: readonly number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

/** "median (p25–p75)" of per-pass ratios a[p] / b[p]: drift shared by adjacent blocks cancels. */
function pairedRatio(a: readonly number[], b: readonly number[]): { median: number; spread: string } {
  const r = a.map((v, i) => v / b[i]);
  return { median: median(r), spread: `${quantile(r, 0.25).toFixed(2)}–${quantile(r, 0.75).toFixed(2)}` };
}

/**
 * The rows printed for a run: one per thread count. Times are medians of every sample; the
 * ratios are medians of per-pass ratios (with their p25–p75), each pass's blocks being adjacent.
 */
export function threadRows(s: ThreadSamples): ThreadRow[] {
  const first = s.counts[0];
  const ours = s.passStep['lora-tfjs'];
  const peers = Object.keys(s.step).filter((k) => k !== 'lora-tfjs');
  return s.counts.map((t) => {
    const speedUp = pairedRatio(ours[first], ours[t]);
    const row: ThreadRow = {
      threads: t,
      'matMul 1024³ GFLOP/s': (2 * 1024 ** 3) / (median(s.squareMatMul[t]) * 1e6),
      'layer [32,2048]·[2048,2048] GFLOP/s': (2 * 32 * 2048 * 2048) / (median(s.layerMatMul['lora-tfjs'][t]) * 1e6),
      'LoRA step ms': median(s.step['lora-tfjs'][t]),
      [`speed-up vs ${first} (p25–p75)`]: t === first ? '1' : `${speedUp.median.toFixed(2)} (${speedUp.spread})`,
      'small model step ms': median(s.smallStep[t]),
    };
    for (const p of peers) {
      const vs = pairedRatio(ours[t], s.passStep[p][t]);
      row[`${p} step ms`] = median(s.step[p][t]);
      row[`lora-tfjs ÷ ${p} (p25–p75)`] = `${vs.median.toFixed(2)} (${vs.spread})`;
    }
    return row;
  });
}

/** The median per-pass speed-up of our step at `t` threads over `first` (for the target). */
export function stepSpeedUp(s: ThreadSamples, first: number, t: number): number {
  return pairedRatio(s.passStep['lora-tfjs'][first], s.passStep['lora-tfjs'][t]).median;
}

/** The peers' layer matMul beside ours (GFLOP/s), per count. */
export function peerMatMulRows(s: ThreadSamples): ThreadRow[] {
  const impls = Object.keys(s.layerMatMul);
  return s.counts.map((t) => Object.fromEntries([['threads', t], ...impls.map((i) => [`${i} GFLOP/s`, (2 * 32 * 2048 * 2048) / (median(s.layerMatMul[i][t]) * 1e6)])]));
}

/** The machine line printed above the table. */
export function machineLine(): string {
  return `load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`;
}
