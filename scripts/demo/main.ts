/**
 * The docs' browser demo (bundled by scripts/lib/demo.ts into demo/demo.js): trains a LoRA
 * adapter with lora-tfjs in the reader's tab, draws the loss live, reports the time per step
 * and the held-out MSE, and offers the adapter as PEFT's two files.
 *
 * Calls only: the logic lives in lora-tfjs and in scripts/lib/demo-page.ts. What the page
 * shows is also left in `window.__demo` (plain values), for test/demo.test.ts.
 */
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  LoRAMLP,
  adapterConfigText,
  backendSummary,
  evaluate,
  initBackend,
  lowRankShiftTask,
  parameterCounts,
  serializeAdapter,
  tf,
  train,
} from 'lora-tfjs';
import { DEMO_TASK, DEMO_TRAINING, type DemoRun, type DemoState, LiveSeries, PROBE_ROWS, comparison, demoAlpha, fallbackNote, formatNumber, lossFigure, parseDemoInputs } from '../lib/demo-page.js';

interface PlotlyLike {
  newPlot(el: HTMLElement, data: unknown[], layout: unknown, config: unknown): Promise<unknown>;
  extendTraces(el: HTMLElement, update: { x: number[][]; y: number[][] }, traces: number[]): Promise<unknown>;
}

const demo: DemoState = { state: 'loading', backend: null, summary: null, fallback: null, error: null, run: null };
(window as unknown as { __demo: DemoState }).__demo = demo;

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const status = (text: string) => {
  $('status').textContent = text;
};
/**
 * Lets the browser paint a frame (and the page stay responsive) between training steps: after
 * the next animation frame, or after 100 ms where frames do not come (a tab hidden meanwhile).
 */
const yieldToPage = () =>
  new Promise<void>((resolve) => {
    const fallback = setTimeout(resolve, 100);
    requestAnimationFrame(() => {
      clearTimeout(fallback);
      setTimeout(resolve, 0);
    });
  });

let urls: string[] = [];

