import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Each file runs in its own process: the TensorFlow.js backend is process-global.
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 600_000,
  },
});
