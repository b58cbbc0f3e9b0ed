import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  initBackend,
  maxAbsDiff,
  norm,
  parameterEfficiencyTable,
  sample,
  summarize,
  compareTimings,
  ratioSpread,
} from '../src/index.js';
import {
  accuracyVsParametersFigure,
  barFigure,
  describeFigure,
  heatmapFigure,
  lossCurvesFigure,
  parameterEfficiencyFigure,
  plotlyBundle,
  rankSweepFigure,
  record,
  showPlot,
} from '../src/notebook/index.js';

describe('figure builders (pure data)', () => {
  it('parameter efficiency: bars per rank on a log axis, the baseline as a line', () => {
    const fig = parameterEfficiencyFigure(parameterEfficiencyTable([512, 2048, 2048, 128], [2, 4]), 5_509_248);
    expect(fig.data[0]).toMatchObject({ type: 'bar', x: ['2', '4'], y: [17_664, 35_328], text: ['99.68 % fewer', '99.36 % fewer'] });
    expect(fig.data[1]).toMatchObject({ type: 'scatter', y: [5_509_248, 5_509_248] });
    expect(fig.layout.yaxis).toMatchObject({ type: 'log' });
    expect(JSON.parse(JSON.stringify(fig))).toEqual(fig); // plain JSON
  });

  it('rank sweep marks the true rank; loss curves default x to 1..n', () => {
    const sweep = rankSweepFigure([{ name: 's', ranks: [1, 2, 4], losses: [1, 0.5, 0.01] }], 4, 't');
    expect(sweep.layout.shapes).toEqual([expect.objectContaining({ x0: 4, x1: 4 })]);
    expect(rankSweepFigure([{ name: 's', ranks: [1], losses: [1] }], null, 't').layout.shapes).toEqual([]);
    expect(lossCurvesFigure([{ name: 'a', y: [3, 2] }], 't').data[0]).toMatchObject({ x: [1, 2], y: [3, 2] });
    expect(heatmapFigure([[1, 2]], ['r'], ['a', 'b'], 't', 'MSE').data[0]).toMatchObject({ z: [[1, 2]], text: [['1.00', '2.00']] });
    expect(barFigure(['a'], [{ name: 'n', values: [1] }], 't', 'y').layout).toMatchObject({ barmode: 'group' });
    expect(describeFigure(lossCurvesFigure([{ name: 'a', y: [3, 2] }], 'Title'))).toBe('Plotly chart: Title — a (2 points)');
  });
});

describe('accuracy against trainable parameters (pure data)', () => {
  it('one trace per series, points labelled, log x and percent y', () => {
    const fig = accuracyVsParametersFigure(
      [
        { name: 'full', parameters: 9802, accuracy: 0.92 },
        { name: 'head only', parameters: 330, accuracy: 0.79 },
        { name: 'r=1', parameters: 723, accuracy: 0.88, series: 'LoRA' },
        { name: 'r=2', parameters: 1116, accuracy: 0.9, series: 'LoRA' },
      ],
      'Acc',
    );
    expect(fig.data.map((t) => t.name)).toEqual(['full', 'head only', 'LoRA']);
    expect(fig.data[2]).toMatchObject({ type: 'scatter', mode: 'lines+markers+text', x: [723, 1116], y: [0.88, 0.9], text: ['r=1', 'r=2'] });
    expect(fig.data[0]).toMatchObject({ mode: 'markers+text', x: [9802], y: [0.92], text: ['full'] });
    expect(fig.layout.xaxis).toMatchObject({ type: 'log' });
    expect(fig.layout.yaxis).toMatchObject({ tickformat: '.0%' });
    expect(JSON.parse(JSON.stringify(fig))).toEqual(fig);
    expect(describeFigure(fig)).toBe('Plotly chart: Acc — full (1 points); head only (1 points); LoRA (2 points)');
    expect(accuracyVsParametersFigure([], 'empty').data).toEqual([]);
  });
});

