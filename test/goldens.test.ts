import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type GoldenFile, type Recorded, compareWithGolden, formatDrifts, goldenSummary, readGolden, updatedGolden, writeGolden } from '../scripts/lib/goldens.js';

const rec = (name: string, value: number, rtol = 0, atol = 0, backend = 'wasm'): Recorded => ({ name, value, rtol, atol, backend });
const golden: GoldenFile = {
  notebook: 'x.ipynb',
  backends: { wasm: { count: { value: 10, rtol: 0, atol: 0 }, loss: { value: 0.5, rtol: 0.01, atol: 0 } } },
};

describe('golden comparison', () => {
  it('passes values within |v − g| ≤ atol + rtol·|g| and fails the rest with a readable diff', () => {
    const good = compareWithGolden([rec('count', 10), rec('loss', 0.504, 0.01)], golden);
    expect(good).toMatchObject({ ok: true, status: 'ok', recorded: 2, checked: 2, unchecked: [] });
    expect(goldenSummary(good)).toBe('ok (2 of 2)');
    const bad = compareWithGolden([rec('count', 11), rec('loss', 0.506, 0.01)], golden);
    expect(bad.ok).toBe(false);
    expect(bad.drifts.map((d) => d.name)).toEqual(['count', 'loss']);
    expect(goldenSummary(bad)).toBe('DRIFT (2)');
    expect(formatDrifts(bad)).toEqual([
      '  count: golden 10, now 11 (Δ 1.00, allowed ±0.00) — outside tolerance',
      '  loss: golden 0.5, now 0.506 (Δ 0.00600, allowed ±0.00500) — outside tolerance',
    ]);
  });

  it('treats missing, new and duplicated names as drift', () => {
    const c = compareWithGolden([rec('count', 10), rec('extra', 1), rec('extra', 1)], golden);
    expect(c.drifts.map((d) => `${d.name}: ${d.why}`).sort()).toEqual([
      'extra: not in the golden (new value?)',
      'extra: not in the golden (new value?)',
      'extra: recorded twice',
      'loss: in the golden but not recorded',
    ]);
  });

  it('on a backend without a golden, checks exact values against another backend, lists the rest and is not a pass', () => {
    const c = compareWithGolden([rec('count', 10, 0, 0, 'cpu'), rec('loss', 0.7, 0.01, 0, 'cpu')], golden);
    expect(c).toMatchObject({ ok: false, status: 'unchecked', recorded: 2, checked: 1, unchecked: ['loss'], drifts: [] });
    expect(c.note).toBe('no golden for backend "cpu": 1 of 2 values (the exact ones) checked against "wasm", 1 unchecked (run with --update on this backend to add its golden)');
    expect(goldenSummary(c)).toBe('UNCHECKED (1 of 2)');
    // An exact value that differs is drift, which outranks unchecked.
    const wrong = compareWithGolden([rec('count', 9, 0, 0, 'cpu'), rec('loss', 0.7, 0.01, 0, 'cpu')], golden);
    expect(wrong).toMatchObject({ ok: false, status: 'drift' });
  });

  it('fails without any golden file, even for a notebook that records nothing', () => {
    expect(compareWithGolden([rec('count', 10)], null)).toMatchObject({ ok: false, status: 'unchecked', checked: 0, note: 'no golden file: run with --update to create it' });
    expect(compareWithGolden([], null)).toMatchObject({ ok: false, status: 'unchecked' });
  });

  it('a notebook that recorded nothing never passes, whatever the golden holds', () => {
    // Its golden holds values: every one is missing, on the run's backend or another.
    for (const hint of ['wasm', 'cpu', 'unknown']) {
      const c = compareWithGolden([], golden, hint);
      expect(c.status, hint).toBe('drift');
      expect(c.drifts.map((d) => d.name).sort(), hint).toEqual(['count', 'loss']);
    }
    // Its golden is empty too: nothing was compared.
    expect(compareWithGolden([], { notebook: 'x.ipynb', backends: { wasm: {} } }, 'wasm')).toMatchObject({ ok: false, status: 'unchecked' });
    expect(compareWithGolden([], { notebook: 'x.ipynb', backends: {} }, 'cpu')).toMatchObject({ ok: false, status: 'unchecked' });
  });

  it('on another backend, names the golden holds but the run did not record are drift', () => {
    const c = compareWithGolden([rec('count', 10, 0, 0, 'cpu')], golden);
    expect(c.status).toBe('drift');
    expect(c.drifts.map((d) => `${d.name}: ${d.why}`)).toEqual(['loss: in the wasm golden but not recorded']);
    // An empty first section does not hide a full one.
    const withEmpty: GoldenFile = { notebook: 'x.ipynb', backends: { webgl: {}, ...golden.backends } };
    expect(compareWithGolden([rec('count', 9, 0, 0, 'cpu'), rec('loss', 0.5, 0.01, 0, 'cpu')], withEmpty).drifts.map((d) => d.why)).toEqual(['differs from the exact wasm golden']);
  });

  it('counts checked and unchecked values apart', () => {
    const three: GoldenFile = { notebook: 'x.ipynb', backends: { wasm: { a: { value: 1, rtol: 0, atol: 0 }, b: { value: 2, rtol: 0.1, atol: 0 }, c: { value: 3, rtol: 0.1, atol: 0 } } } };
    const c = compareWithGolden([rec('a', 1, 0, 0, 'cpu'), rec('b', 2, 0.1, 0, 'cpu'), rec('c', 3, 0.1, 0, 'cpu')], three);
    expect(c).toMatchObject({ status: 'unchecked', recorded: 3, checked: 1, unchecked: ['b', 'c'] });
    expect(goldenSummary(c)).toBe('UNCHECKED (2 of 3)');
  });

  it('refuses a run whose values came from two backends', () => {
    const c = compareWithGolden([rec('count', 10), rec('loss', 0.5, 0.01, 0, 'cpu')], golden);
    expect(c.status).toBe('drift');
    expect(c.drifts.map((d) => d.why)).toContain('recorded on backend "cpu", the others on "wasm"');
  });

  it('--update replaces the run\'s backend section and keeps the others; files are written whole', () => {
    const next = updatedGolden({ ...golden, backends: { ...golden.backends, cpu: {} } }, 'x.ipynb', [rec('count', 12)]);
    expect(next.backends.wasm).toEqual({ count: { value: 12, rtol: 0, atol: 0 } });
    expect(next.backends.cpu).toEqual({});
    const dir = mkdtempSync(join(tmpdir(), 'golden-'));
    const path = join(dir, 'x.golden.json');
    writeGolden(path, next);
    expect(readGolden(path)).toEqual(next);
    expect(readdirSync(dir)).toEqual(['x.golden.json']); // no temporary file left behind
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual(next);
    rmSync(dir, { recursive: true });
  });
});
