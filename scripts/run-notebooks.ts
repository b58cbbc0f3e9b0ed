#!/usr/bin/env -S npx tsx
/**
 * Execute the notebooks headless (jupyter nbconvert + the tslab kernel), check their
 * recorded values against the committed goldens, and render HTML docs.
 *
 *   npm run notebooks [-- [options] [notebooks/NN-name.ipynb ...]]
 *
 *   --update         rewrite the goldens of this backend from this run
 *   --goldens DIR    the folder of the goldens (default: test/goldens/); a notebook
 *                    NN-name.ipynb is checked against DIR/NN-name.golden.json
 *   --jobs N         notebooks run in parallel (default: number of cores)
 *   --timeout S      per-cell timeout in seconds (default 300)
 *   --out DIR        output folder (default: out/), which git ignores
 *   --no-docs        skip the HTML docs
 *
 * Source notebooks are never modified. Executed notebooks land in DIR/notebooks, the docs
 * in DIR/docs: a small offline site (index.html, the landing page, links every notebook's
 * page and the browser demo in demo/; see scripts/lib/docs.ts and scripts/lib/demo.ts);
 * every file is written atomically.
 *
 * Exit status: 0 when every notebook ran and every recorded value was compared with its
 * golden and held; 1 when a notebook failed or a value drifted; 3 when nothing failed but
 * some values went unchecked (a backend without goldens): such a run is not a pass.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { plotlyPath } from '../src/notebook/chart.js';
import { moveAtomic } from './lib/atomic.js';
import { buildDemo } from './lib/demo.js';
import { type DocEntry, docStatus, notebookInfo, pageFile, renderHtml, writeSite } from './lib/docs.js';
import { type GoldenCheck, compareWithGolden, formatDrifts, goldenSummary, readGolden, updatedGolden, writeGolden } from './lib/goldens.js';
import { type NotebookResult, runNotebook } from './lib/notebook-run.js';
import { ensureJupyter, ensureKernelSpec, kernelEnv, wasmThreadsPerJob } from './lib/system.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

interface Args {
  notebooks: string[];
  update: boolean;
  jobs: number;
  timeout: number;
  out: string;
  goldens: string;
  docs: boolean;
}

function usage(message: string): never {
  console.error(`run-notebooks: ${message}\nusage: npm run notebooks -- [--update] [--jobs N] [--timeout S] [--out DIR] [--goldens DIR] [--no-docs] [notebook.ipynb ...]`);
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const args: Args = { notebooks: [], update: false, jobs: availableParallelism(), timeout: 300, out: join(root, 'out'), goldens: join(root, 'test', 'goldens'), docs: true };
  const positive = (flag: string, v: string | undefined) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) usage(`${flag} = ${JSON.stringify(v ?? null)} is invalid; expected a positive integer`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--update') args.update = true;
    else if (a === '--no-docs') args.docs = false;
    else if (a === '--jobs') args.jobs = positive(a, argv[++i]);
    else if (a === '--timeout') args.timeout = positive(a, argv[++i]);
    else if (a === '--out') args.out = resolve(argv[++i] ?? usage('--out needs a folder'));
    else if (a === '--goldens') args.goldens = resolve(argv[++i] ?? usage('--goldens needs a folder'));
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else args.notebooks.push(resolve(a));
  }
  if (args.notebooks.length === 0) {
    const dir = join(root, 'notebooks');
    args.notebooks = readdirSync(dir).filter((f) => /^\d\d-.*\.ipynb$/.test(f)).sort().map((f) => join(dir, f));
  }
  for (const nb of args.notebooks) {
    if (!nb.endsWith('.ipynb') || !existsSync(nb)) usage(`notebook = ${JSON.stringify(nb)} is invalid; expected an existing .ipynb file`);
  }
  // A mistyped folder would leave every notebook without its golden: refuse it up front.
  if (!existsSync(args.goldens) || !statSync(args.goldens).isDirectory()) {
    usage(`--goldens = ${JSON.stringify(args.goldens)} is invalid; expected an existing folder`);
  }
  return args;
}

/** A path as printed: relative to the checkout when inside it. */
const shown = (path: string) => (relative(root, path).startsWith('..') ? path : relative(root, path));

