import { existsSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from './atomic.js';

/** One recorded value, as the notebook's `record()` emitted it. */
export interface Recorded {
  name: string;
  value: number;
  rtol: number;
  atol: number;
  backend: string;
}

export interface GoldenEntry {
  value: number;
  rtol: number;
  atol: number;
}

/** A notebook's golden file: values per backend (numbers differ slightly across backends). */
export interface GoldenFile {
  notebook: string;
  backends: Record<string, Record<string, GoldenEntry>>;
}

export interface Drift {
  name: string;
  expected: number | null;
  actual: number | null;
  allowed: number;
  why: string;
}

export interface GoldenCheck {
  ok: boolean;
  backend: string;
  checked: number;
  drifts: Drift[];
  /** Values that could not be compared (no golden for this backend and not exact). */
  unchecked: string[];
  note: string | null;
}

/** |actual − expected| ≤ atol + rtol·|expected|. */
export function withinTolerance(actual: number, g: GoldenEntry): boolean {
  return Math.abs(actual - g.value) <= allowedDeviation(g);
}

export function allowedDeviation(g: GoldenEntry): number {
  return g.atol + g.rtol * Math.abs(g.value);
}

/**
 * Compare a run's recorded values with the golden. With a golden for the run's backend,
 * every value is checked and missing or unexpected names are drift too. Without one,
 * exact values (counts, flags: tolerance 0) are checked against another backend's golden
 * and the rest are listed as unchecked.
 */
export function compareWithGolden(recorded: readonly Recorded[], golden: GoldenFile | null, backendHint = 'unknown'): GoldenCheck {
  const backend = recorded[0]?.backend ?? backendHint;
  const drifts: Drift[] = [];
  const seen = new Set<string>();
  for (const r of recorded) {
    if (seen.has(r.name)) drifts.push({ name: r.name, expected: null, actual: r.value, allowed: 0, why: 'recorded twice' });
    seen.add(r.name);
  }
  if (golden === null) {
    return { ok: false, backend, checked: 0, drifts, unchecked: recorded.map((r) => r.name), note: 'no golden file: run with --update to create it' };
  }
  const own = golden.backends[backend];
  if (own !== undefined) {
    for (const r of recorded) {
      const g = own[r.name];
      if (g === undefined) {
        drifts.push({ name: r.name, expected: null, actual: r.value, allowed: 0, why: 'not in the golden (new value?)' });
      } else if (!withinTolerance(r.value, g)) {
        drifts.push({ name: r.name, expected: g.value, actual: r.value, allowed: allowedDeviation(g), why: 'outside tolerance' });
      }
    }
    for (const name of Object.keys(own)) {
      if (!seen.has(name)) drifts.push({ name, expected: own[name].value, actual: null, allowed: 0, why: 'in the golden but not recorded' });
    }
    return { ok: drifts.length === 0, backend, checked: recorded.length, drifts, unchecked: [], note: null };
  }
  const other = Object.keys(golden.backends)[0];
  const unchecked: string[] = [];
  let checked = 0;
  for (const r of recorded) {
    const g = other === undefined ? undefined : golden.backends[other][r.name];
    if (g !== undefined && g.rtol === 0 && g.atol === 0) {
      checked += 1;
      if (!withinTolerance(r.value, g)) drifts.push({ name: r.name, expected: g.value, actual: r.value, allowed: 0, why: `differs from the exact ${other} golden` });
    } else {
      unchecked.push(r.name);
    }
  }
  return {
    ok: drifts.length === 0,
    backend,
    checked,
    drifts,
    unchecked,
    note: `no golden for backend "${backend}": exact values checked against "${other ?? 'none'}", ${unchecked.length} others unchecked (run with --update on this backend to add them)`,
  };
}

/** The golden file with this run's values as the section of its backend (others kept). */
export function updatedGolden(previous: GoldenFile | null, notebook: string, recorded: readonly Recorded[]): GoldenFile {
  const backend = recorded[0]?.backend ?? 'unknown';
  const section: Record<string, GoldenEntry> = {};
  for (const r of recorded) section[r.name] = { value: r.value, rtol: r.rtol, atol: r.atol };
  return { notebook, backends: { ...(previous?.backends ?? {}), [backend]: section } };
}

export function readGolden(path: string): GoldenFile | null {
  if (!existsSync(path)) return null;
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as GoldenFile;
  if (typeof parsed !== 'object' || parsed === null || typeof parsed.backends !== 'object') {
    throw new Error(`${path}: not a golden file (expected { notebook, backends })`);
  }
  return parsed;
}

export function writeGolden(path: string, golden: GoldenFile): void {
  writeFileAtomic(path, JSON.stringify(golden, null, 2) + '\n');
}

/** A readable diff of the drifted values. */
export function formatDrifts(check: GoldenCheck): string[] {
  return check.drifts.map((d) => {
    const fmt = (v: number | null) => (v === null ? '—' : String(v));
    const delta = d.expected !== null && d.actual !== null ? ` (Δ ${(d.actual - d.expected).toPrecision(3)}, allowed ±${d.allowed.toPrecision(3)})` : '';
    return `  ${d.name}: golden ${fmt(d.expected)}, now ${fmt(d.actual)}${delta} — ${d.why}`;
  });
}
