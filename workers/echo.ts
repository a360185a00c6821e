import { DistributedWorker } from "multirank";

/**
 * Returns its input unchanged, from rank 0. The smallest useful worker: it
 * measures the runner's own overhead, and every rank still runs each request.
 */
export default class Echo extends DistributedWorker<unknown, unknown> {
  override call(input: unknown): unknown {
    return input;
  }
}