/** A notebook's golden: found by the notebook's name in the goldens folder. */
const goldenPath = (goldens: string, notebook: string) => join(goldens, `${basename(notebook, '.ipynb')}.golden.json`);

async function pool<T, R>(items: readonly T[], jobs: number, run: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await run(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, items.length) }, worker));
  return results;
}

function printFailure(r: NotebookResult): void {
  const f = r.failure;
  if (f === null) return;
  const where = f.cell === null ? 'before any cell ran' : `cell ${f.cell + 1} of ${r.cells} (index ${f.cell})`;
  console.error(`\n✗ ${relative(root, r.notebook)} failed: ${f.kind} in ${where}`);
  if (f.source !== null) console.error(`--- cell source ---\n${f.source}\n-------------------`);
  if (f.stderr.trim() !== '') console.error(`--- kernel stderr ---\n${f.stderr.trimEnd()}\n---------------------`);
  if (f.message.trim() !== '') console.error(`--- nbconvert ---\n${f.message}\n-----------------`);
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const tmp = join(args.out, `.tmp-${process.pid}`);
  const running = new Set<() => void>();
  const interrupt = (signal: string) => {
    for (const kill of running) kill();
    rmSync(tmp, { recursive: true, force: true });
    console.error(`\nrun-notebooks: ${signal}: stopped; nothing half-written was left in ${relative(root, args.out) || '.'}`);
    process.exit(130);
  };
  process.on('SIGINT', () => interrupt('SIGINT'));
  process.on('SIGTERM', () => interrupt('SIGTERM'));

  const log = (line: string) => console.log(`run-notebooks: ${line}`);
  const jupyter = await ensureJupyter(root, log);
  await ensureKernelSpec(root);
  // Kernels side by side share the cores: each gets its share of wasm threads (unless
  // LORA_WASM_THREADS says otherwise), as two kernels of 2 threads on 2 cores ran the notebooks
  // 2.2x slower than two of 1 thread (see README, Threads).
  const threads = process.env.LORA_WASM_THREADS || String(wasmThreadsPerJob(availableParallelism(), Math.min(args.jobs, args.notebooks.length)));
  const env = { ...kernelEnv(root), PYTHONUNBUFFERED: '1', LORA_WASM_THREADS: threads };
  mkdirSync(tmp, { recursive: true });
  log(`${args.notebooks.length} notebook(s), ${args.jobs} at a time, ${threads} wasm thread(s) each, per-cell timeout ${args.timeout} s, jupyter: ${jupyter}`);

  try {
    const started = performance.now();
    const results = await pool(args.notebooks, args.jobs, async (nb) => {
      const r = await runNotebook({
        jupyter,
        notebook: nb,
        tmpDir: tmp,
        cellTimeout: args.timeout,
        env,
        hooksConfig: join(root, 'scripts', 'nbconvert_hooks.py'),
        onProgress: (line) => console.log(`  ${line}`),
        track: (kill) => {
          running.add(kill);
          return () => running.delete(kill);
        },
      });
      console.log(`${r.passed ? '✓' : '✗'} ${r.name} ${r.passed ? 'passed' : 'FAILED'} in ${r.seconds.toFixed(1)} s`);
      return r;
    });

    // Regression: compare (or, with --update, rewrite) the goldens.
    const checks = new Map<string, GoldenCheck>();
    for (const r of results.filter((x) => x.passed)) {
      const path = goldenPath(args.goldens, r.notebook);
      const previous = readGolden(path);
      if (args.update) {
        writeGolden(path, updatedGolden(previous, basename(r.notebook), r.records));
        log(`golden updated: ${shown(path)} (${r.records.length} values, backend ${r.records[0]?.backend ?? '?'})`);
      } else {
        const check = compareWithGolden(r.records, previous, process.env.LORA_BACKEND ?? 'unknown');
        // Say where the runner looked, so that a golden in another folder is easy to spot.
        checks.set(r.name, previous === null ? { ...check, note: `no golden file ${shown(path)}: run with --update to create it` } : check);
      }
    }

    // Executed notebooks into place.
    for (const r of results.filter((x) => x.executed !== null)) {
      const target = join(args.out, 'notebooks', `${r.name}.ipynb`);
      moveAtomic(r.executed as string, target);
      r.executed = target;
    }

    // Docs.
    const backend = results.find((r) => r.records.length > 0)?.records[0].backend ?? 'unknown';
    if (args.docs) {
      const docsDir = join(args.out, 'docs');
      const rendered = await renderHtml(jupyter, results.filter((r) => r.passed).map((r) => r.executed as string), tmp, env);
      const entries: DocEntry[] = results.map((r) => ({
        name: r.name,
        ...notebookInfo(JSON.parse(readFileSync(r.notebook, 'utf8')), r.name),
        ...docStatus(r, checks.get(r.name), args.update ? { values: r.records.length } : null),
        seconds: r.seconds,
        page: rendered.has(r.name) ? pageFile(r.name) : null,
      }));
      // The browser demo, built before any page is written: a failed build leaves the old site whole.
      const demo = join(tmp, 'demo');
      await buildDemo(demo);
      const run = { backend, when: new Date(), wallSeconds: (performance.now() - started) / 1000 };
      writeSite(docsDir, entries, rendered, run, plotlyPath(), { demo });
      log(`docs: ${shown(join(docsDir, 'index.html'))}`);
    }

    // Report.
    for (const r of results) printFailure(r);
    let drifted = 0;
    let unchecked = 0;
    for (const r of results) {
      const c = checks.get(r.name);
      if (c === undefined) continue;
      if (c.note !== null) console.log(`\n${r.name}: ${c.note}`);
      if (c.status === 'unchecked') unchecked += 1;
      if (c.drifts.length > 0) {
        drifted += 1;
        console.error(`\n✗ ${r.name}: ${c.drifts.length} value(s) drifted from ${shown(goldenPath(args.goldens, r.notebook))} (backend ${c.backend}):`);
        for (const line of formatDrifts(c)) console.error(line);
        const goldensFlag = args.goldens === join(root, 'test', 'goldens') ? '' : ` --goldens ${shown(args.goldens)}`;
        console.error(`  (if the change is intended: npm run notebooks -- --update${goldensFlag})`);
      }
    }
    const wall = (performance.now() - started) / 1000;
    console.log('\nnotebook                          status   seconds   goldens');
    for (const r of results) {
      const c = checks.get(r.name);
      const g = !r.passed ? '-' : args.update ? 'updated' : c === undefined ? '-' : goldenSummary(c);
      console.log(`${r.name.padEnd(33)} ${(r.passed ? 'passed' : 'FAILED').padEnd(8)} ${r.seconds.toFixed(1).padStart(7)}   ${g}`);
    }
    const failed = results.filter((r) => !r.passed).length;
    console.log(`wall time ${wall.toFixed(1)} s; backend ${backend}`);
    console.log(`${results.length - failed - drifted - unchecked} passed, ${failed + drifted} failed, ${unchecked} unchecked`);
    if (failed + drifted > 0) return 1;
    if (unchecked > 0) {
      console.error(`run-notebooks: ${unchecked} notebook(s) ran, but some of their values were not compared with a golden (backend ${backend}); not a pass (exit 3)`);
      return 3;
    }
    return 0;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`run-notebooks: ${(err as Error).message}`);
    process.exit(1);
  },
);
