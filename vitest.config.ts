import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Each file runs in its own process: the TensorFlow.js backend is process-global.
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 600_000,
    projects: [
      { extends: true, test: { name: 'suite', include: ['test/**/*.test.ts'], exclude: ['test/jupyterlab*.test.ts'], sequence: { groupOrder: 0 } } },
      // JupyterLab (with and without Plotly's extension, side by side) trains notebooks 01 and 04
      // in real kernels: after the rest, so that it neither slows nor is slowed by the notebook
      // runner's timing goldens.
      { extends: true, test: { name: 'jupyterlab', include: ['test/jupyterlab*.test.ts'], maxWorkers: 2, sequence: { groupOrder: 1 } } },
    ],
  },
});
