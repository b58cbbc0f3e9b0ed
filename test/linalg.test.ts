import { describe, expect, it } from 'vitest';
import { Rng } from '../src/index.js';
import { matmul64, symmetricEigen, transpose64, truncateProduct } from '../src/core/linalg.js';

const randomMatrix = (rng: Rng, m: number, n: number) => Float64Array.from({ length: m * n }, () => rng.normal());
const maxDiff = (a: Float64Array, b: Float64Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe('float64 linear algebra for adapter combination', () => {
  it('symmetricEigen: S = V·diag(λ)·Vᵀ, V orthonormal, λ descending', () => {
    const rng = new Rng(1);
    const n = 7;
    const m = randomMatrix(rng, n, n);
    const s = matmul64(m, transpose64(m, n, n), n, n, n);
    const { values, vectors } = symmetricEigen(s, n);
    for (let i = 1; i < n; i++) expect(values[i - 1]).toBeGreaterThanOrEqual(values[i]);
    const vtv = matmul64(transpose64(vectors, n, n), vectors, n, n, n);
    const identity = Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0));
    expect(maxDiff(vtv, identity)).toBeLessThan(1e-10);
    const lam = Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? values[i / (n + 1)] : 0));
    const back = matmul64(matmul64(vectors, lam, n, n, n), transpose64(vectors, n, n), n, n, n);
    expect(maxDiff(back, s)).toBeLessThan(1e-9);
  });

  it('truncateProduct: exact at full rank; at rank k the error is the dropped singular values', () => {
    const rng = new Rng(2);
    const [m, r, n] = [9, 4, 6];
    const p = randomMatrix(rng, m, r);
    const q = randomMatrix(rng, r, n);
    const target = matmul64(p, q, m, r, n);
    const full = truncateProduct(p, q, m, r, n, 4);
    expect(maxDiff(matmul64(full.U, full.W, m, 4, n), target)).toBeLessThan(1e-9);
    const k = 2;
    const cut = truncateProduct(p, q, m, r, n, k);
    const approx = matmul64(cut.U, cut.W, m, k, n);
    const err2 = approx.reduce((s, v, i) => s + (v - target[i]) ** 2, 0);
    const dropped = cut.squaredSingularValues.slice(k).reduce((a, b) => a + b, 0);
    expect(err2).toBeCloseTo(dropped, 8);
    // U has orthonormal columns.
    const utu = matmul64(transpose64(cut.U, m, k), cut.U, k, m, k);
    expect(maxDiff(utu, Float64Array.from([1, 0, 0, 1]))).toBeLessThan(1e-10);
  });
});
