/**
 * Figure builders: pure functions from numbers to Plotly `{ data, layout }` objects.
 * They allocate no tensors and touch no display, so they are tested as plain data.
 */
import { invalid } from '../util/validate.js';

/** A Plotly figure as JSON: what `application/vnd.plotly.v1+json` carries. */
export interface PlotlyFigure {
  data: Array<Record<string, unknown>>;
  layout: Record<string, unknown>;
  config?: Record<string, unknown>;
}

/** One named series of y values over x. */
export interface Series {
  name: string;
  x?: number[];
  y: number[];
}

/** Throw unless `value` is an array (of `length` entries when given). */
function checkArray(where: string, name: string, value: unknown, length?: number): unknown[] {
  if (!Array.isArray(value) || (length !== undefined && value.length !== length)) {
    invalid(where, name, value, length === undefined ? 'an array' : `an array of ${length} entries`);
  }
  return value;
}

/** Throw unless `value` is an array of numbers (NaN allowed: Plotly leaves a gap), `length` long when given. */
function checkNumbers(where: string, name: string, value: unknown, length?: number): void {
  const list = checkArray(where, name, value, length);
  const bad = list.findIndex((v) => typeof v !== 'number');
  if (bad >= 0) invalid(where, `${name}[${bad}]`, list[bad], 'a number');
}

function checkText(where: string, name: string, value: unknown): void {
  if (typeof value !== 'string') invalid(where, name, value, 'a string');
}

/** Each series `{ name, <ys> }`, its values numbers, as long as its x values (`xs`) when given. */
function checkSeries(where: string, series: unknown, ys: string, xs?: string): void {
  checkArray(where, 'series', series).forEach((s, i) => {
    if (s === null || typeof s !== 'object') invalid(where, `series[${i}]`, s, `an object { name, ${ys} }`);
    const o = s as Record<string, unknown>;
    checkText(where, `series[${i}].name`, o.name);
    // A shorter x than y would shift every point of the curve silently.
    const x = xs === undefined ? undefined : o[xs];
    if (x !== undefined) checkNumbers(where, `series[${i}].${xs}`, x);
    checkNumbers(where, `series[${i}].${ys}`, o[ys], Array.isArray(x) ? x.length : undefined);
  });
}

const BASE_LAYOUT = {
  template: 'plotly_white',
  font: { family: 'system-ui, sans-serif', size: 13 },
  margin: { l: 70, r: 30, t: 60, b: 60 },
  legend: { orientation: 'h', y: -0.2 },
};

/** Trainable parameters per rank (log scale) against the full fine-tuning baseline, and the reduction. */
export function parameterEfficiencyFigure(
  rows: ReadonlyArray<{ rank: number; trainable: number; reductionPercent: number }>,
  baseline: number,
): PlotlyFigure {
  const where = 'parameterEfficiencyFigure';
  checkArray(where, 'rows', rows).forEach((r, i) => {
    const o = r as Record<string, unknown> | null;
    if (o === null || typeof o !== 'object' || typeof o.rank !== 'number' || typeof o.trainable !== 'number' || typeof o.reductionPercent !== 'number') {
      invalid(where, `rows[${i}]`, r, 'a row { rank, trainable, reductionPercent } (from parameterEfficiencyTable)');
    }
  });
  if (typeof baseline !== 'number' || !Number.isFinite(baseline)) invalid(where, 'baseline', baseline, 'a finite number of parameters');
  const ranks = rows.map((r) => String(r.rank));
  return {
    data: [
      {
        type: 'bar',
        name: 'LoRA trainable parameters',
        x: ranks,
        y: rows.map((r) => r.trainable),
        text: rows.map((r) => `${r.reductionPercent.toFixed(2)} % fewer`),
        textposition: 'outside',
      },
      {
        type: 'scatter',
        mode: 'lines',
        name: `full fine-tuning (${baseline.toLocaleString('en-US')})`,
        x: ranks,
        y: rows.map(() => baseline),
        line: { dash: 'dash', color: '#d62728' },
      },
    ],
    layout: {
      ...BASE_LAYOUT,
      title: { text: 'Trainable parameters: LoRA rank vs full fine-tuning' },
      xaxis: { title: { text: 'LoRA rank r' }, type: 'category' },
      yaxis: { title: { text: 'trainable parameters (log scale)' }, type: 'log' },
    },
  };
}

