/**
 * The file of this module, so that lora-tfjs can find the files of packages installed beside
 * it (plotly.js, the wasm backend's threaded build), its own pthread worker script and the
 * checkout's data, whatever the working folder. CommonJS has
 * `__filename`; in the ES module build, scripts/build.mjs replaces `undefined` below with
 * `import.meta.url` (which the CommonJS build cannot contain). Null when run from src/ by a
 * tool that provides neither (then callers fall back to the working folder).
 */
const MODULE_URL: string | undefined = undefined;

/** This module's file path, or null. */
export function moduleFile(): string | null {
  if (typeof __filename === 'string') return __filename;
  if (MODULE_URL !== undefined) return decodeURIComponent(new URL(MODULE_URL).pathname);
  return null;
}
