#!/usr/bin/env node
// Builds the library into dist/ (development and `npm pack` only: the published package ships
// dist/ prebuilt, and installing it runs nothing):
//   dist/cjs/  CommonJS + .d.ts (what require() and tslab's TypeScript 5.0.4 read)
//   dist/esm/  ES modules + .d.ts (Node's import and bundlers; tree-shakable)
// and links the checkout into its own node_modules, so notebooks import it by package name.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, lstatSync, mkdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
if (!existsSync(join(root, 'src')) || !existsSync(tsc)) {
  console.error('lora-tfjs build: needs the checkout (src/) and its dev dependencies (npm ci)');
  process.exit(1);
}

// Build beside dist/ and swap it in at the end: a failed build leaves the previous dist/ whole.
const next = join(root, `dist.${process.pid}.tmp`);
rmSync(next, { recursive: true, force: true });
try {
  execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', join(next, 'cjs')], { stdio: 'inherit' });
  execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.esm.json'), '--outDir', join(next, 'esm')], { stdio: 'inherit' });
  await writeRegistrations(next);
  copyWorkerEntry(next);
  chainedOpTypes(next);
  esmModuleUrl(next);
  nodeImportWrappers(next);
  rmSync(join(root, 'dist'), { recursive: true, force: true });
  renameSync(next, join(root, 'dist'));
} finally {
  rmSync(next, { recursive: true, force: true });
}

/**
 * tfjs-core on its own registers no gradients (training fails with "gradient function not
 * found") and no chained ops (`tensor.square()`); the union package `@tensorflow/tfjs` does
 * both, at the price of converter, data and webgl. lora-tfjs imports `#tfjs-registrations`
 * instead, which each build's package.json maps ("imports"):
 *  - in bundlers, to tfjs-core's own ES module files: one copy of tfjs-core in the bundle;
 *  - in Node, to a CommonJS bundle of those files made here, because Node loads tfjs-core's
 *    CommonJS build and cannot load its extensionless ES modules. The bundle carries a copy of
 *    the ops the gradients call; they act on the one shared engine and registries, which
 *    tfjs-core keeps on the global object (how the union's own Node build works).
 */
async function writeRegistrations(out, rootDir = root) {
  const core = '@tensorflow/tfjs-core/dist';
  const sources = [`${core}/register_all_gradients.js`, `${core}/public/chained_ops/register_all_chained_ops.js`];
  const browser = sources.map((s) => `import '${s}';\n`).join('');
  const { build } = await import('esbuild');
  const node = await build({
    stdin: { contents: browser, resolveDir: rootDir, loader: 'js' },
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    write: false,
    legalComments: 'eof', // one copy of tfjs's Apache-2.0 header, not one per bundled file
    logLevel: 'warning',
  });
  const imports = {
    '#tfjs-registrations': { node: './runtime/tfjs-registrations.node.cjs', default: './runtime/tfjs-registrations.browser.mjs' },
  };
  // Bundlers read sideEffects from the nearest package.json, which is this one, not the root's.
  const root = JSON.parse(readFileSync(join(rootDir, 'package.json'), 'utf8'));
  const sideEffects = root.sideEffects.map((p) => p.replace(/^\.\/dist\/\*\//, './'));
  for (const [dir, type] of [['cjs', 'commonjs'], ['esm', 'module']]) {
    writeFileSync(join(out, dir, 'runtime', 'tfjs-registrations.node.cjs'), node.outputFiles[0].contents);
    writeFileSync(join(out, dir, 'runtime', 'tfjs-registrations.browser.mjs'), `// tfjs-core's gradient and chained-op registrations (see scripts/build.mjs).\n${browser}`);
    writeFileSync(join(out, dir, 'package.json'), JSON.stringify({ type, imports, sideEffects }, null, 2) + '\n');
  }
}

/**
 * The declarations of runtime/backend import the types of the chained ops it registers, as the
 * union package's do, so `tf.ones([2]).square()` type-checks for users. In the JavaScript that
 * import is `#tfjs-registrations` above (a deep import of tfjs-core's ES modules fails in Node).
 */
function chainedOpTypes(out) {
  for (const dir of ['cjs', 'esm']) {
    const file = join(out, dir, 'runtime', 'backend.d.ts');
    const text = readFileSync(file, 'utf8');
    if (!text.includes("import '#tfjs-registrations';")) throw new Error(`build: ${file} no longer imports #tfjs-registrations`);
    writeFileSync(file, text.replace("import '#tfjs-registrations';", "import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js';"));
  }
}

/**
 * Node's `import` of each entry (package.json exports: node → import) is a one-line ES module
 * over the CommonJS build, so that a process that both imports and requires lora-tfjs holds one
 * copy of it. Two copies would each register LoRADense & co. with the one tfjs-layers registry,
 * and the models one copy rebuilds would fail the other's instanceof checks. Bundlers (no
 * "node" condition) get the real ES modules, which tree-shake.
 */
function nodeImportWrappers(out) {
  for (const entry of ['index', 'node/index', 'notebook/index']) {
    const base = entry.split('/').pop();
    writeFileSync(join(out, 'cjs', `${entry}.mjs`), `// Node's import of lora-tfjs${entry === 'index' ? '' : '/' + entry.split('/')[0]}: the CommonJS build (see scripts/build.mjs).\nexport * from './${base}.js';\n`);
  }
}

/**
 * The pthread worker entry of the threaded wasm build (src/runtime/wasm-pthread-worker.cjs) is
 * plain CommonJS that Node's worker_threads runs as a file, so tsc does not touch it: copy it
 * beside the compiled runtime/ of each build.
 */
function copyWorkerEntry(out) {
  const name = 'wasm-pthread-worker.cjs';
  for (const dir of ['cjs', 'esm']) copyFileSync(join(root, 'src', 'runtime', name), join(out, dir, 'runtime', name));
}

/** The ES module build's util/module-url.js learns its own URL (see that file). */
function esmModuleUrl(out) {
  const file = join(out, 'esm', 'util', 'module-url.js');
  const text = readFileSync(file, 'utf8');
  const marker = 'const MODULE_URL = undefined;';
  if (!text.includes(marker)) throw new Error(`build: ${file} no longer holds "${marker}"`);
  writeFileSync(file, text.replace(marker, 'const MODULE_URL = import.meta.url;'));
}

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
console.log('lora-tfjs: built dist/cjs and dist/esm, linked node_modules/lora-tfjs');
