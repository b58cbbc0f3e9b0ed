import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { execa } from 'execa';
import { RECORD_MIME } from '../../src/notebook/display.js';
import type { Recorded } from './goldens.js';

const EVENT_PREFIX = '[lora-tfjs-event] ';

export type FailureKind = 'cell-error' | 'timeout' | 'kernel-died' | 'nbconvert';

export interface Failure {
  kind: FailureKind;
  /** 0-based index of the failing cell in the notebook, when known. */
  cell: number | null;
  source: string | null;
  /** What the kernel wrote to stderr while running that cell (tslab's error text). */
  stderr: string;
  /** nbconvert's own account, trimmed. */
  message: string;
}

export interface NotebookResult {
  notebook: string;
  name: string;
  passed: boolean;
  seconds: number;
  cells: number;
  failure: Failure | null;
  /** The executed notebook in the output folder (only when it passed). */
  executed: string | null;
  records: Recorded[];
}

export interface RunOptions {
  jupyter: string;
  notebook: string;
  /** Where nbconvert writes; the caller moves the result into place. */
  tmpDir: string;
  /** Per-cell timeout, seconds. */
  cellTimeout: number;
  env: Record<string, string>;
  hooksConfig: string;
  onProgress?: (line: string) => void;
  /** Registers a way to kill this run (nbconvert and its kernel) if the runner is interrupted. */
  track?: (kill: () => void) => () => void;
}

interface NotebookJson {
  cells: Array<{ cell_type: string; source: string | string[]; outputs?: Array<Record<string, unknown>> }>;
}

export function readNotebook(path: string): NotebookJson {
  return JSON.parse(readFileSync(path, 'utf8')) as NotebookJson;
}

const sourceOf = (s: string | string[]): string => (Array.isArray(s) ? s.join('') : s);

/**
 * The values a notebook's cells recorded, in order. `record()` sends each as a display
 * message with no data and the value in its metadata under RECORD_MIME (so no frontend
 * shows it); any other output, including a value under RECORD_MIME in `data`, is not a record.
 */
export function recordsOf(nb: NotebookJson): Recorded[] {
  const out: Recorded[] = [];
  for (const cell of nb.cells) {
    for (const o of cell.outputs ?? []) {
      if (o.output_type !== 'display_data') continue;
      const r = (o.metadata as Record<string, unknown> | undefined)?.[RECORD_MIME] as Recorded | undefined;
      if (r !== undefined) out.push(r);
    }
  }
  return out;
}

const isRecord = (o: Record<string, unknown>) => o.output_type === 'display_data' && (o.metadata as Record<string, unknown> | undefined)?.[RECORD_MIME] !== undefined;

/**
 * Where a notebook's records would still leave a visible trace, though they render nothing:
 * a cell whose only outputs are records gets an empty output area (JupyterLab), and a record
 * between two outputs of the same stream splits the printed text into two blocks with a gap
 * (the classic notebook). Record in cells that print, after the printing or before it.
 */
export function recordTraces(nb: NotebookJson): string[] {
  const problems: string[] = [];
  nb.cells.forEach((cell, i) => {
    const outputs = cell.outputs ?? [];
    if (outputs.length > 0 && outputs.every(isRecord)) problems.push(`cell ${i}: its only outputs are records (an empty output area in JupyterLab)`);
    outputs.forEach((o, j) => {
      if (!isRecord(o)) return;
      const before = outputs.slice(0, j).reverse().find((p) => !isRecord(p));
      const after = outputs.slice(j + 1).find((p) => !isRecord(p));
      if (before?.output_type === 'stream' && after?.output_type === 'stream' && before.name === after.name) {
        const name = (o.metadata as Record<string, { name?: unknown }>)[RECORD_MIME]?.name;
        problems.push(`cell ${i}: record ${JSON.stringify(name)} between two ${String(before.name)} outputs (two blocks in the classic notebook)`);
      }
    });
  });
  return problems;
}

/**
 * Execute one notebook with `jupyter nbconvert --execute` on the tslab kernel. Never hangs:
 * nbclient enforces the per-cell timeout, and a watchdog kills the whole process group
 * (nbconvert and its kernel) if nbconvert itself outlives every cell's budget.
 */
