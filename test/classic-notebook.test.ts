import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureClassicNotebook, ensureJupyter, ensureKernelSpec, kernelEnv } from '../scripts/lib/system.js';
import { launchChromium, offlinePage } from './browser.js';

const root = join(import.meta.dirname, '..');
const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });

describe('live in the classic notebook UI', () => {
  // A copy beside the sources (so `import "lora-tfjs"` resolves), never the source itself.
  const dir = mkdtempSync(join(root, 'notebooks', '.classic-check-'));
  let server: ChildProcess;
  let browser: Browser;
  let url: string;

  beforeAll(async () => {
    const log = (line: string) => console.log(line);
    await ensureJupyter(root, log);
    await ensureClassicNotebook(log);
    await ensureKernelSpec(root);
    copyFileSync(join(root, 'notebooks', '01-parameter-efficiency.ipynb'), join(dir, 'live.ipynb'));
    const port = await freePort();
    server = spawn('jupyter', ['notebook', '--no-browser', '--allow-root', '--ip=127.0.0.1', `--port=${port}`, '--NotebookApp.token=lora', `--notebook-dir=${dir}`], {
      env: { ...process.env, ...kernelEnv(root) },
      stdio: 'ignore',
      detached: true,
    });
    url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        if ((await fetch(`${url}/api?token=lora`)).ok) break;
      } catch {
        /* not up yet */
      }
      if (Date.now() > deadline) throw new Error('the notebook server did not start within 60 s');
      await new Promise((r) => setTimeout(r, 500));
    }
    browser = await launchChromium();
  }, 600_000);

  afterAll(async () => {
    await browser?.close();
    // Kernels run in their own session: shut them down through the server, then stop it.
    try {
      const kernels = (await (await fetch(`${url}/api/kernels?token=lora`)).json()) as Array<{ id: string }>;
      for (const k of kernels) await fetch(`${url}/api/kernels/${k.id}?token=lora`, { method: 'DELETE' });
    } catch {
      /* server already gone */
    }
    if (server?.pid !== undefined) {
      try {
        process.kill(-server.pid, 'SIGKILL'); // the server and the kernel it started
      } catch {
        /* gone */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs notebook 01 on the tslab kernel and draws its Plotly chart from the display message', async () => {
    const { page, blocked: outside, pageErrors: errors, close } = await offlinePage(browser, url);
    await page.goto(`${url}/notebooks/live.ipynb?token=lora`);
    await page.waitForFunction(() => (window as unknown as { Jupyter?: { notebook?: { kernel?: { is_connected(): boolean } } } }).Jupyter?.notebook?.kernel?.is_connected() === true, null, { timeout: 120_000 });
    await page.evaluate(() => {
      const nb = (window as unknown as { Jupyter: { notebook: { clear_all_output(): void; execute_all_cells(): void } } }).Jupyter.notebook;
      nb.clear_all_output();
      nb.execute_all_cells();
    });
    await page.locator('.lora-tfjs-plot svg.main-svg').first().waitFor({ state: 'attached', timeout: 180_000 });
    expect(await page.locator('.lora-tfjs-plot .barlayer').count()).toBeGreaterThan(0);
    const text = await page.locator('.output_area').allInnerTexts();
    // A row of notebook 01's comparison table, sent by showTable and rendered from its HTML.
    expect(await page.locator('.output_area table.lora-tfjs-table').count()).toBeGreaterThan(0);
    expect(text.join('\n')).toMatch(/rank 2\s+Trainable parameters\s+17,664\s+17,664\s+yes/);
    expect(errors).toEqual([]);
    expect(outside.filter((u) => !u.startsWith('data:'))).toEqual([]);
    await close();
  }, 300_000);
});