/** Loss curves on a log axis. */
export function lossCurvesFigure(series: readonly Series[], title: string, logY = true): PlotlyFigure {
  checkSeries('lossCurvesFigure', series, 'y', 'x');
  checkText('lossCurvesFigure', 'title', title);
  return {
    data: series.map((s) => ({
      type: 'scatter',
      mode: 'lines',
      name: s.name,
      x: s.x ?? s.y.map((_, i) => i + 1),
      y: s.y,
    })),
    layout: {
      ...BASE_LAYOUT,
      title: { text: title },
      xaxis: { title: { text: 'step' } },
      yaxis: { title: { text: logY ? 'MSE (log scale)' : 'MSE' }, type: logY ? 'log' : 'linear' },
    },
  };
}

/** Final loss per LoRA rank (log–log), with the task's true update rank marked. */
export function rankSweepFigure(
  series: ReadonlyArray<{ name: string; ranks: number[]; losses: number[] }>,
  trueRank: number | null,
  title: string,
): PlotlyFigure {
  checkSeries('rankSweepFigure', series, 'losses', 'ranks');
  if (trueRank !== null && (typeof trueRank !== 'number' || !(trueRank > 0))) invalid('rankSweepFigure', 'trueRank', trueRank, 'a positive number or null');
  checkText('rankSweepFigure', 'title', title);
  return {
    data: series.map((s) => ({ type: 'scatter', mode: 'lines+markers', name: s.name, x: s.ranks, y: s.losses })),
    layout: {
      ...BASE_LAYOUT,
      title: { text: title },
      xaxis: { title: { text: 'LoRA rank r (log scale)' }, type: 'log', tickvals: series[0]?.ranks ?? [] },
      yaxis: { title: { text: 'held-out MSE (log scale)' }, type: 'log' },
      shapes:
        trueRank === null
          ? []
          : [{ type: 'line', xref: 'x', yref: 'paper', x0: trueRank, x1: trueRank, y0: 0, y1: 1, line: { dash: 'dot', color: '#2ca02c' } }],
      annotations:
        trueRank === null
          ? []
          : [{ x: Math.log10(trueRank), xref: 'x', yref: 'paper', y: 1, text: `true update rank k = ${trueRank}`, showarrow: false, yanchor: 'bottom' }],
    },
  };
}

/** A heatmap of a matrix, rows × columns, with each cell's value written in it. */
export function heatmapFigure(
  values: readonly (readonly number[])[],
  rowNames: readonly string[],
  columnNames: readonly string[],
  title: string,
  colorbarTitle: string,
): PlotlyFigure {
  const where = 'heatmapFigure';
  checkArray(where, 'rowNames', rowNames).forEach((n, i) => checkText(where, `rowNames[${i}]`, n));
  checkArray(where, 'columnNames', columnNames).forEach((n, i) => checkText(where, `columnNames[${i}]`, n));
  checkArray(where, 'values', values, rowNames.length).forEach((r, i) => checkNumbers(where, `values[${i}]`, r, columnNames.length));
  checkText(where, 'title', title);
  checkText(where, 'colorbarTitle', colorbarTitle);
  return {
    data: [
      {
        type: 'heatmap',
        z: values.map((r) => [...r]),
        x: [...columnNames],
        y: [...rowNames],
        colorscale: 'Viridis',
        reversescale: true,
        colorbar: { title: { text: colorbarTitle } },
        text: values.map((r) => r.map((v) => v.toPrecision(3))),
        texttemplate: '%{text}',
      },
    ],
    layout: {
      ...BASE_LAYOUT,
      title: { text: title },
      xaxis: { title: { text: 'evaluated on' }, automargin: true },
      yaxis: { title: { text: 'adapter' }, autorange: 'reversed', automargin: true },
    },
  };
}

