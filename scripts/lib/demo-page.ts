/**
 * The browser demo's settings and the little logic its page needs (scripts/demo/main.ts),
 * as pure functions: no DOM, no tfjs, no Node built-ins, so the page bundles them and
 * test/demo.test.ts checks them in Node.
 */

/** What the demo trains: `lowRankShiftTask(DEMO_TASK)`, then LoRA on its base. */
export const DEMO_TASK = { dims: [16, 32, 8], shiftRank: 2, samples: 256, seed: 3 } as const;
/** `train(...)`'s options besides the steps (the README's example). */
export const DEMO_TRAINING = { batchSize: 32, learningRate: 1e-2, seed: 0 } as const;
/** The form's starting values. */
export const DEMO_DEFAULTS = { rank: 4, steps: 300 } as const;
/** What the form accepts: a rank up to the narrowest layer, a few thousand steps at most. */
export const DEMO_LIMITS = { rank: { min: 1, max: Math.min(...DEMO_TASK.dims) }, steps: { min: 1, max: 2000 } } as const;
/** Rows of the held-out inputs whose predictions the page reports (for checks from outside). */
export const PROBE_ROWS = 4;

/** LoRA's alpha for a rank: 2·r, so the scale s = alpha / r stays 2 whatever the rank. */
export const demoAlpha = (rank: number): number => 2 * rank;

export type DemoInputs = { ok: true; rank: number; steps: number } | { ok: false; errors: { rank?: string; steps?: string } };

function wholeNumber(field: string, text: string, min: number, max: number, why = ''): { value: number } | { error: string } {
  const t = text.trim();
  const n = /^[+]?\d+$/.test(t) ? Number(t) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    return { error: `${field} = ${JSON.stringify(text)} is invalid; expected a whole number from ${min} to ${max}${why}` };
  }
  return { value: n };
}

/** The form's rank and steps fields, checked: the numbers, or a message per bad field. */
export function parseDemoInputs(raw: { rank: string; steps: string }): DemoInputs {
  const rank = wholeNumber('rank', raw.rank, DEMO_LIMITS.rank.min, DEMO_LIMITS.rank.max, ` (the narrowest layer has ${DEMO_LIMITS.rank.max} units)`);
  const steps = wholeNumber('steps', raw.steps, DEMO_LIMITS.steps.min, DEMO_LIMITS.steps.max);
  if ('value' in rank && 'value' in steps) return { ok: true, rank: rank.value, steps: steps.value };
  return { ok: false, errors: { ...('error' in rank ? { rank: rank.error } : {}), ...('error' in steps ? { steps: steps.error } : {}) } };
}

/** The loss curve: one point per step (1-based), log scale, no Plotly logo link. */
export function lossFigure(losses: readonly number[], title: string): { data: Array<Record<string, unknown>>; layout: Record<string, unknown>; config: Record<string, unknown> } {
  return {
    data: [{ type: 'scatter', mode: 'lines', name: 'training loss', x: losses.map((_, i) => i + 1), y: [...losses], line: { color: '#1f77b4' } }],
    layout: {
      title: { text: title },
      height: 360,
      margin: { l: 70, r: 20, t: 50, b: 50 },
      xaxis: { title: { text: 'step' }, rangemode: 'tozero' },
      yaxis: { title: { text: 'minibatch MSE (log scale)' }, type: 'log' },
      showlegend: false,
    },
    config: { displaylogo: false, responsive: true },
  };
}

/**
 * Collects each step's loss and says when the chart is due for a redraw: at the first step,
 * the last, and otherwise once `intervalMs` have passed since the previous redraw ended
 * (`drawn`), so that drawing takes a bounded share of the time however slow it is.
 * `take()` hands over the points not yet drawn (for Plotly.extendTraces).
 */
export class LiveSeries {
  private x: number[] = [];
  private y: number[] = [];
  private lastDrawn = -Infinity;

  constructor(
    readonly totalSteps: number,
    readonly intervalMs = 200,
  ) {}

  /** Adds step `step` (0-based) at time `now`; true when the points should be drawn now. */
  push(step: number, loss: number, now: number): boolean {
    this.x.push(step + 1);
    this.y.push(loss);
    return step === 0 || step === this.totalSteps - 1 || now - this.lastDrawn >= this.intervalMs;
  }

  take(): { x: number[]; y: number[] } {
    const out = { x: this.x, y: this.y };
    this.x = [];
    this.y = [];
    return out;
  }

  /** The redraw ended at `now`. */
  drawn(now: number): void {
    this.lastDrawn = now;
  }
}

/**
 * The one line the page shows when wasm did not start and it trains on the plain cpu backend
 * instead (the error itself goes into the line's tooltip).
 */
export function fallbackNote(protocol: string): string {
  return protocol === 'file:'
    ? 'wasm is unavailable on a page opened from a file (browsers refuse to fetch .wasm for file:// pages), so this runs on the slower cpu backend; serve the docs folder over HTTP for wasm.'
    : 'wasm did not start (its .wasm files did not load from this folder), so this runs on the slower cpu backend.';
}

/** A number for the results table: 3 significant digits, exponential when tiny or large. */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e5)) return x.toExponential(2);
  return x.toPrecision(3);
}

/** How the adapted model's held-out MSE compares with the base's, in words. */
export function comparison(adapted: number, base: number): string {
  if (!(adapted > 0) || !(base > 0)) return '';
  return adapted < base ? `${formatNumber(base / adapted)}× lower than the base model's` : `${formatNumber(adapted / base)}× higher than the base model's`;
}

/** A finished run, as plain values: what the page leaves in `window.__demo.run` (read by test/demo.test.ts). */
export interface DemoRun {
  rank: number;
  alpha: number;
  steps: number;
  losses: number[];
  /** train()'s own figure: the wall time of the run over its steps, chart updates included. */
  msPerStep: number;
  /** The steps alone: the time spent outside onStep. */
  computeMsPerStep: number;
  testMse: number;
  baseTestMse: number;
  trainable: number;
  /** The adapter's factors in lora-tfjs's layout (A [in, r], B [r, out]) per module. */
  adapter: { name: string; modules: string[]; factors: Record<string, { A: number[][]; B: number[][] }> };
  /** The frozen base's weights (W [in, out], b [out]). */
  base: Array<{ W: number[][]; b: number[] }>;
  /** The first held-out rows and the adapted model's predictions on them. */
  probe: { x: number[][]; y: number[][] };
  files: { config: string; weightsBytes: number; weightsSha256: string | null };
  /** tf.memory().numTensors after the run (the same after every run: nothing leaks). */
  tensors: number;
}

export interface DemoState {
  state: 'loading' | 'ready' | 'training' | 'done' | 'error';
  backend: string | null;
  summary: string | null;
  fallback: string | null;
  error: string | null;
  run: DemoRun | null;
}