export async function runNotebook(o: RunOptions): Promise<NotebookResult> {
  const name = basename(o.notebook, '.ipynb');
  const source = readNotebook(o.notebook);
  const codeCells = source.cells.filter((c) => c.cell_type === 'code').length;
  const started = performance.now();
  const runId = randomUUID();
  const child = execa(
    o.jupyter,
    [
      'nbconvert',
      '--config', o.hooksConfig,
      '--to', 'notebook',
      '--execute',
      '--ExecutePreprocessor.kernel_name=tslab',
      `--ExecutePreprocessor.timeout=${o.cellTimeout}`,
      '--ExecutePreprocessor.startup_timeout=120',
      '--output-dir', o.tmpDir,
      '--output', name,
      o.notebook,
    ],
    { env: { ...o.env, [RUN_ID_VAR]: runId }, reject: false, stdin: 'ignore', detached: true, buffer: { stdout: true, stderr: false } },
  );
  const untrack = o.track?.(() => killRun(child.pid, runId)) ?? (() => undefined);
  const budgetMs = (o.cellTimeout * Math.max(1, codeCells) + 180) * 1000;
  let watchdogFired = false;
  const watchdog = setTimeout(() => {
    watchdogFired = true;
    killRun(child.pid, runId);
  }, budgetMs);

  const log: string[] = [];
  let current: number | null = null;
  let error: { index: number; source: string; stderr: string } | null = null;
  let doneCode = 0;
  let cellStart = performance.now();
  let pending = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (!line.startsWith(EVENT_PREFIX)) {
        log.push(line);
        continue;
      }
      const ev = JSON.parse(line.slice(EVENT_PREFIX.length)) as { event: string; index: number; status?: string; source?: string; stderr?: string; kind?: string };
      if (ev.event === 'cell_start') {
        current = ev.index;
        cellStart = performance.now();
      } else if (ev.event === 'cell_done') {
        doneCode += 1;
        o.onProgress?.(`${name}: code cell ${doneCode}/${codeCells} ${ev.status} (${((performance.now() - cellStart) / 1000).toFixed(1)} s)`);
      } else if (ev.event === 'cell_error') {
        error = { index: ev.index, source: ev.source ?? '', stderr: ev.stderr ?? '' };
      }
    }
  });
  const result = await child;
  clearTimeout(watchdog);
  untrack();
  const seconds = (performance.now() - started) / 1000;
  const written = join(o.tmpDir, `${name}.ipynb`);
  const text = log.join('\n');
  const base = { notebook: o.notebook, name, seconds, cells: source.cells.length };

  if (result.exitCode === 0 && !watchdogFired && existsSync(written)) {
    return { ...base, passed: true, failure: null, executed: written, records: recordsOf(readNotebook(written)) };
  }
  const at = (index: number | null) => (index === null ? null : sourceOf(source.cells[index]?.source ?? ''));
  let failure: Failure;
  const e = error as { index: number; source: string; stderr: string } | null;
  if (e !== null) {
    failure = { kind: 'cell-error', cell: e.index, source: e.source, stderr: e.stderr, message: lastLines(text, 3) };
  } else if (watchdogFired || /CellTimeoutError|timed out/i.test(text)) {
    failure = {
      kind: 'timeout',
      cell: current,
      source: at(current),
      stderr: '',
      message: watchdogFired ? `nbconvert ran past its ${Math.round(budgetMs / 1000)} s budget and was killed` : `the cell exceeded the ${o.cellTimeout} s per-cell timeout`,
    };
  } else if (/DeadKernelError|Kernel died/i.test(text)) {
    failure = { kind: 'kernel-died', cell: current, source: at(current), stderr: '', message: lastLines(text, 5) };
  } else {
    failure = { kind: 'nbconvert', cell: current, source: at(current), stderr: '', message: lastLines(text, 15) || `exit code ${result.exitCode}` };
  }
  return { ...base, passed: false, failure, executed: null, records: [] };
}

/** The environment variable that marks every process of one notebook run (nbconvert and its kernel). */
export const RUN_ID_VAR = 'LORA_TFJS_RUN_ID';

/**
 * Kill a detached nbconvert and everything it started. Jupyter starts kernels in a session
 * of their own, outside nbconvert's process group, so they are found by the run id they
 * inherited in their environment (Linux /proc; elsewhere only the group is killed).
 */
export function killRun(pid: number | undefined, runId: string): void {
  if (pid !== undefined) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return;
  }
  for (const e of entries) {
    try {
      if (readFileSync(`/proc/${e}/environ`, 'latin1').split('\0').includes(`${RUN_ID_VAR}=${runId}`)) process.kill(Number(e), 'SIGKILL');
    } catch {
      /* exited, or not ours to read */
    }
  }
}

function lastLines(text: string, n: number): string {
  return text.trim().split('\n').slice(-n).join('\n');
}
