#!/usr/bin/env node
// `npm run lab`: start JupyterLab (or the classic notebook when JupyterLab is not installed)
// on notebooks/, with the project's own tslab kernel found through JUPYTER_PATH.
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const jupyterPath = join(root, '.jupyter', 'share', 'jupyter');
const env = { ...process.env, JUPYTER_PATH: process.env.JUPYTER_PATH ? `${jupyterPath}:${process.env.JUPYTER_PATH}` : jupyterPath };
const has = (sub) => spawnSync('jupyter', [sub, '--version'], { env, stdio: 'ignore' }).status === 0;
const app = has('lab') ? 'lab' : has('notebook') ? 'notebook' : null;
if (app === null) {
  console.error('Neither JupyterLab nor the classic notebook is installed. Install one:\n  python3 -m pip install jupyterlab\n  (Debian/Ubuntu: sudo apt-get install jupyter-notebook)');
  process.exit(1);
}
console.log(`starting jupyter ${app} with JUPYTER_PATH=${jupyterPath}`);
const r = spawnSync('jupyter', [app, join(root, 'notebooks'), ...process.argv.slice(2)], { env, stdio: 'inherit' });
process.exit(r.status ?? 1);
