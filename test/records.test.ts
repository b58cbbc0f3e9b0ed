import { createRequire } from 'node:module';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { initBackend } from '../src/index.js';
import { record, recordBundle, type RecordedValue } from '../src/notebook/index.js';
import { RECORD_MIME } from '../src/notebook/display.js';
import { recordTraces, recordsOf } from '../scripts/lib/notebook-run.js';

type Output = Record<string, unknown>;
const nb = (...cells: Output[][]) => ({ cells: cells.map((outputs) => ({ cell_type: 'code', source: '', outputs })) });
const entry = (name: string, value = 1): RecordedValue => ({ name, value, rtol: 0, atol: 0, backend: 'wasm' });
const hidden = (name: string, value = 1): Output => ({ output_type: 'display_data', ...recordBundle(entry(name, value)) });
const stdout = (text: string): Output => ({ output_type: 'stream', name: 'stdout', text });

/** Stand in for a running tslab kernel: `displayBundle` finds its writer in the require cache. */
function fakeKernel(): { sent: Array<Record<string, unknown>>; remove: () => void } {
  const cache = createRequire(join(process.cwd(), 'index.js')).cache;
  const file = join(process.cwd(), 'node_modules', 'tslab', 'dist', 'jupyter.js');
  const previous = cache[file];
  const sent: Array<Record<string, unknown>> = [];
  cache[file] = { exports: { lastWriteDisplayData: (content: Record<string, unknown>) => sent.push(content) } } as unknown as NodeModule;
  return {
    sent,
    remove: () => {
      if (previous === undefined) delete cache[file];
      else cache[file] = previous;
    },
  };
}

describe('record: a value the runner checks and readers never see', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });
  afterEach(() => vi.restoreAllMocks());

  it('its display message has no mime type at all: the value is in the metadata only', () => {
    const bundle = recordBundle(entry('x', 1.5));
    expect(bundle.data).toEqual({});
    expect(bundle.data['text/plain']).toBeUndefined();
    expect(bundle.data['text/html']).toBeUndefined();
    expect(bundle.metadata).toEqual({ [RECORD_MIME]: entry('x', 1.5) });
  });

  it('in a kernel, sends that message and prints nothing; outside one, prints the stored value', () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    const kernel = fakeKernel();
    try {
      const before = tf.memory().numTensors;
      record('loss', 0.1 + 0.2, { rtol: 1e-3 });
      expect(tf.memory().numTensors).toBe(before);
      expect(kernel.sent).toEqual([{ data: {}, metadata: { [RECORD_MIME]: { name: 'loss', value: 0.30000000000000004, rtol: 1e-3, atol: 0, backend: tf.getBackend() } }, transient: {} }]);
      expect(log).not.toHaveBeenCalled();
    } finally {
      kernel.remove();
    }
    record('loss', 0.5);
    expect(log.mock.calls.map((c) => c[0])).toEqual(['recorded loss = 0.5 (exact)']);
  });

  it('recordsOf reads the values from the metadata, in order, and ignores every other output', () => {
    const book = nb(
      [stdout('a\n'), hidden('first', 1), { output_type: 'display_data', data: { 'text/plain': 'recorded x = 1 (exact)' }, metadata: {} }],
      [],
      [
        // The earlier, visible form (the value in data) is not read: a regression to it fails the goldens.
        { output_type: 'display_data', data: { [RECORD_MIME]: entry('old') }, metadata: {} },
        { output_type: 'display_data', data: { 'application/vnd.plotly.v1+json': {}, 'text/html': '<div></div>' }, metadata: {} },
        { output_type: 'execute_result', data: { 'text/plain': '1' }, metadata: { [RECORD_MIME]: entry('not a display') }, execution_count: 1 },
        hidden('second', 2),
      ],
    );
    expect(recordsOf(book)).toEqual([entry('first', 1), entry('second', 2)]);
    expect(recordsOf(nb([stdout('x\n')]))).toEqual([]);
  });

  it('recordTraces names cells where a record would still show: alone in its cell, or splitting printed text', () => {
    const book = nb(
      [stdout('a\n'), stdout('b\n'), hidden('after')], // fine: after the printing
      [hidden('before'), stdout('a\n')], // fine: before it
      [stdout('a\n'), hidden('split'), hidden('split2'), stdout('b\n')],
      [hidden('alone')],
      [stdout('a\n'), hidden('between_kinds'), { output_type: 'stream', name: 'stderr', text: 'w\n' }], // two blocks anyway
      [{ output_type: 'display_data', data: { 'text/html': '<table></table>' }, metadata: {} }, hidden('after_table'), stdout('a\n')],
    );
    expect(recordTraces(book)).toEqual([
      'cell 2: record "split" between two stdout outputs (two blocks in the classic notebook)',
      'cell 2: record "split2" between two stdout outputs (two blocks in the classic notebook)',
      'cell 3: its only outputs are records (an empty output area in JupyterLab)',
    ]);
  });
});
