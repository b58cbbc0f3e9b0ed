/**
 * Whether a page's GPU backend would run on a real GPU. Browsers without one (headless
 * Chromium, VMs, blocklisted drivers) still offer WebGL through a software rasterizer, and
 * there tfjs's webgl backend is far slower than wasm: `npm run bench:browser` (headless
 * Chromium 156, SwiftShader) ran the LoRA step 3.9–7.7× (64→256→256→16) and 9.2–14.6×
 * (demo-1, 512→2048→2048→128: 476 ms against 52 ms on a quiet machine) slower on webgl. So
 * the automatic choice skips a software GPU; asking for the backend by name still gets it.
 */

/** Renderer names of software rasterizers: SwiftShader (Chromium), llvmpipe/softpipe (Mesa), Microsoft Basic Render Driver (WARP). */
const SOFTWARE_RENDERER = /swiftshader|llvmpipe|softpipe|software|basic render driver/i;

/** True when `renderer` (WebGL's UNMASKED_RENDERER_WEBGL, or its RENDERER) names a software rasterizer. */
export function isSoftwareRenderer(renderer: string): boolean {
  return SOFTWARE_RENDERER.test(renderer);
}

/** The WebGL renderer's name in this page, or null where there is no WebGL (Node, a worker without OffscreenCanvas). */
export function webglRenderer(): string | null {
  try {
    const canvas: HTMLCanvasElement | OffscreenCanvas | null =
      typeof OffscreenCanvas !== 'undefined' ? new OffscreenCanvas(1, 1) : typeof document !== 'undefined' ? document.createElement('canvas') : null;
    if (canvas === null) return null;
    const gl = (canvas.getContext('webgl2') ?? canvas.getContext('webgl')) as WebGLRenderingContext | null;
    if (gl === null) return null;
    const info = gl.getExtension('WEBGL_debug_renderer_info');
    const name = String(gl.getParameter(info !== null ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
    gl.getExtension('WEBGL_lose_context')?.loseContext(); // browsers cap live contexts; free this one now
    return name;
  } catch {
    return null;
  }
}

interface GpuAdapterLike {
  isFallbackAdapter?: boolean;
  info?: { isFallbackAdapter?: boolean; description?: string; device?: string };
}

/** Why WebGPU would not run on a real GPU in this page, or null when it would. */
export async function webgpuProblem(): Promise<string | null> {
  const gpu = (globalThis as { navigator?: { gpu?: { requestAdapter(): Promise<GpuAdapterLike | null> } } }).navigator?.gpu;
  if (gpu === undefined) return 'this browser has no WebGPU (navigator.gpu)';
  let adapter: GpuAdapterLike | null;
  try {
    adapter = await gpu.requestAdapter();
  } catch (err) {
    return `requestAdapter failed (${(err as Error).message})`;
  }
  if (adapter === null) return 'no WebGPU adapter (no usable GPU)';
  if (adapter.isFallbackAdapter === true || adapter.info?.isFallbackAdapter === true) return 'the WebGPU adapter is a software fallback';
  return null;
}
