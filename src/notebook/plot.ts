/**
 * Figure builders: pure functions from numbers to Plotly `{ data, layout }` objects.
 * They allocate no tensors and touch no display, so they are tested as plain data.
 */

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
