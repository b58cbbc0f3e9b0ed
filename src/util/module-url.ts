import { fileURLToPath } from 'node:url';

/**
 * The file of this module, so that lora-tfjs can find the files of packages installed beside
 * it (plotly.js, the wasm backend's threaded build), its own pthread worker script and the
 * checkout's data, whatever the working folder. CommonJS has
 * `__filename`; in the ES module build, scripts/build.mjs replaces `undefined` below with
 * `import.meta.url` (which the CommonJS build cannot contain). Run from src/ as an ES module
 * by a tool that provides neither (tsx), the file comes from V8's stack trace; null when even
 * that fails (then callers fall back to the working folder).
 */
const MODULE_URL: string | undefined = undefined;

/** This module's file path, or null. */
export function moduleFile(): string | null {
  if (typeof __filename === 'string') return __filename;
  if (MODULE_URL !== undefined) return fileURLToPath(MODULE_URL);
  return fileFromStack(new Error().stack);
}

/** The file of the first frame of a V8 stack (`at f (file:///a/b.ts:1:2)` or `at /a/b.js:1:2`), or null. */
export function fileFromStack(stack: string | undefined): string | null {
  const frame = stack?.split('\n').find((line) => /^\s+at /.test(line));
  const match = frame === undefined ? null : (/\((.+?):\d+:\d+\)$/.exec(frame) ?? /^\s+at (.+?):\d+:\d+$/.exec(frame));
  if (match === null) return null;
  const location = match[1];
  if (location.startsWith('file://')) return fileURLToPath(location);
  return location.startsWith('/') || /^[A-Za-z]:[\\/]/.test(location) ? location : null;
}
