'use strict';
// The entry script of each pthread of tfjs-backend-wasm's threaded SIMD build in Node (a
// worker_threads Worker started by Emscripten's glue; see wasm-threads-node.ts).
//
// tfjs 4.22 ships the pthread code only as a string (wasm-out/…-threaded-simd.worker.js exports
// `wasmWorkerContents`) and starts it from a blob: URL, which Node's Worker refuses
// (ERR_WORKER_PATH). Run that same string here, with the escaping tfjs applies before making its
// Blob (its "\n" inside a string literal would otherwise become a real line break). The code
// reads `require` and `__filename` (for `location.href`), so both are handed in.
const { wasmWorkerContents } = require('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js');
if (typeof wasmWorkerContents !== 'string') {
  throw new Error('lora-tfjs: @tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js no longer exports wasmWorkerContents (lora-tfjs needs tfjs-backend-wasm 4.22.0)');
}
new Function('require', '__filename', wasmWorkerContents.replace(/\n/g, '\\n'))(require, __filename);