describe('display bundle', () => {
  afterEach(() => vi.restoreAllMocks());

  it('carries Plotly JSON as an object, offline HTML and text in one bundle', () => {
    const fig = lossCurvesFigure([{ name: 'a', y: [1, 2] }], 'T</script>');
    const withPlotly = plotlyBundle(fig, { id: 'p1', plotly: 'window.Plotly={}; "</script>"' });
    expect(Object.keys(withPlotly.data).sort()).toEqual(['application/vnd.plotly.v1+json', 'text/html', 'text/plain']);
    expect(withPlotly.data['application/vnd.plotly.v1+json']).toMatchObject({ data: fig.data });
    const html = withPlotly.data['text/html'] as string;
    expect(html).toContain('data-lora-tfjs-plotly="inline"');
    expect(html).toContain('<\\/script>"'); // the inlined source cannot close its own tag
    expect(html).not.toContain('T</script>'); // nor can the figure's JSON
    expect(html).toContain('<div id="p1" class="lora-tfjs-plot"');
    const without = plotlyBundle(fig, { id: 'p2', plotly: null });
    expect(without.data['text/html'] as string).not.toContain('data-lora-tfjs-plotly');
  });

  it('outside a kernel, showPlot and record print their text part', () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    showPlot(lossCurvesFigure([{ name: 'a', y: [1] }], 'T'));
    record('some_value', 0.123456789, { rtol: 1e-3 });
    record('count', 5509248);
    record('both', 2 / 3, { rtol: 0.1, atol: 1e-6 });
    record('sum', 0.1 + 0.2, { atol: 1e-9 });
    // Exactly the stored number (never rounded), with the tolerance it is checked with.
    expect(log.mock.calls.map((c) => c[0])).toEqual([
      'Plotly chart: T — a (1 points)',
      'recorded some_value = 0.123456789 (rtol 0.001)',
      'recorded count = 5509248 (exact)',
      'recorded both = 0.6666666666666666 (rtol 0.1, atol 0.000001)',
      'recorded sum = 0.30000000000000004 (atol 1e-9)', // 17 digits: what the golden stores
    ]);
  });

  it('record rejects bad names, values and tolerances', () => {
    expect(() => record('bad name', 1)).toThrow('record: name = "bad name" is invalid');
    expect(() => record('x', NaN)).toThrow('record: value = NaN is invalid; expected a finite number');
    expect(() => record('x', 1, { rtol: -1 })).toThrow('record: rtol = -1 is invalid');
  });
});

