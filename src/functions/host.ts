import { ValidationError } from "../errors.js";
import type { ResolvedRemoteOptions } from "./options.js";

/** A remote function as a host sees it: its options and the module that defines it. */
export interface FunctionDefinition {
  readonly options: ResolvedRemoteOptions;
  /** Absolute path of the defining module. */
  readonly module: string;
}

/** Options of one call on a host. */
export interface CallOptions {
  /** Seconds. */
  timeout: number;
  signal?: AbortSignal | undefined;
  /**
   * Called once when the call starts to run: its environment is ready and a
   * runner took it. Optional for a host; without it a call's `delayTime` is 0.
   */
  onStart?: (() => void) | undefined;
}

/** Where remote functions run: this machine (`local`), or a `multirank serve` elsewhere. */
export interface Host {
  readonly kind: "local" | "server";
  /** For messages: `local`, or the server's URL. */
  readonly description: string;
  /** Checks the function's name is free on this host (or already this module's). */
  claim(definition: FunctionDefinition): void;
  /** One call: resolves with the function's result. */
  invoke(definition: FunctionDefinition, payload: unknown, options: CallOptions): Promise<unknown>;
  /** One call of a streaming function: its values as they come. */
  stream(definition: FunctionDefinition, payload: unknown, options: CallOptions): AsyncIterable<unknown>;
  /** Stops what the host keeps warm. */
  close(): Promise<void>;
}

/**
 * Records that `definition`'s module defines its name on a host.
 * @throws {ValidationError} when another module already defined that name there.
 */
export function claimName(owners: Map<string, string>, definition: FunctionDefinition): void {
  const owner = owners.get(definition.options.name);
  if (owner !== undefined && owner !== definition.module) {
    throw new ValidationError(`remote function name "${definition.options.name}" is already defined by ${owner}; names are unique per host`);
  }
  owners.set(definition.options.name, definition.module);
}
