import { DistributedWorker, type CallContext, type RawImage } from "multirank";

export interface ImageStreamInput {
  /** Refinement steps streamed before the final image. @default 6 */
  steps?: number;
  /** Image side in pixels. @default 512 */
  size?: number;
  /** Where to look in the Mandelbrot set; changes the picture. @default 0 */
  seed?: number;
}

/**
 * Renders a Mandelbrot view, refined step by step like a diffusion model's
 * previews: each step adds iterations. Rows are split across ranks and put
 * together with `allGather`, so a bigger world renders each frame faster.
 * Frames stream as JPEG (quality 60); the final image returns at quality 95.
 */
export default class ImageStream extends DistributedWorker<ImageStreamInput, { image: RawImage; steps: number }> {
  override async call(input: ImageStreamInput, ctx: CallContext): Promise<{ image: RawImage; steps: number }> {
    const steps = Math.max(1, Math.min(50, Math.floor(input.steps ?? 6)));
    const size = Math.max(16, Math.min(2048, Math.floor(input.size ?? 512)));
    const view = viewFor(input.seed ?? 0);
    let image: RawImage | undefined;
    for (let step = 1; step <= steps; step++) {
      ctx.signal.throwIfAborted();
      const iterations = 8 * 2 ** Math.min(step, 7);
      image = await this.#render(size, iterations, view, ctx.signal);
      if (ctx.streaming && step < steps) await this.addStreamingResult({ image, step, steps });
    }
    return { image: image!, steps };
  }

  async #render(size: number, iterations: number, view: View, signal: AbortSignal): Promise<RawImage> {
    const rowsPerRank = Math.ceil(size / this.worldSize);
    const first = this.rank * rowsPerRank;
    const last = Math.min(size, first + rowsPerRank);
    const stripe = new Uint8Array(Math.max(0, last - first) * size * 3);
    renderRows(stripe, size, first, last, iterations, view);
    const stripes = this.worldSize === 1 ? [stripe] : await this.group.allGather(stripe, { signal });
    const pixels = new Uint8Array(size * size * 3);
    let offset = 0;
    for (const part of stripes) {
      pixels.set(part, offset);
      offset += part.length;
    }
    return { width: size, height: size, channels: 3, pixels };
  }
}

interface View {
  cx: number;
  cy: number;
  scale: number;
}

function viewFor(seed: number): View {
  const spots: View[] = [
    { cx: -0.75, cy: 0, scale: 3 },
    { cx: -0.7453, cy: 0.1127, scale: 0.01 },
    { cx: -1.25066, cy: 0.02012, scale: 0.02 },
    { cx: -0.1011, cy: 0.9563, scale: 0.05 },
  ];
  return spots[Math.abs(Math.floor(seed)) % spots.length]!;
}

function renderRows(out: Uint8Array, size: number, first: number, last: number, maxIter: number, view: View): void {
  let p = 0;
  for (let y = first; y < last; y++) {
    const ci = view.cy + (y / size - 0.5) * view.scale;
    for (let x = 0; x < size; x++) {
      const cr = view.cx + (x / size - 0.5) * view.scale;
      let zr = 0;
      let zi = 0;
      let n = 0;
      while (n < maxIter && zr * zr + zi * zi < 4) {
        const t = zr * zr - zi * zi + cr;
        zi = 2 * zr * zi + ci;
        zr = t;
        n++;
      }
      const v = n === maxIter ? 0 : n / maxIter;
      out[p++] = Math.round(255 * Math.sqrt(v));
      out[p++] = Math.round(255 * v * v);
      out[p++] = Math.round(255 * (0.5 + 0.5 * Math.sin(6.28 * v)));
    }
  }
}
