#!/usr/bin/env node
// Registers the tslab kernel project-locally: a kernelspec under .jupyter/share/jupyter
// (the layout `tslab install --prefix .jupyter` gives), found through JUPYTER_PATH. Nothing is
// written into the user's global Jupyter setup. We write kernel.json ourselves, with the same
// content as tslab's installer, because that installer needs a Python with jupyter_client,
// which a fresh machine does not have at `npm install` time.
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const tslab = join(root, 'node_modules', '.bin', 'tslab');
if (!existsSync(tslab)) process.exit(0); // installed as a dependency: no notebooks to run

const jupyterPath = join(root, '.jupyter', 'share', 'jupyter');
const dir = join(jupyterPath, 'kernels', 'tslab');
mkdirSync(dir, { recursive: true });
const spec = {
  argv: [tslab, 'kernel', '--config-path', '{connection_file}'],
  display_name: 'TypeScript (lora-tfjs)',
  language: 'typescript',
};
const tmp = join(dir, `kernel.json.${process.pid}.tmp`);
writeFileSync(tmp, JSON.stringify(spec, null, 1) + '\n');
renameSync(tmp, join(dir, 'kernel.json'));
console.log(`lora-tfjs: tslab kernel registered in ${dir} (use JUPYTER_PATH=${jupyterPath})`);
