/**
 * The notebooks as a JupyterLab user sees them (run by jupyterlab.test.ts and
 * jupyterlab-extension.test.ts): `npm run lab` (scripts/lab.mjs) with the
 * project venv's JupyterLab, in headless Chromium, once without and once with Plotly's
 * JupyterLab extension. Every chart output must show a drawn chart or a visible one-line
 * message, never an empty box, across Run All, reload + Run All on the same kernel, clear +
 * save + reopen, and an untrusted copy.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHART_NOT_RUN } from '../src/notebook/chart.js';
import { launchChromium, offlinePage } from './browser.js';

const root = join(import.meta.dirname, '..');
const venvJupyter = join(root, '.venv', 'bin', 'jupyter');
const NOTEBOOKS = ['01-parameter-efficiency.ipynb', '04-rank-impact.ipynb'];
const PLOTLY_MIME = 'application/vnd.plotly.v1+json';

/** What one chart output shows. */
interface ChartState {
  mime: string | null;
  /** A live Plotly chart (its SVG). */
  drawn: boolean;
  /** The PNG snapshot Plotly's extension saved with the notebook. */
  snapshot: boolean;
  message: string | null;
}

type Lab = { jupyterapp: { commands: { execute(id: string, args?: unknown): Promise<unknown> }; shell: { currentWidget: unknown } } };

/** Every chart output of the open notebook: Plotly's renderer, or our HTML with its message. */
async function charts(page: Page): Promise<ChartState[]> {
  return page.evaluate((plotlyMime) => {
    const outputs = Array.from(document.querySelectorAll('.jp-Notebook .jp-OutputArea-output'));
    return outputs
      .filter((o) => o.matches('.jp-RenderedPlotly') || o.querySelector('.lora-tfjs-plot') !== null || (o.textContent ?? '').includes('Chart not drawn:'))
      .map((o) => {
        const note = o.querySelector('.lora-tfjs-plot-message') as HTMLElement | null;
        const visible = note !== null && note.offsetHeight > 0 && (note.textContent ?? '').trim() !== '';
        // Plotly's extension shows a saved notebook's PNG snapshot until it draws the live chart.
        const snapshot = o.querySelector('img.plot-img') as HTMLImageElement | null;
        return {
          mime: o.matches('.jp-RenderedPlotly') ? plotlyMime : o.getAttribute('data-mime-type'),
          drawn: o.querySelector('svg.main-svg') !== null,
          snapshot: snapshot !== null && snapshot.naturalWidth > 0 && snapshot.offsetHeight > 0,
          message: visible ? (note.textContent ?? '').trim() : null,
        };
      });
  }, PLOTLY_MIME);
}

/** Wait until the open notebook's kernel is connected and idle. */
async function kernelReady(page: Page): Promise<string> {
  await page.waitForFunction(
    () => {
      const w = (window as unknown as Lab).jupyterapp?.shell?.currentWidget as { sessionContext?: { session?: { kernel?: { connectionStatus: string; status: string } } } } | undefined;
      const k = w?.sessionContext?.session?.kernel;
      return k?.connectionStatus === 'connected' && k.status === 'idle';
    },
    null,
    { timeout: 120_000, polling: 250 },
  );
  return page.evaluate(() => ((window as unknown as Lab).jupyterapp.shell.currentWidget as { sessionContext: { session: { kernel: { id: string } } } }).sessionContext.session.kernel.id);
}

async function command(page: Page, id: string): Promise<void> {
  await page.evaluate((c) => (window as unknown as Lab).jupyterapp.commands.execute(c).then(() => undefined), id);
}

/** Run All, and wait for every code cell to finish (tslab reports an error as a failed run: none allowed). */
async function runAll(page: Page): Promise<void> {
  await command(page, 'notebook:run-all-cells');
  await page.waitForFunction(
    () => {
      const prompts = Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')).map((p) => (p.textContent ?? '').trim());
      return prompts.length > 0 && prompts.every((p) => /^\[\d+\]:$/.test(p));
    },
    null,
    { timeout: 300_000, polling: 500 },
  );
  const errors = await page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').allInnerTexts();
  expect(errors.filter((e) => /Error|error TS/.test(e))).toEqual([]);
  // record() values are for the runner, not the reader: nothing of them shows.
  expect(await page.locator('.jp-OutputArea-output', { hasText: 'recorded ' }).count()).toBe(0);
}

