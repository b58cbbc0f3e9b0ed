#!/usr/bin/env node
// `npm run setup:python [-- --peers]`: the project-local Python (.venv) for the tests and for
// `npm run lab`: torch, peft and safetensors for the PEFT interop tests; JupyterLab, nbconvert and
// plotly (whose JupyterLab extension draws Plotly's JSON) for the notebooks, the docs and the
// JupyterLab test. `--peers` adds tensorflow-cpu and keras (~600 MB), which only
// `npm run bench -- --peers` uses (the Keras 3 `enable_lora` column); CI does not install them.
// The library and the notebooks never need it; the test suite does, and fails (never skips)
// without it. Uses the package indexes pip is configured with as *the* index, so pip does not
// spend minutes retrying an unreachable public index.
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const venv = join(root, '.venv');
const python = join(venv, 'bin', 'python');
const peers = process.argv.includes('--peers');
const PACKAGES = ['torch>=2.4', 'peft==0.21.0', 'safetensors>=0.4', 'jupyterlab>=4.4,<5', 'nbconvert>=7.16', 'nbclient>=0.10', 'plotly>=6', ...(peers ? ['tensorflow-cpu>=2.16', 'keras>=3.6'] : [])];
const CHECK =
  `import torch, peft, safetensors, jupyterlab, nbconvert, nbclient, plotly${peers ? ', tensorflow, keras' : ''}; ` +
  'print("torch", torch.__version__, "peft", peft.__version__, "safetensors", safetensors.__version__, "jupyterlab", jupyterlab.__version__, "nbconvert", nbconvert.__version__, "plotly", plotly.__version__' +
  `${peers ? ', "tensorflow", tensorflow.__version__, "keras", keras.__version__' : ''})`;

const run = (cmd, args, opts = {}) => spawnSync(cmd, args, { encoding: 'utf8', ...opts });
const fail = (message) => {
  console.error(`setup:python: ${message}`);
  process.exit(1);
};

const has = () => existsSync(python) && run(python, ['-c', CHECK]).status === 0;
// The checkout's package.json says "type": "module", which would make Node load the .js files
// JupyterLab ships in the venv (its bundled yarn) as ES modules: they fail, noisily, on every
// `jupyter lab` start. A package.json of the venv's own keeps them CommonJS.
const markVenv = () => existsSync(venv) && writeFileSync(join(venv, 'package.json'), '{}\n');
if (has()) {
  markVenv();
  console.log(`setup:python: ${run(python, ['-c', CHECK]).stdout.trim()} already in ${venv}`);
  process.exit(0);
}

if (!existsSync(python)) {
  const made = run('python3', ['-m', 'venv', venv], { stdio: 'inherit' });
  if (made.status !== 0) fail(`could not create ${venv} with \`python3 -m venv\` (on Debian/Ubuntu: apt-get install python3-venv)`);
}

// The configured indexes (pip config's index-url / extra-index-url), used as the only indexes.
const config = (key) => run('python3', ['-m', 'pip', 'config', 'get', key]).stdout?.trim() ?? '';
const urls = [config('global.index-url'), config('global.extra-index-url')].join(' ').split(/\s+/).filter(Boolean);
const indexArgs = urls.length > 0 ? ['--index-url', urls[0], ...urls.slice(1).flatMap((u) => ['--extra-index-url', u])] : [];
console.log(`setup:python: installing ${PACKAGES.join(' ')} into ${venv}${urls.length > 0 ? ` from ${urls.join(', ')}` : ''}`);
const pip = run(python, ['-m', 'pip', 'install', '--disable-pip-version-check', '--timeout', '30', '--retries', '2', ...indexArgs, ...PACKAGES], { stdio: 'inherit' });
if (pip.status !== 0 || !has()) {
  fail(
    `pip could not install ${PACKAGES.join(', ')} into ${venv}. The PEFT interop tests, the notebook runner and the JupyterLab test need them. ` +
      'Check that pip reaches a package index with torch (CPU) and peft (pip config list), then run `npm run setup:python` again; ' +
      'or set LORA_PEFT_PYTHON to a Python that has torch, peft and safetensors.',
  );
}
markVenv();
console.log(`setup:python: ${run(python, ['-c', CHECK]).stdout.trim()}`);