/** Grouped bars: one group per category, one bar per series. */
export function barFigure(
  categories: readonly string[],
  series: ReadonlyArray<{ name: string; values: number[] }>,
  title: string,
  yTitle: string,
  logY = false,
): PlotlyFigure {
  checkArray('barFigure', 'categories', categories).forEach((c, i) => checkText('barFigure', `categories[${i}]`, c));
  checkSeries('barFigure', series, 'values');
  series.forEach((s, i) => checkNumbers('barFigure', `series[${i}].values`, s.values, categories.length));
  checkText('barFigure', 'title', title);
  return {
    data: series.map((s) => ({ type: 'bar', name: s.name, x: [...categories], y: s.values })),
    layout: {
      ...BASE_LAYOUT,
      title: { text: title },
      barmode: 'group',
      yaxis: { title: { text: yTitle }, type: logY ? 'log' : 'linear' },
    },
  };
}

/** One line describing a figure, for `text/plain`. */
export function describeFigure(figure: PlotlyFigure): string {
  checkFigure('describeFigure', figure);
  const layoutTitle = figure.layout.title as { text?: string } | undefined;
  const traces = figure.data.map((t) => {
    const y = (t.y ?? t.z) as unknown[] | undefined;
    return `${String(t.name ?? t.type)} (${y?.length ?? 0} points)`;
  });
  return `Plotly chart: ${layoutTitle?.text ?? 'untitled'} — ${traces.join('; ')}`;
}

/** One trained model of a comparison: its trainable parameters and its score. */
export interface MethodPoint {
  name: string;
  parameters: number;
  accuracy: number;
  /** Points of one series are joined by a line (e.g. LoRA at several ranks); default: the name. */
  series?: string;
}

/**
 * Held-out accuracy (as a percentage axis) against trainable parameters (log axis): one
 * trace per series, each point labelled with its name.
 */
export function accuracyVsParametersFigure(points: readonly MethodPoint[], title: string): PlotlyFigure {
  checkArray('accuracyVsParametersFigure', 'points', points).forEach((p, i) => {
    const o = p as Record<string, unknown> | null;
    if (o === null || typeof o !== 'object' || typeof o.name !== 'string' || typeof o.parameters !== 'number' || typeof o.accuracy !== 'number' || (o.series !== undefined && typeof o.series !== 'string')) {
      invalid('accuracyVsParametersFigure', `points[${i}]`, p, 'a point { name, parameters, accuracy, series? }');
    }
  });
  checkText('accuracyVsParametersFigure', 'title', title);
  const series = [...new Set(points.map((p) => p.series ?? p.name))];
  return {
    data: series.map((s) => {
      const members = points.filter((p) => (p.series ?? p.name) === s);
      return {
        type: 'scatter',
        mode: members.length > 1 ? 'lines+markers+text' : 'markers+text',
        name: s,
        x: members.map((p) => p.parameters),
        y: members.map((p) => p.accuracy),
        text: members.map((p) => p.name),
        textposition: 'top center',
        marker: { size: 10 },
        hovertemplate: '%{text}: %{x:,} trainable, %{y:.1%}<extra></extra>',
      };
    }),
    layout: {
      ...BASE_LAYOUT,
      title: { text: title },
      xaxis: { title: { text: 'trainable parameters (log scale)' }, type: 'log' },
      yaxis: { title: { text: 'held-out accuracy' }, tickformat: '.0%' },
    },
  };
}

/** Throw unless `figure` is a Plotly figure `{ data: [...], layout: {...} }`. */
export function checkFigure(where: string, figure: unknown): void {
  const f = figure as { data?: unknown; layout?: unknown } | null;
  if (f === null || typeof f !== 'object' || !Array.isArray(f.data) || f.layout === null || typeof f.layout !== 'object') {
    invalid(where, 'figure', figure, 'a Plotly figure { data: [...], layout: {...} } (from one of the *Figure functions)');
  }
}