describe('metrics and timing helpers', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('compute plain numbers and free their temporaries', () => {
    const a = tf.tensor2d([[1, 2], [3, 4]]);
    const b = tf.tensor2d([[1, 2], [3, 6]]);
    const before = tf.memory().numTensors;
    expect(maxAbsDiff(a, b)).toBe(2);
    expect(norm(a)).toBeCloseTo(Math.sqrt(30), 5);
    expect(sample(a, 3)).toEqual([1, 2, 3]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([a, b]);
  });

  it('summarize takes the median', () => {
    expect(summarize([5, 1, 3])).toEqual({ medianMs: 3, minMs: 1, meanMs: 3, runs: 3 });
    expect(summarize([4, 1, 3, 2]).medianMs).toBe(2.5);
  });

  it('compareTimings interleaves the variants (reversed every other round) and takes ratios round by round', async () => {
    // A fake clock: "base" costs 2 units, "slow" 3, and every round the machine gets slower.
    let clock = 0;
    let round = 0;
    const calls: string[] = [];
    const now = vi.spyOn(performance, 'now').mockImplementation(() => clock);
    const cost = (name: string, units: number) => () => {
      calls.push(name);
      clock += units * (1 + round / 4);
    };
    const base = cost('base', 2);
    const slow = cost('slow', 3);
    const r = await compareTimings({ base, slow: () => { slow(); round += 0.5; } }, { rounds: 4, warmup: 1 });
    now.mockRestore();
    expect(calls).toEqual(['base', 'slow', 'base', 'slow', 'slow', 'base', 'base', 'slow', 'slow', 'base']);
    expect(r.rounds).toBe(4);
    expect(r.timings.base.runs).toBe(4);
    expect(r.ratios.base).toEqual({ median: 1, p10: 1, p90: 1 });
    // The drift changes the times, so the medians' ratio is off; the per-round ratios are not.
    expect(r.timings.slow.medianMs / r.timings.base.medianMs).not.toBeCloseTo(1.5, 3);
    expect(r.ratios.slow.median).toBeGreaterThan(1.3);
    expect(r.ratios.slow.p90).toBeLessThan(1.8);
    await expect(compareTimings({})).rejects.toThrow('compareTimings: variants = {} is invalid; expected at least one named function');
    await expect(compareTimings({ a: 1 as unknown as () => void })).rejects.toThrow('compareTimings: variants.a = 1 is invalid; expected a function');
    await expect(compareTimings({ a: () => 0 }, { rounds: 0 })).rejects.toThrow('compareTimings: rounds = 0 is invalid; expected an integer in [1, 100000]');
    await expect(compareTimings({ a: () => 0 }, { rounds: 1e9 })).rejects.toThrow('compareTimings: rounds = 1000000000 is invalid');
    await expect(compareTimings({ a: () => 0 }, { rouds: 2 } as never)).rejects.toThrow('compareTimings: options = { rouds: 2 } is invalid; expected only rounds and warmup (unknown: rouds)');
    await expect(compareTimings({ a: () => 0 }, null as never)).rejects.toThrow('compareTimings: options = null is invalid');
    // Integer-like names would be reordered ahead of the baseline.
    await expect(compareTimings({ base: () => 0, 2: () => 0 })).rejects.toThrow('compareTimings: variant name = "2" is invalid');
  });

  it('compareTimings times async variants to the end of their work, names a failing variant, and refuses a baseline below the clock', async () => {
    let clock = 0;
    const now = vi.spyOn(performance, 'now').mockImplementation(() => clock);
    try {
      // The work happens after an await: timing only the synchronous part would see 0.
      const later = (units: number) => async () => {
        await new Promise((resolve) => setTimeout(resolve, 0));
        clock += units;
      };
      const r = await compareTimings({ base: later(2), slow: later(6) }, { rounds: 3, warmup: 0 });
      expect(r.timings.base.medianMs).toBe(2);
      expect(r.ratios.slow).toEqual({ median: 3, p10: 3, p90: 3 });
      await expect(compareTimings({ base: later(1), bad: () => Promise.reject(new Error('boom')) }, { rounds: 2, warmup: 0 })).rejects.toThrow('compareTimings: variant "bad" failed in round 1: boom');
      await expect(compareTimings({ base: () => undefined, other: later(1) }, { rounds: 2, warmup: 0 })).rejects.toThrow('compareTimings: variant "base" took 0 ms in round 1, below the clock\'s resolution');
    } finally {
      now.mockRestore();
    }
  });

  it('ratioSpread interpolates its percentiles and refuses empty or non-finite input', () => {
    expect(ratioSpread([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])).toEqual({ median: 6, p10: 2, p90: 10 });
    expect(ratioSpread([2])).toEqual({ median: 2, p10: 2, p90: 2 });
    expect(ratioSpread([1, 2])).toEqual({ median: 1.5, p10: 1.1, p90: 1.9 });
    expect(() => ratioSpread([])).toThrow('ratioSpread: values = [] is invalid');
    expect(() => ratioSpread([1, NaN])).toThrow('ratioSpread: values = [1, NaN] is invalid');
    // eslint-disable-next-line no-sparse-arrays
    expect(() => ratioSpread([1, , 3] as number[])).toThrow('ratioSpread: values = [1, , 3] is invalid');
    expect(ratioSpread([-1.7e308, 1.7e308]).median).toBe(0); // no overflow between the two
    expect(ratioSpread([1.1, 1.1, 1.1])).toEqual({ median: 1.1, p10: 1.1, p90: 1.1 });
  });
});
