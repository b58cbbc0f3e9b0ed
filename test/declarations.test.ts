import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
          'import { saveAdapter, type SaveAdaptersOptions } from "lora-tfjs/node";',
          'import { showPlot, lossCurvesFigure, type PlotlyFigure } from "lora-tfjs/notebook";',
          'const layer: LoRALinear = new LoRALinear({ inFeatures: 8, outFeatures: 4, rank: 2 });',
          'const n: number = parameterCounts(layer).trainable;',
          'const t: tf.Tensor = layer.predict(tf.ones([1, 8]));',
          // The tensor methods lora-tfjs registers at run time are typed too.
          'const squared: tf.Tensor = t.square().sum();',
          'const figure: PlotlyFigure = lossCurvesFigure([{ name: "a", y: [1, 0.5] }], "loss");',
          'const options: SaveAdaptersOptions = {};',
          'export { n, t, squared, figure, options, LoRAMLP, MLP, train, evaluate, initBackend, saveAdapter, showPlot };',
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

  it("the README's browser snippet type-checks as a bundled app sees the package (exports map, ES module types, DOM)", () => {
    const ts = require('typescript') as typeof import('typescript');
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const m = /<!-- snippet: browser\.ts -->\n```ts\n([\s\S]*?)```/.exec(readme);
    expect(m, 'README.md has the snippet').not.toBeNull();
    const dir = mkdtempSync(join(root, 'notebooks', '.decl-check-'));
    try {
      const file = join(dir, 'browser.ts');
      // The snippet works on "your model"; here it is declared.
      writeFileSync(file, `${m![1]}\ndeclare const model: LoRAMLP;\n`);
      const program = ts.createProgram([file], {
        module: ts.ModuleKind.ESNext,
        moduleResolution: ts.ModuleResolutionKind.Bundler,
        target: ts.ScriptTarget.ES2022,
        lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
        types: [],
        strict: true,
        skipLibCheck: true,
        noEmit: true,
      });
      const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => `${d.file?.fileName ?? ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
      expect(diagnostics).toEqual([]);
      // Resolved through the exports map's "import" condition: the ES module build's types.
      expect(program.getSourceFiles().some((f) => f.fileName.endsWith('/dist/esm/index.d.ts'))).toBe(true);
      expect(program.getSourceFiles().some((f) => f.fileName.includes('/dist/cjs/'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('loads through require() as CommonJS, as tslab does', () => {
    const out = execFileSync(
      process.execPath,
      ['-e', 'const l = require("lora-tfjs"); console.log(typeof l.LoRALinear, typeof l.initBackend, typeof l.tf.matMul, typeof require("lora-tfjs/node").saveAdapter, typeof require("lora-tfjs/notebook").showPlot)'],
      { cwd: join(root, 'notebooks'), encoding: 'utf8' },
    );
    expect(out.trim()).toBe('function function function function function');
  });
});
