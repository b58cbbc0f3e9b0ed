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
import { dirname, join, relative, resolve } from 'node:path';
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
if (relative(root, folder).startsWith('..')) console.warn(`lab: ${folder} is outside ${root}: its notebooks will not resolve \`import "lora-tfjs"\``);

if (!existsSync(join(jupyterPath, 'kernels', 'tslab', 'kernel.json'))) {
  const made = spawnSync(process.execPath, [join(root, 'scripts', 'kernel.mjs')], { stdio: 'inherit' });
  if (made.status !== 0) fail('could not register the tslab kernel (node scripts/kernel.mjs)');
}

// Where that Jupyter looks (with this environment): its data, config and runtime folders.
let paths = { data: [], config: [], runtime: [] };
try {
  paths = { ...paths, ...JSON.parse(spawnSync(jupyter, ['--paths', '--json'], { env, encoding: 'utf8' }).stdout) };
} catch {
  /* an old jupyter_core without --json: no extension detection, URL from polling */
}

// Plotly's JupyterLab extension draws the chart's JSON itself, so plotly.js need not be saved
// in the notebook. Installed: its labextension folder on a data path; disabled: its plugin id
// (`@jupyterlab/plotly-extension:…`; disabling the package name `jupyterlab-plotly` leaves the
// renderer running) in a labconfig/page_config.json. `jupyter labextension list` says the same
// in ~15 s.
function plotlyExtension() {
  const installed = paths.data.some((d) => existsSync(join(d, 'labextensions', 'jupyterlab-plotly', 'package.json')));
  const plugin = '@jupyterlab/plotly-extension';
  const disabled = paths.config.some((d) => {
    try {
      const v = JSON.parse(readFileSync(join(d, 'labconfig', 'page_config.json'), 'utf8')).disabledExtensions ?? {};
      const keys = Array.isArray(v) ? v : Object.keys(v).filter((k) => v[k] === true);
      return keys.some((k) => k === plugin || String(k).startsWith(`${plugin}:`));
    } catch {
      return false;
    }
  });
  return installed && !disabled;
}
if (env.LORA_PLOTLY !== undefined && env.LORA_PLOTLY !== 'inline' && env.LORA_PLOTLY !== 'extension') {
  fail(`LORA_PLOTLY = ${JSON.stringify(env.LORA_PLOTLY)} is invalid; expected "inline" (plotly.js with the first chart of each page) or "extension" (Plotly's JupyterLab extension draws the charts), or unset to detect`);
}
if (env.LORA_PLOTLY === undefined) env.LORA_PLOTLY = app === 'lab' && plotlyExtension() ? 'extension' : 'inline';
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
  // If another server takes the port meanwhile, jupyter moves on; the URL printed below is read from the server.
  ...(given('port') ? [] : [`--port=${port}`]),
  ...(given('ip') ? [] : ['--ip=127.0.0.1']),
  ...(typeof process.getuid === 'function' && process.getuid() === 0 && !given('allow-root') ? ['--allow-root'] : []),
];
const child = spawn(jupyter, [app, folder, ...extra, ...args], { env, stdio: 'inherit' });
// SIGTERM for both: with stdin not a terminal (CI, IDE task runners, docker without -t),
// jupyter_server takes SIGINT as KeyboardInterrupt and exits without shutting its kernels down.
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill('SIGTERM'));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

// The server's own banner scrolls away among its logs (and hides the token): say where it is
// once it answers, from the file the server writes for itself (its real port, if it had to move).
const deadline = Date.now() + 120_000;
const fallback = `http://127.0.0.1:${port}/`;
while (Date.now() < deadline && child.exitCode === null) {
  let info = null;
  for (const dir of paths.runtime) {
    for (const name of [`jpserver-${child.pid}.json`, `nbserver-${child.pid}.json`]) {
      try {
        info = JSON.parse(readFileSync(join(dir, name), 'utf8'));
      } catch {
        /* not written yet */
      }
    }
  }
  // Only the server's own file says which port is its own: another server may answer on the one asked for.
  const url = typeof info?.url === 'string' ? (info.url.endsWith('/') ? info.url : `${info.url}/`) : paths.runtime.length === 0 ? fallback : null;
  if (url === null) {
    await new Promise((r) => setTimeout(r, 250));
    continue;
  }
  try {
    if ((await fetch(`${url}api/status?token=${token}`)).ok) {
      console.log(`\nlab: jupyter ${app} (${jupyter === venv ? 'project venv' : 'PATH'}) is running; open\n\n    ${url}${app === 'lab' ? 'lab' : 'tree'}?token=${token}\n`);
      break;
    }
  } catch {
    /* not up yet */
  }
  await new Promise((r) => setTimeout(r, 500));
}
