#!/usr/bin/env node
// `npm run lab [-- [folder] [jupyter options]]`: JupyterLab on notebooks/ (or the folder, which
// must be inside the checkout so that notebooks resolve `lora-tfjs`), with the project's own tslab
// kernel (found through JUPYTER_PATH). Prefers the JupyterLab in the project venv (.venv, from
// `npm run setup:python`), then one on PATH, then the classic notebook. Works as root
// (containers, CI images: --allow-root), and prints the URL with its token once the server
// answers. When that JupyterLab has Plotly's extension (`pip install plotly`), charts are sent
// without plotly.js (LORA_PLOTLY=extension), so saved notebooks stay small.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const jupyterPath = join(root, '.jupyter', 'share', 'jupyter');
const env = { ...process.env, JUPYTER_PATH: process.env.JUPYTER_PATH ? `${jupyterPath}:${process.env.JUPYTER_PATH}` : jupyterPath };
const argv = process.argv.slice(2);
const folder = argv.length > 0 && !argv[0].startsWith('-') ? resolve(argv[0]) : join(root, 'notebooks');
const args = argv.length > 0 && !argv[0].startsWith('-') ? argv.slice(1) : argv;
const given = (name) => args.some((a) => a === `--${name}` || a.startsWith(`--${name}=`));
const fail = (message) => {
  console.error(`lab: ${message}`);
  process.exit(1);
};

const works = (jupyter, sub) => (jupyter === 'jupyter' || existsSync(jupyter)) && spawnSync(jupyter, [sub, '--version'], { env, stdio: 'ignore' }).status === 0;
const venv = join(root, '.venv', 'bin', 'jupyter');
const choice = [[venv, 'lab'], ['jupyter', 'lab'], [venv, 'notebook'], ['jupyter', 'notebook']].find(([j, sub]) => works(j, sub));
if (choice === undefined) {
  fail('neither JupyterLab nor the classic notebook is installed. Install JupyterLab into the project venv:\n  npm run setup:python\n  (or: python3 -m pip install jupyterlab plotly; Debian/Ubuntu: sudo apt-get install jupyter-notebook)');
}
const [jupyter, app] = choice;
if (!existsSync(folder)) fail(`folder = ${JSON.stringify(folder)} does not exist; expected a folder of notebooks inside ${root}`);

if (!existsSync(join(jupyterPath, 'kernels', 'tslab', 'kernel.json'))) {
  const made = spawnSync(process.execPath, [join(root, 'scripts', 'kernel.mjs')], { stdio: 'inherit' });
  if (made.status !== 0) fail('could not register the tslab kernel (node scripts/kernel.mjs)');
}

// Plotly's JupyterLab extension draws the chart's JSON itself, so plotly.js need not be saved
// in the notebook. Asked of that JupyterLab's own Python: where its extensions are and which
// are disabled (`jupyter labextension list` says the same but takes ~15 s).
const PLOTLY_EXTENSION = `
import json, os
from jupyter_core.paths import jupyter_path, jupyter_config_path
name = 'jupyterlab-plotly'
# The frontend disables plugins by their id: the package name alone leaves this one running.
plugin = '@jupyterlab/plotly-extension'
installed = any(os.path.exists(os.path.join(p, 'labextensions', name, 'package.json')) for p in jupyter_path())
disabled = False
for p in jupyter_config_path():
    try:
        with open(os.path.join(p, 'labconfig', 'page_config.json')) as f:
            d = json.load(f).get('disabledExtensions', {})
    except (OSError, ValueError, AttributeError):
        continue
    keys = [k for k, v in d.items() if v is True] if isinstance(d, dict) else list(d) if isinstance(d, list) else []
    disabled = disabled or any(k == plugin or k.startswith(plugin + ':') for k in keys)
print('extension' if installed and not disabled else 'inline')
`;
function pythonOf(command) {
  const path = command.includes('/') ? command : spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).stdout.trim();
  try {
    const first = readFileSync(path, 'utf8').slice(0, 300).split('\n')[0];
    return first.startsWith('#!') ? first.slice(2).trim().split(/\s+/)[0] : null;
  } catch {
    return null;
  }
}
if (env.LORA_PLOTLY === undefined && app === 'lab') {
  const python = pythonOf(jupyter);
  const asked = python === null ? null : spawnSync(python, ['-c', PLOTLY_EXTENSION], { env, encoding: 'utf8' });
  env.LORA_PLOTLY = asked?.status === 0 && asked.stdout.trim() === 'extension' ? 'extension' : 'inline';
}
console.log(
  env.LORA_PLOTLY === 'extension'
    ? 'lab: Plotly extension found: charts are saved as Plotly JSON only (small notebooks)'
    : 'lab: no Plotly extension: each notebook page gets plotly.js with its first chart (~5 MB in a saved notebook; `pip install plotly` into this JupyterLab for small files)',
);

const freePort = (port) =>
  new Promise((res) => {
    const s = createServer()
      .once('error', () => res(port < 8999 ? freePort(port + 1) : 0))
      .listen(port, '127.0.0.1', () => s.close(() => res(port)));
  });

const token = env.JUPYTER_TOKEN ?? randomBytes(24).toString('hex');
env.JUPYTER_TOKEN = token; // read by jupyter_server and the classic notebook alike
const port = given('port') ? Number(args.find((a) => a.startsWith('--port='))?.slice(7) ?? args[args.indexOf('--port') + 1]) : await freePort(8888);
const extra = [
  ...(given('port') ? [] : [`--port=${port}`, '--ServerApp.port_retries=0']),
  ...(given('ip') ? [] : ['--ip=127.0.0.1']),
  ...(typeof process.getuid === 'function' && process.getuid() === 0 && !given('allow-root') ? ['--allow-root'] : []),
];
const child = spawn(jupyter, [app, folder, ...extra, ...args], { env, stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

// The server's own banner scrolls away among its logs: say where it is once it answers.
const host = args.find((a) => a.startsWith('--ip='))?.slice(5) ?? '127.0.0.1';
const url = `http://${host === '0.0.0.0' || host === '' ? '127.0.0.1' : host}:${port}`;
const deadline = Date.now() + 120_000;
while (Date.now() < deadline && child.exitCode === null) {
  try {
    if ((await fetch(`${url}/api/status?token=${token}`)).ok) {
      console.log(`\nlab: jupyter ${app} (${jupyter === venv ? 'project venv' : 'PATH'}) is running; open\n\n    ${url}/${app === 'lab' ? 'lab' : 'tree'}?token=${token}\n`);
      break;
    }
  } catch {
    /* not up yet */
  }
  await new Promise((r) => setTimeout(r, 500));
}
