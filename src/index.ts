/**
 * lora-tfjs: LoRA (low-rank adaptation) for TensorFlow.js.
 *
 * Layout: `lora-linear` (the layer's state) + `lora-forward` (its arithmetic and fused
 * gradients), `lora-adapter` (one adapter's config and factors), `mlp` / `lora-mlp`
 * (the reference's two models), `train`, `data`, `params`, `backend`.
 */
export * as tf from '@tensorflow/tfjs-core';
export { BACKENDS, type BackendName, backendSummary, initBackend } from './backend.js';
export {
  type AdapterFactors,
  type LoRAAdapter,
  type LoRAConfig,
  type LoRAInit,
  type ResolvedLoRAConfig,
  LORA_DEFAULTS,
  adapterParameterCount,
  loraScale,
} from './lora-adapter.js';
export { type FrozenLinear, type GradientPath, type LowRankTerm, linearForward, resolveGradientPath } from './lora-forward.js';
export { type ForwardOptions, type LoRALinearOptions, LoRALinear, deltaWeight } from './lora-linear.js';
export { Dense } from './dense.js';
export { MLP, type MLPOptions } from './mlp.js';
export { LoRAMLP, type LoRAMLPOptions } from './lora-mlp.js';
export type { Model } from './model.js';
export { type TrainOptions, type TrainResult, evaluate, mse, train } from './train.js';
export {
  type LowRankShiftOptions,
  type LowRankShiftTask,
  type RandomRegressionOptions,
  type Regression,
  type ShiftedTask,
  lowRankShiftTask,
  randomRegression,
} from './data.js';
export {
  type EfficiencyRow,
  type HasParameterCounts,
  type ParameterCounts,
  compressionRatio,
  loraParameterCount,
  mlpParameterCount,
  parameterCounts,
  parameterEfficiencyTable,
  reductionPercent,
  sumCounts,
  weightCount,
} from './params.js';
export { Rng } from './random.js';
export {
  type PlotlyFigure,
  type Series,
  barFigure,
  describeFigure,
  heatmapFigure,
  lossCurvesFigure,
  parameterEfficiencyFigure,
  rankSweepFigure,
} from './plot.js';
export { type DisplayBundle, type PlotlyBundleOptions, displayBundle, plotlyBundle, plotlySource, showPlot } from './display.js';
export { type RecordedValue, type Tolerance, record } from './record.js';
export { type Timing, summarize, timeIt } from './timing.js';
export { maxAbsDiff, norm, sample } from './metrics.js';
export { type DecodedTensor, type EncodableTensor, type SafetensorsContent, MAX_HEADER_BYTES, SafetensorsError, decodeSafetensors, encodeSafetensors } from './safetensors.js';
export { type LoadAdapterOptions, type PeftAdapter, type PeftLoraConfig, AdapterLoadError, deserializeAdapter, moduleName, serializeAdapter } from './peft.js';
export { ADAPTER_CONFIG, ADAPTER_WEIGHTS, loadAdapter, saveAdapter, writeDirectoryAtomic } from './adapter-files.js';
export { mlpFromTorchSafetensors, mlpToTorchSafetensors } from './torch-weights.js';
export { type CombineOptions, type CombineResult, type WeightedAdapter, combineAdapters } from './combine.js';
export { type RowGroups, groupRows } from './mixed-batch.js';
export { disableWasmMatMulFastPath, enableWasmMatMulFastPath, wasmMatMulFastPathEnabled } from './wasm-matmul.js';
