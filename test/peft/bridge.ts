import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/**
 * The Node side of the PEFT interop tests: one Python process (test/peft/bridge.py) with
 * torch, peft and safetensors, spoken to in JSON lines. The suite never skips: without
 * that Python it fails, saying how to create it.
 */

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The Python that has torch, peft and safetensors: $LORA_PEFT_PYTHON, else the project venv. */
export function peftPython(): string {
  const candidate = process.env.LORA_PEFT_PYTHON ?? join(root, '.venv', 'bin', 'python');
  const fix = 'create it with `npm run setup:python` (a project-local .venv with torch, peft and safetensors from the configured package index), or point LORA_PEFT_PYTHON at a Python that has them';
  if (!existsSync(candidate)) throw new Error(`The PEFT interop suite needs ${candidate}, which does not exist: ${fix}`);
  const probe = spawnSync(candidate, ['-c', 'import torch, peft, safetensors; print(peft.__version__)'], { encoding: 'utf8', timeout: 120_000 });
  if (probe.status !== 0) throw new Error(`The PEFT interop suite needs torch, peft and safetensors in ${candidate} (import failed: ${(probe.stderr || probe.error?.message || '').trim().split('\n').pop()}): ${fix}`);
  return candidate;
}

type Reply = Record<string, unknown> & { ok: boolean; error?: string; trace?: string };

/** A running bridge process. */
export class PeftBridge {
  private readonly child: ChildProcess;
  private readonly waiting: Array<{ resolve: (r: Reply) => void; reject: (e: Error) => void }> = [];
  private stderr = '';
  private exited: Error | null = null;

  constructor(python = peftPython()) {
    this.child = spawn(python, [join(root, 'test', 'peft', 'bridge.py')], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, PYTHONUNBUFFERED: '1' } });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const next = this.waiting.shift();
      if (next === undefined) return;
      try {
        next.resolve(JSON.parse(line) as Reply);
      } catch (err) {
        next.reject(new Error(`bridge sent a line that is not JSON: ${line.slice(0, 200)} (${(err as Error).message})`));
      }
    });
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-20_000);
    });
    this.child.on('exit', (code, signal) => {
      this.exited = new Error(`the PEFT bridge exited (${code ?? signal}); its stderr ended with:\n${this.stderr.slice(-4000)}`);
      for (const w of this.waiting.splice(0)) w.reject(this.exited);
    });
  }

  /** Send one request; resolves to the reply, rejects with Python's error and traceback. */
  async call<T = Record<string, unknown>>(op: string, request: Record<string, unknown> = {}): Promise<T> {
    if (this.exited !== null) throw this.exited;
    const reply = await new Promise<Reply>((resolvePromise, reject) => {
      this.waiting.push({ resolve: resolvePromise, reject });
      this.child.stdin!.write(`${JSON.stringify({ op, ...request })}\n`);
    });
    if (!reply.ok) throw new Error(`PEFT bridge ${op}: ${reply.error}\n${reply.trace ?? ''}`);
    return reply as unknown as T;
  }

  close(): void {
    this.child.stdin?.end();
    this.child.kill();
  }
}
