/** How a reduction moves its bytes. */
export type ReduceAlgorithm = "local" | "direct" | "ring" | "shm";

/**
 * Payloads up to this many bytes are reduced by direct exchange (everyone sends
 * to everyone, one hop of latency); above it the bandwidth-bound algorithms win.
 */
export const DIRECT_MAX_BYTES = 64 * 1024;

/** What {@link chooseReduceAlgorithm} looks at. All ranks must pass equal values. */
export interface AlgorithmInput {
  /** Bytes of the array being reduced. */
  bytes: number;
  /** World size. */
  size: number;
  /** Whether the shared-memory path is set up (every rank on one host). */
  sharedMemory: boolean;
}

/**
 * Picks the algorithm for an all-reduce or reduce-scatter. Pure and
 * deterministic, so every rank picks the same one for matching calls.
 * - `local`: world size 1, nothing to send;
 * - `direct`: small payloads, latency bound;
 * - `shm`: large payloads on one host, through `/dev/shm` (fewest copies);
 * - `ring`: large payloads over sockets (reduce-scatter + all-gather), each
 *   rank sending `2 (size-1)/size` of the data, so no rank is a bottleneck.
 * @example chooseReduceAlgorithm({ bytes: 64 << 20, size: 4, sharedMemory: false }) // "ring"
 */
export function chooseReduceAlgorithm(input: AlgorithmInput): ReduceAlgorithm {
  if (input.size === 1) return "local";
  if (input.bytes <= DIRECT_MAX_BYTES) return "direct";
  return input.sharedMemory ? "shm" : "ring";
}
