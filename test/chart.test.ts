/**
 * Charts in a notebook: when plotly.js goes with a chart (once per page = client session),
 * and what the HTML fallback shows in a browser with and without plotly.js and scripts.
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { Browser } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { initBackend } from '../src/index.js';
import { CHART_NOT_RUN, CHART_NO_PLOTLY, lossCurvesFigure, plotlyBundle, plotlyDelivery, showPlot, plotlySource } from '../src/notebook/index.js';
import { executingClientSession, followClientSessions } from '../src/notebook/tslab.js';
import { launchChromium } from './browser.js';

const root = join(import.meta.dirname, '..');
const cache = createRequire(join(process.cwd(), 'index.js')).cache as Record<string, unknown>;
const FAKE = join(root, 'test', 'fake', 'node_modules', 'tslab', 'dist', 'jupyter.js');
const fig = lossCurvesFigure([{ name: 'a', y: [3, 2, 1] }], 'T');

type Sent = { data: Record<string, unknown> };

/**
 * A stand-in for tslab's `dist/jupyter.js` with the shape lora-tfjs relies on: the server's
 * `handleExecute(sock, msg)` passes `msg.content` to the handler, whose
 * `handleExecuteImpl(req, writeStream, writeDisplayData)` sets `lastWriteDisplayData` and runs the cell.
 */
function fakeTslab() {
  const sent: Sent[] = [];
  const mod: Record<string, unknown> = { lastWriteDisplayData: null };
  class JupyterHandlerImpl {
    cell: () => void = () => undefined;
    handleExecuteImpl(req: unknown, _writeStream: unknown, writeDisplayData: unknown) {
      mod.lastWriteDisplayData = writeDisplayData;
      this.cell();
      return req;
    }
  }
  class ZmqServer {
    handler = new JupyterHandlerImpl();
    handleExecute(_sock: unknown, msg: { content: object }) {
      // A new writer per request, as tslab makes one per execute_request.
      const write = (content: Sent) => sent.push(content);
      return this.handler.handleExecuteImpl(msg.content, null, write);
    }
  }
  mod.ZmqServer = ZmqServer;
  mod.JupyterHandlerImpl = JupyterHandlerImpl;
  const server = new ZmqServer();
  /** Execute one "cell" as a request from client session `session`. */
  const execute = (session: string, cell: () => void) => {
    server.handler.cell = cell;
    server.handleExecute(null, { header: { session }, content: { code: '…' } } as never);
  };
  return { mod, sent, execute };
}

const inlined = (s: Sent) => (s.data['text/html'] as string).includes('data-lora-tfjs-plotly="inline"');

