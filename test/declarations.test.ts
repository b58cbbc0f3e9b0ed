import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const root = join(import.meta.dirname, '..');

describe('the built package', () => {
  it('type-checks under tslab\'s TypeScript 5.0.4 (moduleResolution node10), imported by name', () => {
    const ts = require('@tslab/typescript-for-tslab') as typeof import('typescript');
    expect(ts.version).toBe('5.0.4');
    const dir = mkdtempSync(join(root, 'notebooks', '.decl-check-'));
    try {
      const file = join(dir, 'cell.ts');
      writeFileSync(
        file,
        [
          'import { LoRALinear, LoRAMLP, MLP, train, evaluate, initBackend, parameterCounts, tf } from "lora-tfjs";',
          'const layer: LoRALinear = new LoRALinear({ inFeatures: 8, outFeatures: 4, rank: 2 });',
          'const n: number = parameterCounts(layer).trainable;',
          'const t: tf.Tensor = layer.predict(tf.ones([1, 8]));',
          'export { n, t, LoRAMLP, MLP, train, evaluate, initBackend };',
        ].join('\n'),
      );
      // The options tslab 1.0.22 compiles cells with (its converter.ts).
      const program = ts.createProgram([file], {
        module: ts.ModuleKind.ESNext,
        moduleResolution: ts.ModuleResolutionKind.Node10,
        esModuleInterop: true,
        target: ts.ScriptTarget.ES2022,
        lib: ['lib.es2022.d.ts'],
        declaration: true,
        skipLibCheck: true,
        rootDir: dir,
        noEmit: true,
      });
      const messages = (ds: readonly import('typescript').Diagnostic[]) =>
        ds.map((d) => `${d.file?.fileName ?? ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
      expect(messages(ts.getPreEmitDiagnostics(program))).toEqual([]);
      // skipLibCheck hides type errors in .d.ts files, not syntax: every emitted declaration must parse.
      const ours = program.getSourceFiles().filter((f) => f.fileName.includes('/dist/') && !f.fileName.includes('node_modules'));
      expect(ours.length).toBeGreaterThan(10);
      expect(messages(ours.flatMap((f) => program.getSyntacticDiagnostics(f)))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('loads through require() as CommonJS, as tslab does', () => {
    const out = execFileSync(
      process.execPath,
      ['-e', 'const l = require("lora-tfjs"); console.log(typeof l.LoRALinear, typeof l.initBackend, typeof l.tf.matMul)'],
      { cwd: join(root, 'notebooks'), encoding: 'utf8' },
    );
    expect(out.trim()).toBe('function function function');
  });
});
