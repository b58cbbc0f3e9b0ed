// The tests call tensor methods (x.slice, x.reshape), which lora-tfjs registers at run time
// (src/runtime/backend.ts, as the union package @tensorflow/tfjs does); these are their types.
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js';
