import { createRequire } from 'node:module';
import { join } from 'node:path';
import { moduleFile } from '../util/module-url.js';

/**
 * What lora-tfjs needs from the running tslab kernel, in one place because it reaches into
 * tslab's internals (pinned: tslab 1.0.x, `dist/jupyter.js`; test/tslab-internals.test.ts
 * fails loudly when they change):
 *  - the display writer of the request being executed (`lastWriteDisplayData`), because
 *    tslab's public `display.raw` sends only one mime type, as a string;
 *  - the Jupyter client session of that request (its `header.session`), because a chart's
 *    HTML can rely on plotly.js already being in the page only for the page that received
 *    it: a reload, or a second browser tab, is a new client session.
 */

/** The content of a display message as tslab's writer takes it. */
export type WriteDisplay = (content: { data: Record<string, unknown>; metadata: Record<string, unknown>; transient?: Record<string, unknown> }, update: boolean) => void;

interface JupyterModule {
  lastWriteDisplayData?: unknown;
  ZmqServer?: { prototype: Record<string | symbol, unknown> };
  JupyterHandlerImpl?: { prototype: Record<string | symbol, unknown> };
}

/**
 * A `require` resolving from `from` (a file path), else from this package: the CommonJS build's
 * own (what a kernel loads), or in the ES module build one made at this module's file.
 */
export function nodeRequire(from?: string): NodeRequire {
  if (from !== undefined) return createRequire(from);
  return typeof require === 'function' ? require : createRequire(moduleFile() ?? join(process.cwd(), 'index.js'));
}

/** tslab's `dist/jupyter.js` as loaded by this process (the kernel), or null outside a kernel. */
export function tslabJupyterModule(cache: Record<string, { exports?: unknown } | undefined> = nodeRequire().cache ?? {}): JupyterModule | null {
  for (const [file, mod] of Object.entries(cache)) {
    if (/[\\/]tslab[\\/]dist[\\/]jupyter\.js$/.test(file) && mod?.exports !== undefined) return mod.exports as JupyterModule;
  }
  return null;
}

/** The running tslab kernel's display writer, or null outside a kernel. */
export function kernelWriter(): WriteDisplay | null {
  const writer = tslabJupyterModule()?.lastWriteDisplayData;
  return typeof writer === 'function' ? (writer as WriteDisplay) : null;
}

const PATCHED = Symbol.for('lora-tfjs.client-session');
let executing: string | null = null;

/**
 * Start following which client session each execute request comes from. Two wrappers:
 * the server's `handleExecute(sock, msg)` sees the message header when a request arrives
 * and remembers its session by the request content; the handler's
 * `handleExecuteImpl(req, …)` runs when the (queued) request is executed and makes that
 * session current. Returns false when tslab's internals are not the expected ones.
 */
export function followClientSessions(jupyter: JupyterModule | null = tslabJupyterModule()): boolean {
  const server = jupyter?.ZmqServer?.prototype;
  const handler = jupyter?.JupyterHandlerImpl?.prototype;
  if (server === undefined || handler === undefined) return false;
  if (server[PATCHED] === true && handler[PATCHED] === true) return true;
  const arrive = server.handleExecute;
  const run = handler.handleExecuteImpl;
  if (typeof arrive !== 'function' || arrive.length !== 2 || typeof run !== 'function' || run.length !== 3) return false;
  const sessions = new WeakMap<object, string>();
  server.handleExecute = function (this: unknown, sock: unknown, msg: { header?: { session?: unknown }; content?: unknown }) {
    const session = msg?.header?.session;
    if (typeof session === 'string' && msg.content !== null && typeof msg.content === 'object') sessions.set(msg.content, session);
    return (arrive as (...a: unknown[]) => unknown).call(this, sock, msg);
  };
  handler.handleExecuteImpl = function (this: unknown, req: unknown, ...rest: unknown[]) {
    executing = req !== null && typeof req === 'object' ? (sessions.get(req) ?? null) : null;
    return (run as (...a: unknown[]) => unknown).call(this, req, ...rest);
  };
  server[PATCHED] = true;
  handler[PATCHED] = true;
  return true;
}

/**
 * The client session of the request being executed: a string once {@link followClientSessions}
 * is in place, null before (the request that loaded lora-tfjs) or outside a kernel.
 */
export function executingClientSession(): string | null {
  return executing;
}