describe('plotly.js is sent once per page (client session)', () => {
  let numTensors = 0;
  beforeAll(async () => {
    await initBackend();
    numTensors = tf.memory().numTensors;
  });
  afterEach(() => {
    delete cache[FAKE];
    delete process.env.LORA_PLOTLY;
  });
  afterAll(() => expect(tf.memory().numTensors).toBe(numTensors));

  it('with the first chart of each new session, again after a reload (new session), never twice to one page', () => {
    const { mod, sent, execute } = fakeTslab();
    cache[FAKE] = { exports: mod };
    execute('page-1', () => undefined); // the request that loads lora-tfjs: not followed yet
    expect(followClientSessions(mod as never)).toBe(true);
    expect(followClientSessions(mod as never)).toBe(true); // idempotent: no second wrapper
    execute('page-1', () => {
      expect(executingClientSession()).toBe('page-1');
      showPlot(fig);
      showPlot(fig);
    });
    execute('page-1', () => showPlot(fig));
    execute('page-2', () => {
      expect(executingClientSession()).toBe('page-2');
      showPlot(fig);
      showPlot(fig);
    });
    execute('page-1', () => showPlot(fig));
    expect(sent.map(inlined)).toEqual([true, false, false, true, false, false]);
    // Every chart carries all three forms; ids are unique.
    for (const s of sent) expect(Object.keys(s.data).sort()).toEqual(['application/vnd.plotly.v1+json', 'text/html', 'text/plain']);
    const ids = sent.map((s) => /<div id="([^"]+)"/.exec(s.data['text/html'] as string)?.[1]);
    expect(new Set(ids).size).toBe(sent.length);
  });

  it('loading lora-tfjs in a kernel starts following sessions, so the first chart of a page is known as that page', async () => {
    const { mod, sent, execute } = fakeTslab();
    cache[FAKE] = { exports: mod };
    vi.resetModules();
    let chart: typeof import('../src/notebook/chart.js') | null = null;
    // The import cell: the module loads inside this request.
    const loading = import('../src/notebook/chart.js').then((m) => (chart = m));
    execute('page-7', () => undefined);
    await loading;
    execute('page-7', () => chart?.showPlot(fig));
    execute('page-7', () => chart?.showPlot(fig));
    expect(sent.map(inlined)).toEqual([true, false]);
  });

  it('LORA_PLOTLY=extension never sends plotly.js; a bad value is refused, naming the variable', () => {
    const { mod, sent, execute } = fakeTslab();
    cache[FAKE] = { exports: mod };
    process.env.LORA_PLOTLY = 'extension';
    execute('page-9', () => showPlot(fig));
    expect(sent.map(inlined)).toEqual([false]);
    process.env.LORA_PLOTLY = 'cdn';
    expect(() => showPlot(fig)).toThrow('plotlyDelivery: LORA_PLOTLY = "cdn" is invalid; expected "inline"');
    expect(sent).toHaveLength(1); // nothing sent for the refused call
    expect(plotlyDelivery({})).toBe('inline');
    expect(plotlyDelivery({ LORA_PLOTLY: 'inline' })).toBe('inline');
  });

  it('when tslab internals are not the expected ones: not followed, and plotly.js goes once per request instead', () => {
    const { mod, sent, execute } = fakeTslab();
    const changed = { lastWriteDisplayData: null as unknown };
    expect(followClientSessions(changed as never)).toBe(false);
    expect(followClientSessions({ ZmqServer: { prototype: { handleExecute: (a: unknown) => a } }, JupyterHandlerImpl: { prototype: { handleExecuteImpl: (a: unknown, b: unknown, c: unknown) => [a, b, c] } } } as never)).toBe(false);
    expect(followClientSessions(null)).toBe(false);
    // A module without the classes: each request's first chart inlines.
    const bare = { lastWriteDisplayData: null as unknown };
    cache[FAKE] = { exports: bare };
    const requests: Array<() => void> = [];
    for (let r = 0; r < 2; r++) {
      requests.push(() => {
        bare.lastWriteDisplayData = (c: Sent) => sent.push(c);
        showPlot(fig);
        showPlot(fig);
      });
    }
    requests.forEach((run) => run());
    expect(sent.map(inlined)).toEqual([true, false, true, false]);
    void mod;
    void execute;
  });
});

describe('the real tslab still has the internals lora-tfjs relies on', () => {
  it('dist/jupyter.js: lastWriteDisplayData, ZmqServer.handleExecute(sock, msg) → handler.handleExecute(msg.content, …) → handleExecuteImpl(req, …)', () => {
    const require = createRequire(join(root, 'index.js'));
    const path = require.resolve('tslab/dist/jupyter.js');
    const source = readFileSync(path, 'utf8');
    const jupyter = require(path) as { lastWriteDisplayData: unknown; ZmqServer: { prototype: Record<string, unknown> }; JupyterHandlerImpl: { prototype: Record<string, unknown> } };
    expect('lastWriteDisplayData' in jupyter).toBe(true);
    expect((jupyter.ZmqServer.prototype.handleExecute as () => void).length).toBe(2);
    expect((jupyter.JupyterHandlerImpl.prototype.handleExecuteImpl as () => void).length).toBe(3);
    // The request content object is what both wrappers see, and the writer is set per request.
    expect(source).toMatch(/this\.handler\.handleExecute\(msg\.content, writeStream, writeDisplayData\)/);
    expect(source).toMatch(/this\.execQueue\.add\(\(\) => this\.handleExecuteImpl\(req, writeStream, writeDisplayData\)\)/);
    expect(source).toMatch(/exports\.lastWriteDisplayData = writeDisplayData;/);
    expect(source).toMatch(/session: this\.header\.session/);
    const pkg = JSON.parse(readFileSync(join(dirname(path), '..', 'package.json'), 'utf8')) as { version: string };
    expect(pkg.version).toMatch(/^1\.0\./);
  });
});

function dirname(p: string): string {
  return p.slice(0, p.lastIndexOf('/'));
}

