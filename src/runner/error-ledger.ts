import { join } from "node:path";
import { RankError, type MultirankError } from "../errors.js";
import { readErrorRecords } from "../transport/error-file.js";

/**
 * Every error a runner keeps for `gatherErrors()`: what the ranks appended
 * to their error files (setup, call and teardown errors; read from the files,
 * so a rank that died while sending is still heard), and what the runner saw
 * itself (rank exits, hangs, failed keepalives).
 */
export class ErrorLedger {
  #runnerErrors: MultirankError[] = [];
  #harvested: MultirankError[] = [];
  /** Records already read, by error file: each record is harvested once. */
  readonly #errorCursor = new Map<string, number>();

  /** Keeps an error the runner saw itself (not one a rank wrote to its file). */
  record(error: MultirankError): void {
    this.#runnerErrors.push(error);
  }

  /** The last error the runner saw itself: the cause given when a failed runner is used. */
  get lastRecorded(): MultirankError | undefined {
    return this.#runnerErrors.at(-1);
  }

  /** The ledger of one session, whose rank error files live in `runDir`. */
  openSession(runDir: string): SessionErrors {
    return new SessionErrors(this, runDir);
  }

  /** Reads the records appended to `files` since the last read. */
  harvestErrorFiles(files: readonly string[]): void {
    for (const file of files) {
      const records = readErrorRecords(file);
      const seen = this.#errorCursor.get(file) ?? 0;
      for (const record of records.slice(seen)) this.#harvested.push(new RankError(record.error, record.rank, record.phase));
      this.#errorCursor.set(file, records.length);
    }
  }

  /** Forgets where reading of `files` stopped: they are about to be removed. */
  forget(files: readonly string[]): void {
    for (const file of files) this.#errorCursor.delete(file);
  }

  /** Every error kept since the last call, the ranks' first; clears the list. */
  gatherErrors(): MultirankError[] {
    const errors = [...this.#harvested, ...this.#runnerErrors];
    this.#harvested = [];
    this.#runnerErrors = [];
    return errors;
  }
}

/**
 * One session's side of the {@link ErrorLedger}: each rank's error file, and
 * the error a rank reported as fatal just before it died (the cause of its
 * exit error).
 */
export class SessionErrors {
  readonly #ledger: ErrorLedger;
  readonly #runDir: string;
  readonly #files: string[] = [];
  readonly #fatal = new Map<number, RankError>();

  constructor(ledger: ErrorLedger, runDir: string) {
    this.#ledger = ledger;
    this.#runDir = runDir;
  }

  /** The file `rank` appends its errors to, from now on harvested with the others. */
  fileFor(rank: number): string {
    const file = join(this.#runDir, `rank-${rank}.errors.jsonl`);
    this.#files.push(file);
    return file;
  }

  /** `rank` reported an error that ends its process. */
  setFatal(rank: number, error: RankError): void {
    this.#fatal.set(rank, error);
  }

  /** What `rank` reported as fatal, if anything. */
  fatal(rank: number): RankError | undefined {
    return this.#fatal.get(rank);
  }

  /** Reads what the ranks appended to their files since the last read. */
  harvest(): void {
    this.#ledger.harvestErrorFiles(this.#files);
  }

  /** Harvests a last time and forgets the files: the run directory is about to go. */
  release(): void {
    this.harvest();
    this.#ledger.forget(this.#files);
  }
}
