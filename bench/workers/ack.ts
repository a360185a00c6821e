import { DistributedWorker } from "multirank";

/** Acknowledges a payload with its size, so a benchmark measures one way only. */
export default class Ack extends DistributedWorker<{ data: Uint8Array }, { bytes: number; rank: number }> {
  override call(input: { data: Uint8Array }): { bytes: number; rank: number } {
    return { bytes: input.data.length, rank: this.rank };
  }
}
