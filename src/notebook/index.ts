/**
 * lora-tfjs/notebook: what the notebooks show (Node, inside a tslab kernel or out of it).
 *
 * Plotly figures as plain data, charts as display bundles (plotly.js inlined once per page,
 * from the optional `plotly.js-dist-min` package), rich tables, invisible records for the
 * regression runner, and the digits dataset of notebook 07. Kept apart from `lora-tfjs` so
 * that library users never load any of it.
 */
export {
  type MethodPoint,
  type PlotlyFigure,
  type Series,
  accuracyVsParametersFigure,
  barFigure,
  describeFigure,
  heatmapFigure,
  lossCurvesFigure,
  parameterEfficiencyFigure,
  rankSweepFigure,
} from './plot.js';
export { type DisplayBundle, displayBundle } from './display.js';
export { CHART_NOT_RUN, CHART_NO_PLOTLY, PLOTLY_DELIVERY_VAR, PLOTLY_PACKAGES, type PlotlyBundleOptions, type PlotlyDelivery, plotlyBundle, plotlyDelivery, plotlyPath, plotlySource, showPlot } from './chart.js';
export { type RecordedValue, type Tolerance, record, recordBundle } from './record.js';
// Rich tables: HTML for notebook frontends, aligned text for plain-text views and consoles.
export { type CellAlign, type CellFormat, type TableColumn, type TableOptions, type TableRow, showTable, tableBundle } from './table.js';
export {
  DIGITS_PIXELS,
  DIGITS_SIDE,
  DIGITS_TRANSFORMS,
  type Digits,
  type DigitsTransform,
  accuracy,
  asciiDigit,
  classCounts,
  defaultDigitsPath,
  digitsSubset,
  digitsTensors,
  loadDigits,
  parseDigitsCsv,
  splitIndices,
  transformImages,
} from './digits.js';
