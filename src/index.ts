/**
 * lora-tfjs: LoRA (low-rank adaptation) for TensorFlow.js, in Node and in the browser.
 *
 * This entry is the core: no Node built-ins, nothing for notebooks. Files on disk are in
 * `lora-tfjs/node`; display helpers, Plotly figures, tables and records in `lora-tfjs/notebook`.
 *
 * Folders: `core/` (adapters, the layer and its forward math, the models, training),
 * `layers/` (LoRA for tfjs Layers models: Dense, Embedding, Conv2D; addLoRA, merge),
 * `runtime/` (backends), `formats/` (safetensors, PEFT, PyTorch weights: bytes only),
 * `node/` (files on disk), `notebook/` (display, figures, tables, records), `util/`.
 */
export * as tf from '@tensorflow/tfjs-core';
export { BACKENDS, BACKEND_ORDER, type BackendName, type InitBackendOptions, WASM_BINARIES, type WasmBinary, backendSummary, initBackend } from './runtime/backend.js';
export {
  type AdapterFactors,
  type FullAdapter,
  type FullWeights,
  type LoRAAdapter,
  type LoRAConfig,
  type LoRAInit,
  type ResolvedLoRAConfig,
  LORA_DEFAULTS,
  adapterParameterCount,
  loraScale,
} from './core/lora-adapter.js';
export type { FrozenLinear, GradientPath, LowRankTerm } from './core/lora-forward.js';
export { type AdapterKind, type ForwardOptions, type LoRALinearOptions, LoRALinear, deltaWeight } from './core/lora-linear.js';
// LoRA for any tfjs Layers model (the layer classes register themselves for model.json).
export { type ActiveFactors, type CallKwargs, type LayerAdapterSpec, type LoRALayerArgs, type SerializedLayer, LoRALayer } from './layers/lora-layer.js';
export { LoRADense } from './layers/lora-dense.js';
export { LoRAEmbedding } from './layers/lora-embedding.js';
export { LoRAConv2D } from './layers/lora-conv2d.js';
export {
  type LayersLoRAConfig,
  activeAdapter,
  addAdapter,
  addLoRA,
  adapterNames,
  deleteAdapter,
  layersParameterCounts,
  loraLayers,
  setActiveAdapter,
} from './layers/add-lora.js';
export { type MergeOptions, mergeAndUnload, unload } from './layers/merge.js';
export { type ModelLayer, modelLayers } from './layers/model-graph.js';
export { MLP, type MLPOptions } from './core/mlp.js';
export { type AdapterInitial, type AdapterOptions, type FromBaseOptions, type LayerPlan, LoRAMLP, type LoRAMLPOptions } from './core/lora-mlp.js';
export { ALL_LINEAR, type ModuleRole, type ModuleSelector, type Pattern, type TargetSpec } from './core/targets.js';
export { type WarningHandler, setWarningHandler } from './util/warnings.js';
export { VERSION } from './version.js';
export type { Model } from './core/model.js';
export { NonFiniteLossError, type TrainOptions, type TrainResult, evaluate, mse, train } from './core/train.js';
export {
  type LowRankShiftOptions,
  type LowRankShiftTask,
  type RandomRegressionOptions,
  type Regression,
  type ShiftedTask,
  lowRankShiftTask,
  randomRegression,
} from './core/data.js';
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
} from './core/params.js';
export { Rng } from './util/random.js';
export { type RatioSpread, type Timing, type TimingComparison, compareTimings, ratioSpread, summarize, timeIt } from './util/timing.js';
export { maxAbsDiff, norm, sample } from './util/metrics.js';
export {
  type DecodedTensor,
  type EncodableTensor,
  type EncodeDtype,
  type SafetensorsContent,
  MAX_HEADER_BYTES,
  SafetensorsError,
  decodeSafetensors,
  encodeSafetensors,
  floatToBfloat16,
  floatToHalf,
} from './formats/safetensors.js';
export {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  type LoadAdapterOptions,
  type PeftAdapter,
  type PeftLoraConfig,
  type SaveAdapterOptions,
  AdapterLoadError,
  PEFT_METADATA,
  adapterConfigText,
  canonicalJson,
  deserializeAdapter,
  serializeAdapter,
} from './formats/peft.js';
export { deserializeLayersAdapter, deserializeLoRAModel, serializeLayersAdapter } from './formats/peft-layers.js';
export { type TorchMLPReadOptions, type TorchMLPWriteOptions, mlpFromTorchSafetensors, mlpToTorchSafetensors } from './formats/torch-weights.js';
export { type CombineOptions, type CombineResult, type WeightedAdapter, combineAdapters } from './core/combine.js';
export { type RowGroups, groupRows } from './core/mixed-batch.js';
export { disableWasmMatMulFastPath, enableWasmMatMulFastPath, wasmMatMulFastPathEnabled } from './runtime/wasm-matmul.js';
export { registerWasmTrainingKernels, wasmTrainingKernelsRegistered } from './runtime/wasm-kernels.js';
export { type MemoryLimits, memoryLimits, setMemoryLimit } from './runtime/memory-budget.js';
