import { EventEmitter } from "node:events";

/**
 * The lifecycle part of a runner for gateway tests that need no processes:
 * start makes it ready, stop and terminate stop it. Subclasses add `invoke`
 * and `stream`.
 */
export class FakeRunnerLifecycle extends EventEmitter {
  state = "idle";
  async start(): Promise<void> {
    this.state = "ready";
  }
  async stop(): Promise<void> {
    this.state = "stopped";
  }
  async terminate(): Promise<void> {
    this.state = "stopped";
  }
}
