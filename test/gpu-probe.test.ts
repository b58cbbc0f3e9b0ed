import { describe, expect, it } from 'vitest';
import { isSoftwareRenderer, webglRenderer, webgpuProblem } from '../src/runtime/gpu-probe.js';

describe('the GPU probe behind the automatic backend choice in a page', () => {
  it('knows software rasterizers by their renderer names, and real GPUs as real', () => {
    for (const name of [
      'ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero) (0x0000C0DE)), SwiftShader driver)', // headless Chromium here
      'Google SwiftShader',
      'llvmpipe (LLVM 15.0.6, 256 bits)',
      'softpipe',
      'ANGLE (Microsoft, Microsoft Basic Render Driver Direct3D11 vs_5_0 ps_5_0)',
      'Mesa OffScreen software',
    ]) expect(isSoftwareRenderer(name), name).toBe(true);
    for (const name of [
      'ANGLE (NVIDIA, NVIDIA GeForce RTX 3060 Direct3D11 vs_5_0 ps_5_0, D3D11)',
      'ANGLE (Apple, ANGLE Metal Renderer: Apple M2, Unspecified Version)',
      'Mesa Intel(R) UHD Graphics 620 (KBL GT2)',
      'AMD Radeon Pro 5500M OpenGL Engine',
      'Adreno (TM) 640',
      'Mali-G78',
    ]) expect(isSoftwareRenderer(name), name).toBe(false);
  });

  it('finds no WebGL and no WebGPU in Node, without throwing', async () => {
    expect(webglRenderer()).toBeNull();
    expect(await webgpuProblem()).toBe('this browser has no WebGPU (navigator.gpu)');
  });
});
