/**
 * Errors of the data sync client. A server's refusal keeps the HTTP status and
 * the server's own code so callers can branch on either.
 */
import { MultirankError, type MultirankErrorOptions } from "../errors.js";

/** A server refused or failed a `syncDir` step (plan or upload), or could not be reached. */
export class DataSyncError extends MultirankError {
  static override readonly brand = "MULTIRANK_ERR_DATA_SYNC";
  /** The HTTP status the server answered with; undefined when no answer came. */
  readonly status?: number;
  /** The server's error code (`MULTIRANK_ERR_GATEWAY_UNAUTHORIZED`, ...), when it sent one. */
  readonly remoteCode?: string;
  constructor(message: string, options: MultirankErrorOptions & { status?: number; remoteCode?: string } = {}) {
    super(DataSyncError.brand, message, options);
    if (options.status !== undefined) this.status = options.status;
    if (options.remoteCode !== undefined) this.remoteCode = options.remoteCode;
  }
}
