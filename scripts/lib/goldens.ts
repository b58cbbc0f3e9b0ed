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

/**
 * `ok`: every recorded value was compared and held. `drift`: a value moved, appeared or
 * went missing. `unchecked`: nothing drifted, but some values had no golden to compare
 * with (another backend's run): that is not a pass, and the runner exits with its own code.
 */
export type GoldenStatus = 'ok' | 'drift' | 'unchecked';

export interface GoldenCheck {
  /** True only when every recorded value was compared and none drifted. */
  ok: boolean;
  status: GoldenStatus;
  backend: string;
  /** How many values were recorded, and how many of them were compared. */
  recorded: number;
  checked: number;
  drifts: Drift[];
  /** Values that could not be compared (no golden for this backend and not exact). */
  unchecked: string[];
  note: string | null;
}

function result(backend: string, recorded: number, checked: number, drifts: Drift[], unchecked: string[], note: string | null): GoldenCheck {
  // A notebook that records nothing checks nothing: never a pass.
  const status: GoldenStatus = drifts.length > 0 ? 'drift' : unchecked.length > 0 || recorded === 0 ? 'unchecked' : 'ok';
  return { ok: status === 'ok', status, backend, recorded, checked, drifts, unchecked, note };
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
 * exact values (counts, flags: tolerance 0) are checked against another backend's golden,
 * names it holds that were not recorded are drift, and the rest are listed as unchecked.
 * `backendHint` is the run's backend when nothing was recorded.
 */
export function compareWithGolden(recorded: readonly Recorded[], golden: GoldenFile | null, backendHint = 'unknown'): GoldenCheck {
  const backend = recorded[0]?.backend ?? backendHint;
  const drifts: Drift[] = [];
  const seen = new Set<string>();
  for (const r of recorded) {
    if (seen.has(r.name)) drifts.push({ name: r.name, expected: null, actual: r.value, allowed: 0, why: 'recorded twice' });
    seen.add(r.name);
    // A notebook that switched backends part-way has no single golden section to compare with.
    if (r.backend !== backend) drifts.push({ name: r.name, expected: null, actual: r.value, allowed: 0, why: `recorded on backend "${r.backend}", the others on "${backend}"` });
  }
  if (golden === null) {
    // Even a notebook that records nothing is unchecked without its golden file.
    const c = result(backend, recorded.length, 0, drifts, recorded.map((r) => r.name), 'no golden file: run with --update to create it');
    return c.status === 'ok' ? { ...c, ok: false, status: 'unchecked' } : c;
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
    return result(backend, recorded.length, recorded.length, drifts, [], null);
  }
  // Another backend's section (the first that holds values) still says which names the
  // notebook must record, and the exact values it must reproduce.
  const other = Object.keys(golden.backends).find((b) => Object.keys(golden.backends[b]).length > 0);
  const reference = other === undefined ? {} : golden.backends[other];
  const unchecked: string[] = [];
  let checked = 0;
  for (const r of recorded) {
    const g = reference[r.name];
    if (g !== undefined && g.rtol === 0 && g.atol === 0) {
      checked += 1;
      if (!withinTolerance(r.value, g)) drifts.push({ name: r.name, expected: g.value, actual: r.value, allowed: 0, why: `differs from the exact ${other} golden` });
    } else {
      unchecked.push(r.name);
    }
  }
  for (const name of Object.keys(reference)) {
    if (!seen.has(name)) drifts.push({ name, expected: reference[name].value, actual: null, allowed: 0, why: `in the ${other} golden but not recorded` });
  }
  if (recorded.length === 0 && other === undefined) unchecked.push('(nothing recorded, and the golden holds no values)');
  return result(
    backend,
    recorded.length,
    checked,
    drifts,
    unchecked,
    `no golden for backend "${backend}": ${checked} of ${recorded.length} values (the exact ones) checked against "${other ?? 'none'}", ${unchecked.length} unchecked (run with --update on this backend to add its golden)`,
  );
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

/** The goldens column of the runner's summary: how many values were compared, of how many. */
export function goldenSummary(check: GoldenCheck): string {
  if (check.status === 'drift') return `DRIFT (${check.drifts.length})`;
  if (check.status === 'unchecked') return `UNCHECKED (${check.unchecked.length} of ${check.recorded})`;
  return `ok (${check.checked} of ${check.recorded})`;
}

/** The docs index's note for a checked notebook, in words. */
export function goldenNote(check: GoldenCheck): string {
  if (check.status === 'ok') return `${check.checked} of ${check.recorded} values within tolerance`;
  if (check.status === 'drift') {
    // Which values: a reader of the docs should not need the runner's log to know.
    const names = [...new Set(check.drifts.map((d) => d.name))];
    return `${check.drifts.length} drifted: ${names.slice(0, 3).join(', ')}${names.length > 3 ? `, and ${names.length - 3} more` : ''}`;
  }
  return `${check.unchecked.length} of ${check.recorded} values unchecked (no ${check.backend} golden)`;
}

/** A readable diff of the drifted values; numbers exactly as stored (shortest round trip). */
export function formatDrifts(check: GoldenCheck): string[] {
  return check.drifts.map((d) => {
    const fmt = (v: number | null) => (v === null ? '—' : String(v));
    const delta = d.expected !== null && d.actual !== null ? ` (Δ ${(d.actual - d.expected).toPrecision(3)}, allowed ±${d.allowed.toPrecision(3)})` : '';
    return `  ${d.name}: golden ${fmt(d.expected)}, now ${fmt(d.actual)}${delta} — ${d.why}`;
  });
}
