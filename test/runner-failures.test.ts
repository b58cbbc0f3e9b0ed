import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const fixtures = join(root, 'test', 'fixtures');
const outs: string[] = [];

/**
 * Run the notebook runner on fixtures into a fresh output folder. The fixtures' goldens sit
 * beside them: `--goldens test/fixtures` unless `goldens` says otherwise (null: the default).
 */
async function runner(args: string[], env: Record<string, string> = {}, goldens: string | null = fixtures) {
  const out = mkdtempSync(join(tmpdir(), 'lora-runner-'));
  outs.push(out);
  const r = await execa(join(root, 'node_modules', '.bin', 'tsx'), [join(root, 'scripts', 'run-notebooks.ts'), '--out', out, '--no-docs', ...(goldens === null ? [] : ['--goldens', goldens]), ...args], {
    cwd: root,
    env,
    reject: false,
    all: true,
    timeout: 300_000,
  });
  return { ...r, out, text: r.all ?? '' };
}

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

describe('the notebook runner fails loudly', () => {
  afterAll(() => outs.forEach((o) => rmSync(o, { recursive: true, force: true })));

  it('names the notebook, the cell, its source and the kernel stderr when a cell throws; the source is untouched', async () => {
    const nb = join(fixtures, 'fixture-throw.ipynb');
    const before = sha(nb);
    const r = await runner([nb]);
    expect(r.exitCode).toBe(1);
    expect(r.text).toContain('test/fixtures/fixture-throw.ipynb failed: cell-error in cell 3 of 4 (index 2)');
    expect(r.text).toContain('throw new Error(`boom from fixture (answer was ${answer})`);');
    expect(r.text).toMatch(/--- kernel stderr ---\n[^]*boom from fixture \(answer was 41\)/);
    expect(r.text).toMatch(/fixture-throw\s+FAILED/);
    expect(sha(nb)).toBe(before);
    // Nothing executed or half-written is left for the failed notebook.
    expect(existsSync(join(r.out, 'notebooks', 'fixture-throw.ipynb'))).toBe(false);
    expect(readdirSync(r.out).filter((f) => f.startsWith('.tmp-'))).toEqual([]);
  });

  it('fails a cell that exceeds the per-cell timeout, naming it, without hanging', async () => {
    const started = Date.now();
    const r = await runner(['--timeout', '5', join(fixtures, 'fixture-timeout.ipynb')]);
    expect(r.exitCode).toBe(1);
    expect(r.text).toContain('failed: timeout in cell 3 of 3 (index 2)');
    expect(r.text).toContain('await new Promise((resolve) => setTimeout(resolve, 120_000));');
    expect(r.text).toContain('exceeded the 5 s per-cell timeout');
    expect(Date.now() - started).toBeLessThan(100_000); // the cell would sleep 120 s
  });

  it('fails when the kernel dies', async () => {
    const r = await runner([join(fixtures, 'fixture-crash.ipynb')]);
    expect(r.exitCode).toBe(1);
    expect(r.text).toMatch(/fixture-crash\.ipynb failed: kernel-died in cell 3 of 3 \(index 2\)/);
    expect(r.text).toContain('process.exit(3);');
  });

  it('fails on a value that drifted from its golden, with a readable diff', async () => {
    const nb = join(fixtures, 'fixture-drift.ipynb');
    const golden = join(fixtures, 'fixture-drift.golden.json');
    const before = sha(golden);
    const r = await runner([nb]);
    expect(r.exitCode).toBe(1);
    expect(r.text).toMatch(/✗ fixture-drift: 1 value\(s\) drifted/);
    expect(r.text).toContain('from test/fixtures/fixture-drift.golden.json (backend ');
    expect(r.text).toContain('drifting: golden 2, now 1.5 (Δ -0.500, allowed ±0.00200) — outside tolerance');
    expect(r.text).not.toMatch(/^\s+stable:/m);
    expect(r.text).toMatch(/fixture-drift\s+passed\s+[\d.]+\s+DRIFT \(1\)/);
    expect(sha(golden)).toBe(before); // a normal run never rewrites goldens
  });

  it('does not pass a run whose values went unchecked (a backend without its golden): exit 3, said in the summary', async () => {
    const nb = join(fixtures, 'fixture-unchecked.ipynb');
    const cpu = await runner([nb], { LORA_BACKEND: 'cpu' });
    expect(cpu.exitCode).toBe(3);
    expect(cpu.text).toContain('no golden for backend "cpu": 1 of 2 values (the exact ones) checked against "wasm", 1 unchecked');
    expect(cpu.text).toMatch(/fixture-unchecked\s+passed\s+[\d.]+\s+UNCHECKED \(1 of 2\)/);
    expect(cpu.text).toContain('0 passed, 0 failed, 1 unchecked');
    expect(cpu.text).toContain('not a pass (exit 3)');
    const wasm = await runner([nb], { LORA_BACKEND: 'wasm' });
    expect(wasm.exitCode).toBe(0);
    expect(wasm.text).toMatch(/fixture-unchecked\s+passed\s+[\d.]+\s+ok \(2 of 2\)/);
    expect(wasm.text).toContain('1 passed, 0 failed, 0 unchecked');
  });

  it('finds a golden by name in the goldens folder only: default test/goldens, or --goldens DIR; --update writes there', async () => {
    const nb = join(fixtures, 'fixture-unchecked.ipynb');
    const empty = mkdtempSync(join(tmpdir(), 'lora-goldens-'));
    const copy = mkdtempSync(join(tmpdir(), 'lora-goldens-'));
    outs.push(empty, copy);
    copyFileSync(join(fixtures, 'fixture-unchecked.golden.json'), join(copy, 'fixture-unchecked.golden.json'));
    const before = sha(join(fixtures, 'fixture-unchecked.golden.json'));
    const [byDefault, inEmpty, updated] = await Promise.all([
      runner([nb], { LORA_BACKEND: 'wasm' }, null), // the golden beside the fixture must not be found
      runner([nb], { LORA_BACKEND: 'wasm' }, empty),
      runner(['--update', nb], { LORA_BACKEND: 'cpu' }, copy),
    ]);
    for (const [r, where] of [
      [byDefault, 'test/goldens/fixture-unchecked.golden.json'],
      [inEmpty, join(empty, 'fixture-unchecked.golden.json')],
    ] as const) {
      expect(r.exitCode, r.text).toBe(3);
      expect(r.text).toContain(`fixture-unchecked: no golden file ${where}: run with --update to create it`);
      expect(r.text).toMatch(/fixture-unchecked\s+passed\s+[\d.]+\s+UNCHECKED \(2 of 2\)/);
    }
    expect(updated.exitCode, updated.text).toBe(0);
    expect(updated.text).toContain(`golden updated: ${join(copy, 'fixture-unchecked.golden.json')} (2 values, backend cpu)`);
    const written = JSON.parse(readFileSync(join(copy, 'fixture-unchecked.golden.json'), 'utf8')) as { backends: Record<string, unknown> };
    expect(Object.keys(written.backends).sort()).toEqual(['cpu', 'wasm']);
    expect(readdirSync(empty)).toEqual([]); // a plain run never writes goldens
    expect(sha(join(fixtures, 'fixture-unchecked.golden.json'))).toBe(before);
    expect(existsSync(join(root, 'test', 'goldens', 'fixture-unchecked.golden.json'))).toBe(false);
  });

  it('on Ctrl-C stops at once, kills nbconvert and its kernel, and leaves nothing half-written', async () => {
    const out = mkdtempSync(join(tmpdir(), 'lora-runner-'));
    outs.push(out);
    // A mark of our own, inherited by the runner, nbconvert and the kernel (other suites run in parallel).
    const mark = `run-${process.pid}-${Date.now()}`;
    const child = execa(join(root, 'node_modules', '.bin', 'tsx'), [join(root, 'scripts', 'run-notebooks.ts'), '--out', out, '--no-docs', join(fixtures, 'fixture-timeout.ipynb')], {
      cwd: root,
      reject: false,
      all: true,
      env: { LORA_TEST_MARK: mark },
    });
    // Wait until the long cell is running, then interrupt.
    await new Promise<void>((resolve) => {
      child.all?.on('data', (d: Buffer) => {
        if (d.toString().includes('code cell 1/2 ok')) resolve();
      });
    });
    await new Promise((r) => setTimeout(r, 1000));
    const runProcesses = () =>
      readdirSync('/proc')
        .filter((e) => /^\d+$/.test(e))
        .filter((e) => {
          try {
            const env = readFileSync(`/proc/${e}/environ`, 'latin1').split('\0');
            return env.includes(`LORA_TEST_MARK=${mark}`) && env.some((v) => v.startsWith('LORA_TFJS_RUN_ID='));
          } catch {
            return false;
          }
        });
    expect(runProcesses().length).toBeGreaterThanOrEqual(2); // nbconvert and its kernel
    child.kill('SIGINT');
    const r = await child;
    expect(r.exitCode).toBe(130);
    expect(r.all).toContain('SIGINT: stopped; nothing half-written was left');
    expect(readdirSync(out).filter((f) => f.startsWith('.tmp-'))).toEqual([]);
    await new Promise((res) => setTimeout(res, 500));
    expect(runProcesses()).toEqual([]);
  });

  it('rejects bad arguments with a message naming them', async () => {
    const r = await runner(['--jobs', 'zero']);
    expect(r.exitCode).toBe(2);
    expect(r.text).toContain('--jobs = "zero" is invalid; expected a positive integer');
    const r2 = await runner(['notebooks/missing.ipynb']);
    expect(r2.exitCode).toBe(2);
    expect(r2.text).toMatch(/notebook = ".*missing\.ipynb" is invalid; expected an existing \.ipynb file/);
    // A goldens folder that is not one would leave every notebook unchecked: refused up front.
    for (const bad of [join(root, 'test', 'no-such-goldens'), join(fixtures, 'fixture-drift.golden.json')]) {
      const r3 = await runner(['--goldens', bad]);
      expect(r3.exitCode).toBe(2);
      expect(r3.text).toContain(`--goldens = ${JSON.stringify(bad)} is invalid; expected an existing folder`);
    }
    const r4 = await runner(['--goldens']);
    expect(r4.exitCode).toBe(2);
    expect(r4.text).toContain('--goldens needs a folder');
  });
});
