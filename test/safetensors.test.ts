import { describe, expect, it } from 'vitest';
import { MAX_HEADER_BYTES, decodeSafetensors, encodeSafetensors } from '../src/index.js';
import { bfloat16ToFloat, floatToBfloat16, floatToHalf, halfToFloat } from '../src/formats/safetensors.js';
import { rawFile } from './helpers.js';

const f32 = (...v: number[]) => new Uint8Array(new Float32Array(v).buffer);

describe('safetensors codec', () => {
  it('round-trips tensors and metadata, 8-byte aligned, keys sorted', () => {
    const bytes = encodeSafetensors(
      { b: { shape: [2], data: new Float32Array([3, 4]) }, a: { shape: [1, 2], data: new Float32Array([1, 2]) } },
      { format: 'pt' },
    );
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + headerLength) % 8).toBe(0);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
    expect(header).toEqual({
      __metadata__: { format: 'pt' },
      a: { dtype: 'F32', shape: [1, 2], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
    });
    const back = decodeSafetensors(bytes);
    expect(back.metadata).toEqual({ format: 'pt' });
    expect(Array.from(back.tensors.get('a')!.data)).toEqual([1, 2]);
    expect(back.tensors.get('b')!.shape).toEqual([2]);
    expect(() => encodeSafetensors({ x: { shape: [3], data: new Float32Array(2) } })).toThrow('tensor "x" has 2 values but shape [3] needs 3');
  });

  it('rounds float32 to F16 and BF16 to nearest, ties to even (as PyTorch), with overflow to ±inf', () => {
    // Exactly halfway between two halves: the even mantissa wins.
    expect(floatToHalf(1 + 2 ** -11)).toBe(0x3c00); // between 1 and 1 + 2⁻¹⁰: 1 (even)
    expect(floatToHalf(1 + 3 * 2 ** -11)).toBe(0x3c02); // between 1 + 2⁻¹⁰ and 1 + 2⁻⁹: the even one
    expect(floatToHalf(2049)).toBe(0x6800); // 2048 and 2050 are neighbours: 2048 (even)
    expect(floatToHalf(2051)).toBe(0x6802); // 2050 and 2052: 2052 (even)
    expect(floatToHalf(2 ** -25)).toBe(0x0000); // half the smallest subnormal: 0 (even)
    expect(floatToHalf(3 * 2 ** -25)).toBe(0x0002); // 1.5 subnormal steps: 2 steps (even)
    expect(floatToHalf(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01); // just above the tie: up
    expect(floatToHalf(65504)).toBe(0x7bff);
    expect(floatToHalf(65520)).toBe(0x7c00); // rounds past the largest half: inf
    expect(floatToHalf(-Infinity)).toBe(0xfc00);
    expect(halfToFloat(floatToHalf(0.1))).toBeCloseTo(0.0999755859375, 12);
    expect(floatToBfloat16(1 + 2 ** -8)).toBe(0x3f80); // tie: even
    expect(floatToBfloat16(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(Number.isNaN(bfloat16ToFloat(floatToBfloat16(NaN)))).toBe(true);
  });

  it('widens F16 and BF16 (and F64) to float32', () => {
    expect(halfToFloat(0x3c00)).toBe(1);
    expect(halfToFloat(0xc000)).toBe(-2);
    expect(halfToFloat(0x0001)).toBeCloseTo(5.96e-8, 10);
    expect(bfloat16ToFloat(0x3f80)).toBe(1);
    expect(bfloat16ToFloat(0x4049)).toBeCloseTo(3.140625, 6);
    const half = new Uint8Array(new Uint16Array([0x3c00, 0x3800, 0xbc00, 0x0000]).buffer);
    const bf = new Uint8Array(new Uint16Array([0x3f80, 0xc000]).buffer);
    const f64 = new Uint8Array(new Float64Array([0.25]).buffer);
    const data = new Uint8Array([...half, ...bf, ...f64]);
    const out = decodeSafetensors(
      rawFile(
        {
          h: { dtype: 'F16', shape: [2, 2], data_offsets: [0, 8] },
          b: { dtype: 'BF16', shape: [2], data_offsets: [8, 12] },
          d: { dtype: 'F64', shape: [1], data_offsets: [12, 20] },
        },
        data,
      ),
    );
    expect(Array.from(out.tensors.get('h')!.data)).toEqual([1, 0.5, -1, 0]);
    expect(Array.from(out.tensors.get('b')!.data)).toEqual([1, -2]);
    expect(Array.from(out.tensors.get('d')!.data)).toEqual([0.25]);
  });

  describe('rejects untrusted input with a message saying what is wrong', () => {
    const ok = { t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
    const cases: Array<[string, Uint8Array, RegExp]> = [
      ['a file under 8 bytes', new Uint8Array(5), /file is 5 bytes; a safetensors file has at least an 8-byte header length/],
      ['a header length over 100 MB', rawFile(ok, f32(1, 2), BigInt(MAX_HEADER_BYTES + 1)), /header length 100000001 exceeds the 100000000-byte limit/],
      ['a header length past the end', rawFile(ok, f32(1, 2), 5000n), /header length 5000 runs past the end of the file/],
      ['a header that is not UTF-8', (() => { const f = rawFile('{"a":1}'); f[9] = 0xff; return f; })(), /header is not valid UTF-8/],
      ['a header that is not JSON', rawFile('{not json', f32()), /header is not valid JSON/],
      ['a header that is not an object', rawFile('[1,2]'), /header is not a JSON object/],
      ['an unknown dtype', rawFile({ t: { dtype: 'F33', shape: [2], data_offsets: [0, 8] } }, f32(1, 2)), /tensor "t" has unknown dtype "F33"/],
      ['a shape whose size does not match its offsets', rawFile({ t: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32(1, 2)), /tensor "t": shape \[3\] of F32 needs 12 bytes but its offsets \[0, 8\] span 8/],
      ['a negative or fractional dimension', rawFile({ t: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, f32(1, 2)), /tensor "t" has an invalid shape \[-2\]/],
      ['reversed offsets', rawFile({ t: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, f32(1, 2)), /invalid data_offsets \[8,0\]/],
      [
        'overlapping offsets',
        rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, f32(1, 2, 3)),
        /tensor "b" overlaps the previous tensor/,
      ],
      [
        'a gap between tensors',
        rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, f32(1, 2, 3)),
        /gap before tensor "b"/,
      ],
      ['data that does not end at the end of the file', rawFile(ok, f32(1, 2, 3)), /the data ends at byte 8 of the data section but the file has 12 bytes of data/],
      ['a tensor past the end of the data', rawFile({ t: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, f32(1, 2)), /tensor "t" ends at 16, past the end of the data \(8 bytes\)/],
      ['an integer tensor', rawFile({ t: { dtype: 'I32', shape: [2], data_offsets: [0, 8] } }, f32(1, 2)), /tensor "t" has dtype I32; only F32, F16, BF16 and F64 tensors can be loaded/],
      ['non-string metadata', rawFile({ __metadata__: { format: 1 }, ...ok }, f32(1, 2)), /__metadata__ value "format" is not a string/],
    ];
    for (const [what, bytes, message] of cases) {
      it(what, () => {
        expect(() => decodeSafetensors(bytes)).toThrow(message);
      });
    }
  });
});