/** Open `file` as the only document (`reset`: no restored workspace) and wait for its kernel. */
async function open(page: Page, url: string, file: string, token: string): Promise<string> {
  await page.goto(`${url}/lab/tree/${encodeURIComponent(file)}?reset&token=${token}`);
  await page.waitForFunction(
    (f) => ((window as unknown as Lab).jupyterapp?.shell?.currentWidget as { context?: { path: string } } | undefined)?.context?.path === f,
    file,
    { timeout: 60_000, polling: 250 },
  );
  await page.locator('.jp-Notebook .jp-Cell').first().waitFor({ timeout: 60_000 });
  return kernelReady(page);
}

/** Settle: charts whose script waits for plotly.js get a few seconds before we look. */
const settle = (page: Page) => page.waitForTimeout(4000);

/** The whole JupyterLab check, once per setup (one test file each, so the two run side by side). */
export function jupyterLabSuite(extension: boolean): void {
  describe(`npm run lab ${extension ? 'with' : 'without'} Plotly's JupyterLab extension`, () => {
    // A folder inside notebooks/ (so `import "lora-tfjs"` resolves), served as JupyterLab's root.
    const dir = mkdtempSync(join(root, 'notebooks', '.lab-check-'));
    const config = mkdtempSync(join(tmpdir(), 'lora-lab-config-'));
    // One token per setup: the two run side by side, and a mix-up between their servers must fail.
    const token = `lora-lab-${extension ? 'extension' : 'plain'}`;
    let lab: ChildProcess;
    let stdout = '';
    let url = '';
    let browser: Browser;

    beforeAll(async () => {
      expect(existsSync(venvJupyter), 'the project venv has no JupyterLab: run `npm run setup:python`').toBe(true);
      for (const nb of NOTEBOOKS) copyFileSync(join(root, 'notebooks', nb), join(dir, nb));
      // The extension comes with the venv's plotly package; this run switches it off as
      // `jupyter labextension disable @jupyterlab/plotly-extension:factory` would (disabling the
      // package name, jupyterlab-plotly, leaves its renderer running).
      mkdirSync(join(config, 'labconfig'), { recursive: true });
      writeFileSync(join(config, 'labconfig', 'page_config.json'), JSON.stringify({ disabledExtensions: extension ? {} : { '@jupyterlab/plotly-extension:factory': true } }));
      const env: Record<string, string | undefined> = { ...process.env, JUPYTER_TOKEN: token, JUPYTER_CONFIG_PATH: config, JUPYTER_CONFIG_DIR: config, LORA_PLOTLY: undefined };
      lab = spawn(process.execPath, [join(root, 'scripts', 'lab.mjs'), dir, '--no-browser', '--LabApp.expose_app_in_browser=True'], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      lab.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
      lab.stderr?.on('data', () => undefined);
      const deadline = Date.now() + 120_000;
      while (!/open\s+(http:\/\/127\.0\.0\.1:\d+)\/lab\?token=(\S+)/.test(stdout)) {
        if (Date.now() > deadline || lab.exitCode !== null) throw new Error(`npm run lab did not print its URL:\n${stdout}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      const m = /open\s+(http:\/\/127\.0\.0\.1:\d+)\/lab\?token=(\S+)/.exec(stdout) as RegExpExecArray;
      url = m[1];
      expect(m[2]).toBe(token);
      browser = await launchChromium();
    }, 240_000);

    afterAll(async () => {
      await browser?.close();
      try {
        const kernels = (await (await fetch(`${url}/api/kernels?token=${token}`)).json()) as Array<{ id: string }>;
        for (const k of kernels) await fetch(`${url}/api/kernels/${k.id}?token=${token}`, { method: 'DELETE' });
      } catch {
        /* server already gone */
      }
      if (lab?.pid !== undefined) {
        try {
          process.kill(-lab.pid, 'SIGTERM');
        } catch {
          /* gone */
        }
      }
      rmSync(dir, { recursive: true, force: true });
      rmSync(config, { recursive: true, force: true });
    });

    it('starts from the project venv as root, says which chart delivery it picked, and prints the URL with its token', () => {
      expect(stdout).toContain('jupyter lab (project venv) is running');
      expect(stdout).toContain(extension ? 'Plotly extension found' : 'no Plotly extension');
    });

    for (const nb of NOTEBOOKS) {
      it(`${nb}: Run All draws every chart, and again after a reload on the same kernel (01: and after clear + save + reopen)`, async () => {
        const { page, blocked, close } = await offlinePage(browser, url);
        try {
          const kernel = await open(page, url, nb, token);
          await runAll(page);
          await settle(page);
          const first = await charts(page);
          expect(first.length, 'chart outputs').toBeGreaterThan(0);
          expect(first.every((c) => c.drawn && c.message === null), JSON.stringify(first)).toBe(true);
          // Which renderer drew it: Plotly's extension (its mime type) or our HTML.
          expect(new Set(first.map((c) => c.mime))).toEqual(new Set([extension ? PLOTLY_MIME : 'text/html']));

          // Reload the page: the kernel keeps running (same id) but the new page has no plotly.js.
          await page.reload();
          expect(await open(page, url, nb, token)).toBe(kernel);
          await runAll(page);
          await settle(page);
          const again = await charts(page);
          expect(again.length).toBe(first.length);
          expect(again.every((c) => c.drawn && c.message === null), JSON.stringify(again)).toBe(true);

          // Clear outputs, save, reopen, Run All (still the same kernel). One notebook is
          // enough for this sequence: 04's Run All takes a minute or more.
          if (nb === NOTEBOOKS[0]) {
            await command(page, 'notebook:clear-all-cell-outputs');
            await command(page, 'docmanager:save');
            await page.reload();
            expect(await open(page, url, nb, token)).toBe(kernel);
            expect(await charts(page)).toEqual([]);
            await runAll(page);
            await settle(page);
            const cleared = await charts(page);
            expect(cleared.length).toBe(first.length);
            expect(cleared.every((c) => c.drawn && c.message === null), JSON.stringify(cleared)).toBe(true);
          }

          // Saved: with the extension, without plotly.js (small); without it, plotly.js once.
          await command(page, 'docmanager:save');
          const saved = readFileSync(join(dir, nb), 'utf8');
          const inlined = saved.split('data-lora-tfjs-plotly=\\"inline\\"').length - 1;
          expect(inlined, 'copies of plotly.js in the saved notebook').toBe(extension ? 0 : 1);
          if (extension) expect(statSync(join(dir, nb)).size).toBeLessThan(1_000_000);
          console.log(`${nb} (${extension ? 'with' : 'without'} extension): ${first.length} chart(s), saved ${(statSync(join(dir, nb)).size / 1e6).toFixed(2)} MB`);
          expect(blocked).toEqual([]);
        } finally {
          await close();
        }
      }, 900_000);
    }

    it('a saved notebook reopened in a new page, and an untrusted copy of it, show their charts or a visible message', async () => {
      const nb = NOTEBOOKS[0];
      // An untrusted copy: the same outputs under a signature JupyterLab does not know.
      const saved = JSON.parse(readFileSync(join(dir, nb), 'utf8')) as { metadata: Record<string, unknown> };
      saved.metadata.lora_tfjs_copy = 'opened elsewhere';
      writeFileSync(join(dir, 'untrusted-copy.ipynb'), JSON.stringify(saved));
      for (const [file, trusted] of [[nb, true], ['untrusted-copy.ipynb', false]] as const) {
        const { page, close } = await offlinePage(browser, url);
        try {
          await open(page, url, file, token);
          await settle(page);
          const shown = await charts(page);
          expect(shown.length, file).toBeGreaterThan(0);
          // Never an empty box: drawn (live, or the extension's saved snapshot), or a sentence saying what to do.
          expect(shown.every((c) => c.drawn || c.snapshot || c.message !== null), `${file}: ${JSON.stringify(shown)}`).toBe(true);
          if (trusted) expect(shown.every((c) => (extension ? c.snapshot || c.drawn : c.drawn)), `${file}: ${JSON.stringify(shown)}`).toBe(true);
          if (!trusted && !extension) expect(shown.map((c) => c.message)).toEqual(shown.map(() => CHART_NOT_RUN));
        } finally {
          await close();
        }
      }
    }, 300_000);
  });
}
