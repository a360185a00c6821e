import { DistributedWorker, type CallContext } from "multirank";

/** Streams `frames` raw RGB frames (encoded to JPEG in this rank by the runtime). */
export default class Frames extends DistributedWorker<{ frames: number; size: number }, { frames: number }> {
  override async call(input: { frames: number; size: number }, ctx: CallContext): Promise<{ frames: number }> {
    const { size } = input;
    const pixels = new Uint8Array(size * size * 3);
    for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 31 + 17 + ((i / 1536) | 0)) & 255;
    // Two frames in flight: frame f+1 is encoding while frame f is on the wire.
    let previous: Promise<void> = Promise.resolve();
    for (let f = 0; f < input.frames && !ctx.signal.aborted; f++) {
      const sent = this.addStreamingResult({ image: { width: size, height: size, channels: 3, pixels }, frame: f });
      await previous;
      previous = sent;
    }
    await previous;
    return { frames: input.frames };
  }
}
