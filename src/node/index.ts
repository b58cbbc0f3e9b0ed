/**
 * lora-tfjs/node: adapters and models as files on disk (Node only).
 *
 * PEFT adapter folders (`adapter_config.json` + `adapter_model.safetensors`) written
 * atomically and read with size limits, and a `file://` IO handler so `model.save` /
 * `tf.loadLayersModel` work in Node without tfjs-node. Importing this entry registers the
 * handler. The byte-level codecs these wrap (`serializeAdapter`, `deserializeAdapter`, …) are
 * in `lora-tfjs` and work anywhere.
 */
export {
  MAX_ADAPTER_BYTES,
  MAX_CONFIG_BYTES,
  type SaveAdaptersOptions,
  loadAdapter,
  loadAdapters,
  loadLoRAModel,
  saveAdapter,
  saveAdapters,
} from './adapter-files.js';
export { FileError } from './safe-files.js';
export { fileSystem, registerFileHandler } from './file-handler.js';
