/**
 * Small dense linear algebra in float64 for adapter arithmetic (TensorFlow.js has no
 * eigen-decomposition or SVD). Matrices are row-major Float64Arrays.
 */

/** C = A·B for A `[m, k]`, B `[k, n]`. */
export function matmul64(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const v = a[i * k + p];
      if (v === 0) continue;
      for (let j = 0; j < n; j++) c[i * n + j] += v * b[p * n + j];
    }
  }
  return c;
}

/** Aᵀ for A `[m, n]`. */
export function transpose64(a: Float64Array, m: number, n: number): Float64Array {
  const t = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = a[i * n + j];
  return t;
}

/**
 * Eigen-decomposition of a symmetric matrix `[n, n]` by cyclic Jacobi rotations:
 * S = V·diag(values)·Vᵀ, values in descending order, V's columns the eigenvectors
 * (row-major `[n, n]`). Accurate to machine precision for the small matrices used here.
 */
export function symmetricEigen(s: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(s);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  // Converged when the off-diagonal mass is negligible *relative to the matrix*: an absolute
  // threshold stops early on small matrices (tiny LoRA deltas) and gives a worse SVD.
  let total = 0;
  for (let i = 0; i < n * n; i++) total += a[i] ** 2;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q] ** 2;
    if (off <= 1e-30 * total || off === 0) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const sn = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p];
          const akq = a[k * n + q];
          a[k * n + p] = c * akp - sn * akq;
          a[k * n + q] = sn * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k];
          const aqk = a[q * n + k];
          a[p * n + k] = c * apk - sn * aqk;
          a[q * n + k] = sn * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p];
          const vkq = v[k * n + q];
          v[k * n + p] = c * vkp - sn * vkq;
          v[k * n + q] = sn * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => a[j * n + j] - a[i * n + i]);
  const values = Float64Array.from(order, (i) => a[i * n + i]);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    for (let k = 0; k < n; k++) vectors[k * n + dst] = v[k * n + src];
  });
  return { values, vectors };
}

/**
 * The best rank-k approximation (Eckart–Young) of a product P·Q with P `[m, r]`, Q `[r, n]`,
 * returned as factors U `[m, k]` (orthonormal columns) and W `[k, n]` with U·W ≈ P·Q, plus
 * the squared singular values of P·Q (descending) so callers can report what was dropped.
 */
export function truncateProduct(
  p: Float64Array,
  q: Float64Array,
  m: number,
  r: number,
  n: number,
  k: number,
): { U: Float64Array; W: Float64Array; squaredSingularValues: Float64Array } {
  // Orthonormal basis of P's columns: P = (P·V·Λ^-½)·(Λ^½·Vᵀ).
  const gram = matmul64(transpose64(p, m, r), p, r, m, r);
  const { values: lambda, vectors: V } = symmetricEigen(gram, r);
  const keep = Array.from(lambda).filter((l) => l > 1e-12 * Math.max(lambda[0], 1e-300)).length;
  const basisCoef = new Float64Array(r * keep); // V·Λ^-½, [r, keep]
  const rFactor = new Float64Array(keep * r); // Λ^½·Vᵀ, [keep, r]
  for (let j = 0; j < keep; j++) {
    const root = Math.sqrt(lambda[j]);
    for (let i = 0; i < r; i++) {
      basisCoef[i * keep + j] = V[i * r + j] / root;
      rFactor[j * r + i] = V[i * r + j] * root;
    }
  }
  const basis = matmul64(p, basisCoef, m, r, keep); // [m, keep], orthonormal
  const small = matmul64(rFactor, q, keep, r, n); // [keep, n]; P·Q = basis·small
  // SVD of `small` through the eigen-decomposition of small·smallᵀ.
  const { values: sigma2, vectors: Wv } = symmetricEigen(matmul64(small, transpose64(small, keep, n), keep, n, keep), keep);
  const used = Math.min(k, keep);
  const top = new Float64Array(keep * k); // [keep, k], zero columns past `used`
  for (let i = 0; i < keep; i++) for (let j = 0; j < used; j++) top[i * k + j] = Wv[i * keep + j];
  const U = matmul64(basis, top, m, keep, k);
  const W = matmul64(transpose64(top, keep, k), small, k, keep, n);
  return { U, W, squaredSingularValues: Float64Array.from(sigma2, (s) => Math.max(0, s)) };
}
