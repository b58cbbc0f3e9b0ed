import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';

/** What the project needs from outside npm: Jupyter (Python) and, for the docs tests, Chromium. */

export const DEBIAN_JUPYTER = ['jupyter-nbconvert', 'python3-nbclient', 'python3-ipykernel'];
export const PIP_JUPYTER = ['nbconvert', 'nbclient', 'ipykernel'];

type Log = (line: string) => void;

async function works(command: string, args: string[]): Promise<boolean> {
  try {
    await execa(command, args, { timeout: 60_000, stdin: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

async function hasApt(): Promise<boolean> {
  return existsSync('/usr/bin/apt-get') && existsSync('/usr/bin/dpkg');
}

let aptUpdated = false;
async function aptInstall(packages: string[], log: Log): Promise<void> {
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  if (!aptUpdated) {
    log(`running: apt-get update`);
    await execa('apt-get', ['update', '-qq'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
    aptUpdated = true;
  }
  log(`running: apt-get install -y ${packages.join(' ')}`);
  await execa('apt-get', ['install', '-y', '-qq', ...packages], { env, stdio: ['ignore', 'ignore', 'inherit'] });
}

/**
 * The `jupyter` command to run, installing nbconvert/nbclient/ipykernel when none works:
 * into a project-local venv with pip where PyPI is reachable, else (root on Debian/Ubuntu)
 * from Debian's packages; otherwise stop with the exact command to run.
 */
export async function ensureJupyter(root: string, log: Log): Promise<string> {
  const venvJupyter = join(root, '.venv', 'bin', 'jupyter');
  for (const candidate of [venvJupyter, 'jupyter']) {
    if ((candidate === 'jupyter' || existsSync(candidate)) && (await works(candidate, ['nbconvert', '--version']))) {
      return candidate;
    }
  }
  log('jupyter nbconvert was not found; installing it');
  const venv = join(root, '.venv');
  if (await works('python3', ['-m', 'venv', venv])) {
    log(`trying: ${venv}/bin/pip install ${PIP_JUPYTER.join(' ')}`);
    const pip = await execa(join(venv, 'bin', 'pip'), ['install', '--disable-pip-version-check', '--timeout', '15', '--retries', '1', ...PIP_JUPYTER], {
      reject: false,
      timeout: 600_000,
      stdin: 'ignore',
    });
    if (pip.exitCode === 0 && (await works(venvJupyter, ['nbconvert', '--version']))) return venvJupyter;
    log('pip could not install Jupyter (PyPI unreachable?)');
  }
  if (isRoot() && (await hasApt())) {
    await aptInstall(DEBIAN_JUPYTER, log);
    if (await works('jupyter', ['nbconvert', '--version'])) return 'jupyter';
  }
  throw new Error(
    'jupyter nbconvert is not installed and could not be installed automatically. Run one of:\n' +
      `  python3 -m pip install ${PIP_JUPYTER.join(' ')}\n` +
      `  sudo apt-get install -y ${DEBIAN_JUPYTER.join(' ')}`,
  );
}

/** Path of a Chromium to drive, installing Debian's package when missing and possible. */
export async function ensureChromium(log: Log): Promise<string> {
  const path = '/usr/bin/chromium';
  if (existsSync(path)) return path;
  if (isRoot() && (await hasApt())) {
    await aptInstall(['chromium'], log);
    if (existsSync(path)) return path;
  }
  throw new Error(`Chromium was not found at ${path}. Install it: sudo apt-get install -y chromium`);
}

/**
 * The wasm threads each of `jobs` processes running side by side gets on `cores` cores: its
 * share, at least 1 (more threads than cores, across processes, make each slower than one).
 */
export function wasmThreadsPerJob(cores: number, jobs: number): number {
  return Math.max(1, Math.floor(cores / Math.max(1, jobs)));
}

/** Environment that makes Jupyter find the project-local tslab kernelspec. */
export function kernelEnv(root: string): Record<string, string> {
  const jupyterPath = join(root, '.jupyter', 'share', 'jupyter');
  const existing = process.env.JUPYTER_PATH;
  return { JUPYTER_PATH: existing ? `${jupyterPath}:${existing}` : jupyterPath };
}

/** Make sure the project-local kernelspec exists (npm install writes it). */
export async function ensureKernelSpec(root: string): Promise<void> {
  if (!existsSync(join(root, '.jupyter', 'share', 'jupyter', 'kernels', 'tslab', 'kernel.json'))) {
    await execa(process.execPath, [join(root, 'scripts', 'kernel.mjs')], { stdio: 'inherit' });
  }
}
