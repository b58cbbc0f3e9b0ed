import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

// Three groups, one after the other (vitest's projects with sequence.groupOrder):
//  1. unit: every other suite, two files at a time;
//  2. notebooks: the seven notebooks through the runner, alone, because some goldens are timing
//     ratios (05, 07) that a second busy process on a 2-core machine pushes out of tolerance;
//  3. jupyterlab: JupyterLab with and without Plotly's extension, side by side (each trains
//     notebooks 01 and 04 in a real kernel; nothing there is timed).
//
// Files side by side share the cores, so each gets its share of wasm threads (two processes of
// 2 threads on 2 cores run slower than two of 1; README, Threads). The threaded start itself
// is tested in test/wasm-threads.test.ts at explicit counts; the notebook runner shares the
// cores among its kernels itself.
const NOTEBOOKS = 'test/notebooks.test.ts';
const SHARE = { LORA_WASM_THREADS: process.env.LORA_WASM_THREADS || String(Math.max(1, Math.floor(availableParallelism() / 2))) };
const JUPYTERLAB = 'test/jupyterlab*.test.ts';

export default defineConfig({
  test: {
    // Each file runs in its own process: the TensorFlow.js backend is process-global.
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 600_000,
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/**/*.test.ts'], exclude: [NOTEBOOKS, JUPYTERLAB], maxWorkers: 2, env: SHARE, sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'notebooks', include: [NOTEBOOKS], maxWorkers: 1, sequence: { groupOrder: 1 } } },
      { extends: true, test: { name: 'jupyterlab', include: [JUPYTERLAB], maxWorkers: 2, env: SHARE, sequence: { groupOrder: 2 } } },
    ],
  },
});
