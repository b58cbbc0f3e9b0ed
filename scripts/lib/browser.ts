import { readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, resolve, sep } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { ensureChromium } from './system.js';

/** Headless Chromium and a static server for it: the tests' browser checks and `npm run bench:browser`. */

/** Debian's Chromium, headless, with its background network traffic switched off. */
export async function launchChromium(log: (line: string) => void = console.log): Promise<Browser> {
  return chromium.launch({
    executablePath: await ensureChromium((line) => log(line)),
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png', '.svg': 'image/svg+xml', '.wasm': 'application/wasm', '.json': 'application/json', '.mjs': 'text/javascript' };

/** Serve a folder on 127.0.0.1: its files and nothing else (404). */
export async function serveFolder(dir: string): Promise<{ origin: string; close: () => Promise<void> }> {
  const root = resolve(dir);
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '') || 'index.html';
    const file = resolve(root, path);
    try {
      if (!file.startsWith(root + sep) || !statSync(file).isFile()) throw new Error('not in the folder');
      const type = TYPES[extname(file)] ?? 'application/octet-stream';
      // A charset only on text: Chromium compiles wasm as it streams in only when the type is exactly application/wasm.
      res.writeHead(200, { 'content-type': /^text\/|json|svg/.test(type) ? `${type}; charset=utf-8` : type }).end(readFileSync(file));
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  const origin = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
  return { origin, close: () => new Promise<void>((r) => server.close(() => r())) };
}

