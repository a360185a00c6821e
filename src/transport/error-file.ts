import { appendFileSync, readFileSync } from "node:fs";
import type { RankPhase, SerializedError } from "../errors.js";

/** One line of a rank's error file. */
export interface ErrorRecord {
  rank: number;
  phase: RankPhase;
  requestId?: number;
  error: SerializedError;
  time: number;
}

/**
 * Appends a record synchronously: it must be on disk before the rank tries
 * the socket, so that a crash in between still leaves the error for the runner.
 */
export function appendErrorRecord(path: string | undefined, record: ErrorRecord): void {
  if (!path) return;
  try {
    appendFileSync(path, `${JSON.stringify(record)}\n`);
  } catch {
    // The file is a second channel; failing to write it must not hide the error itself.
  }
}

/** Reads every complete record of an error file; a torn last line is skipped. */
export function readErrorRecords(path: string): ErrorRecord[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return [];
  }
  const records: ErrorRecord[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    try {
      records.push(JSON.parse(line) as ErrorRecord);
    } catch {
      // A rank killed mid-write leaves half a line; the rest is still good.
    }
  }
  return records;
}