async function sha256(bytes: Uint8Array): Promise<string | null> {
  if (globalThis.crypto?.subtle === undefined) return null; // not a secure context (file://, plain http to another host)
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

function offer(id: string, name: string, blob: Blob): void {
  const a = $<HTMLAnchorElement>(id);
  const url = URL.createObjectURL(blob);
  urls.push(url);
  a.href = url;
  a.download = name;
  a.textContent = name;
}

async function start(): Promise<void> {
  const plotly = (window as unknown as { Plotly?: PlotlyLike }).Plotly;
  if (plotly === undefined) throw new Error('plotly.min.js did not load (it is expected beside the docs pages, in ../plotly.min.js)');

  // wasm, from this folder; where it cannot start (a page opened from file://), the cpu backend.
  let backend: string;
  try {
    backend = await initBackend({ backend: 'wasm', wasmPaths: './' });
  } catch (err) {
    demo.fallback = fallbackNote(location.protocol);
    backend = await initBackend({ backend: 'cpu' });
    $('fallback').textContent = demo.fallback;
    $('fallback').title = String((err as Error)?.message ?? err);
    $('fallback').hidden = false;
  }
  demo.backend = backend;
  demo.summary = backendSummary();
  $('backend-name').textContent = demo.summary;

  const task = lowRankShiftTask(DEMO_TASK);
  const baseTestMse = evaluate(task.base, task.xTest, task.yTestShifted);
  const probeX = tf.tidy(() => task.xTest.slice([0, 0], [PROBE_ROWS, DEMO_TASK.dims[0]]));
  const base = task.base.layers.map((l) => ({ W: l.W.arraySync() as number[][], b: (l.b?.arraySync() ?? []) as number[] }));
  let model: LoRAMLP | null = null;

  const form = $<HTMLFormElement>('form');
  const button = $<HTMLButtonElement>('train');
  const rankInput = $<HTMLInputElement>('rank');
  const stepsInput = $<HTMLInputElement>('steps');

  const run = async (rank: number, steps: number): Promise<void> => {
    model?.dispose();
    for (const url of urls) URL.revokeObjectURL(url);
    urls = [];
    $('downloads').hidden = true;
    $('results').hidden = true;
    const alpha = demoAlpha(rank);
    const m = LoRAMLP.fromBase(task.base, { rank, alpha });
    model = m;
    const counts = parameterCounts(m);
    const chart = $('chart');
    const figure = lossFigure([], `LoRA rank ${rank}: training loss, live`);
    await plotly.newPlot(chart, figure.data, figure.layout, figure.config);
    const series = new LiveSeries(steps);
    let computeMs = 0;
    status(`Training: step 0 of ${steps}…`);
    await yieldToPage();
    let resumed = performance.now();
    const result = await train(m, {
      x: task.x,
      y: task.yShifted,
      steps,
      ...DEMO_TRAINING,
      onStep: async (step, loss) => {
        const now = performance.now();
        computeMs += now - resumed;
        // A hidden tab draws nothing and keeps computing; the points wait in the series.
        if (series.push(step, loss, now) && !document.hidden) {
          const points = series.take();
          await plotly.extendTraces(chart, { x: [points.x], y: [points.y] }, [0]);
          status(`Training: step ${step + 1} of ${steps}, loss ${formatNumber(loss)}`);
          await yieldToPage();
          series.drawn(performance.now());
        }
        resumed = performance.now();
      },
    });
    const rest = series.take();
    if (rest.x.length > 0) await plotly.extendTraces(chart, { x: [rest.x], y: [rest.y] }, [0]);
    const testMse = evaluate(m, task.xTest, task.yTestShifted);
    const name = m.activeAdapter ?? 'default';
    const factors: DemoRun['adapter']['factors'] = {};
    m.layers.forEach((layer, i) => {
      const a = layer.adapter(name);
      factors[m.names[i]] = { A: a.A.arraySync() as number[][], B: a.B.arraySync() as number[][] };
    });
    const predicted = m.predict(probeX);
    const probeY = predicted.arraySync() as number[][];
    predicted.dispose();

    const peft = serializeAdapter(m);
    const config = adapterConfigText(peft.config);
    offer('download-config', ADAPTER_CONFIG, new Blob([config], { type: 'application/json' }));
    offer('download-weights', ADAPTER_WEIGHTS, new Blob([peft.weights], { type: 'application/octet-stream' }));

    const computeMsPerStep = computeMs / steps;
    $('r-trainable').textContent = counts.trainable.toLocaleString('en-US');
    $('r-frozen').textContent = `beside ${counts.frozen.toLocaleString('en-US')} frozen in the base`;
    $('r-ms').textContent = `${computeMsPerStep.toFixed(2)} ms`;
    $('r-ms-note').textContent = `on ${demo.summary}; ${result.msPerStep.toFixed(2)} ms with the live chart`;
    $('r-base').textContent = formatNumber(baseTestMse);
    $('r-mse').textContent = formatNumber(testMse);
    $('r-compare').textContent = comparison(testMse, baseTestMse);
    $('results').hidden = false;
    $('downloads').hidden = false;
    status(`Done: ${steps} steps, final training loss ${formatNumber(result.losses[result.losses.length - 1])}.`);
    demo.run = {
      rank,
      alpha,
      steps,
      losses: result.losses,
      msPerStep: result.msPerStep,
      computeMsPerStep,
      testMse,
      baseTestMse,
      trainable: counts.trainable,
      adapter: { name, modules: [...m.names], factors },
      base,
      probe: { x: probeX.arraySync() as number[][], y: probeY },
      files: { config, weightsBytes: peft.weights.byteLength, weightsSha256: await sha256(peft.weights) },
      tensors: tf.memory().numTensors,
    };
  };

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (demo.state === 'training') return;
    const inputs = parseDemoInputs({ rank: rankInput.value, steps: stepsInput.value });
    rankInput.setAttribute('aria-invalid', String(!inputs.ok && inputs.errors.rank !== undefined));
    stepsInput.setAttribute('aria-invalid', String(!inputs.ok && inputs.errors.steps !== undefined));
    if (!inputs.ok) {
      $('form-error').textContent = [inputs.errors.rank, inputs.errors.steps].filter((e) => e !== undefined).join('; ');
      return;
    }
    $('form-error').textContent = '';
    demo.state = 'training';
    button.disabled = true;
    run(inputs.rank, inputs.steps).then(
      () => {
        demo.state = 'done';
        button.disabled = false;
      },
      (err: unknown) => fail(err),
    );
  });

  demo.state = 'ready';
  button.disabled = false;
  status(`Ready: press Train (the task is ${DEMO_TASK.samples} samples on a ${DEMO_TASK.dims.join(' → ')} MLP).`);
}

function fail(err: unknown): void {
  demo.state = 'error';
  demo.error = String((err as Error)?.message ?? err);
  status(`Failed: ${demo.error}`);
  $('status').classList.add('error');
  $<HTMLButtonElement>('train').disabled = true;
}

start().catch(fail);