describe('the HTML fallback in a browser: a chart, or one line saying what to do', () => {
  let browser: Browser;
  const plotly = plotlySource();
  beforeAll(async () => {
    browser = await launchChromium();
  }, 120_000);
  afterAll(async () => browser?.close());

  async function show(html: string, opts: { javaScriptEnabled?: boolean; after?: number; addPlotly?: boolean } = {}) {
    const context = await browser.newContext({ javaScriptEnabled: opts.javaScriptEnabled ?? true });
    await context.route('**/*', (route) => (route.request().url() === 'http://charts.test/' ? route.fulfill({ contentType: 'text/html', body: `<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>${html}</body></html>` }) : route.abort()));
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto('http://charts.test/');
    if (opts.after !== undefined) await page.waitForTimeout(opts.after);
    const state = async () => ({
      drawn: await page.locator('.lora-tfjs-plot:has(svg.main-svg)').count(),
      message: (await page.locator('.lora-tfjs-plot-message').allInnerTexts()).map((t) => t.trim()),
      height: await page.locator('.lora-tfjs-plot').first().evaluate((e) => (e as HTMLElement).offsetHeight),
    });
    const before = await state();
    if (opts.addPlotly) {
      await page.addScriptTag({ content: plotly });
      await page.waitForTimeout(500);
    }
    const after = await state();
    await context.close();
    return { before, after, errors };
  }

  it('with plotly.js inlined: drawn at once, no message, at the requested height', async () => {
    const { before, errors } = await show(plotlyBundle(fig, { id: 'c1', plotly, height: 300 }).data['text/html'] as string);
    expect(before).toEqual({ drawn: 1, message: [], height: 300 });
    expect(errors).toEqual([]);
  });

  it('plotly.js in an earlier output serves every later chart', async () => {
    const html = [plotlyBundle(fig, { id: 'c1', plotly }), plotlyBundle(fig, { id: 'c2', plotly: null })].map((b) => b.data['text/html']).join('\n');
    const { before } = await show(html);
    expect(before.drawn).toBe(2);
    expect(before.message).toEqual([]);
  });

  it('without plotly.js: says so after a few seconds, keeps waiting, and draws when plotly.js arrives', async () => {
    const { before, after, errors } = await show(plotlyBundle(fig, { id: 'c3', plotly: null }).data['text/html'] as string, { after: 3600, addPlotly: true });
    expect(before.drawn).toBe(0);
    expect(before.message).toEqual([CHART_NO_PLOTLY]);
    expect(before.height).toBeGreaterThan(10); // a visible line, not an empty box
    expect(before.height).toBeLessThan(100); // and not a 460 px blank
    expect(after.drawn).toBe(1);
    expect(after.message).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('a chart id seen before in the page (an old output) does not steal the new chart', async () => {
    const old = plotlyBundle(fig, { id: 'same', plotly: null }).data['text/html'] as string;
    const fresh = plotlyBundle(fig, { id: 'same', plotly }).data['text/html'] as string;
    // Scripts of the old output never ran (untrusted); the new one must draw into its own box.
    const { before } = await show(`<div>${old.replace(/<script[\s\S]*?<\/script>/g, '')}</div>\n${fresh}`);
    expect(before.drawn).toBe(1);
    expect(before.message).toEqual([CHART_NOT_RUN]); // the old box keeps its own message
  });

  it('when plotly.js fails to draw: a one-line message, not an empty 460 px box', async () => {
    const broken = 'window.Plotly = { newPlot: function () { return Promise.reject(new Error("bad figure")); } };';
    const { before, errors } = await show(plotlyBundle(fig, { id: 'c5', plotly: broken }).data['text/html'] as string, { after: 300 });
    expect(before.drawn).toBe(0);
    expect(before.message).toEqual(['Chart not drawn: plotly.js failed (bad figure)']);
    expect(before.height).toBeLessThan(100);
    expect(errors).toEqual([]);
  });

  it('where scripts do not run (an untrusted notebook): the message is there from the start', async () => {
    const { before } = await show(plotlyBundle(fig, { id: 'c4', plotly }).data['text/html'] as string, { javaScriptEnabled: false });
    expect(before.drawn).toBe(0);
    expect(before.message).toEqual([CHART_NOT_RUN]);
    expect(before.height).toBeGreaterThan(10);
  });
});
