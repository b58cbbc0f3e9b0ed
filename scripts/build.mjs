#!/usr/bin/env node
// Builds the library to dist/ (CommonJS + .d.ts, which tslab's TypeScript 5.0.4 reads) and
// links the project into its own node_modules so notebooks import it by package name.
// Runs on `npm install` (postinstall) and `npm run build`.
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

if (!existsSync(join(root, 'src')) || !existsSync(tsc)) {
  // Installed as a dependency from a registry: dist/ ships prebuilt.
  process.exit(0);
}

rmSync(join(root, 'dist'), { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
// The package is "type": "module" for its scripts and tests; the built library is CommonJS.
writeFileSync(join(root, 'dist', 'package.json'), '{ "type": "commonjs" }\n');

// plotly.js-dist ships only an 11 MB unminified bundle; notebooks inline plotly.js once
// (offline, no CDN), so ship a minified copy (~4.9 MB) beside the library.
const { transformSync } = await import('esbuild');
const plotly = readFileSync(join(root, 'node_modules', 'plotly.js-dist', 'plotly.js'), 'utf8');
writeFileSync(join(root, 'dist', 'notebook', 'plotly.min.js'), transformSync(plotly, { minify: true, loader: 'js', legalComments: 'inline' }).code);

const link = join(root, 'node_modules', 'lora-tfjs');
let current = null;
try {
  if (lstatSync(link).isSymbolicLink()) current = readlinkSync(link);
  else rmSync(link, { recursive: true, force: true });
} catch {
  /* no link yet */
}
if (current !== '..') {
  if (current !== null) rmSync(link);
  mkdirSync(join(root, 'node_modules'), { recursive: true });
  symlinkSync('..', link, 'dir');
}
console.log('lora-tfjs: built dist/ and linked node_modules/lora-tfjs');
