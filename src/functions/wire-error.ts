/** A multirank server's error answer (a {@link WireError} body) as the client's error. */
import { HostError, RemoteExecutionError } from "../errors.js";
import type { WireError } from "./wire.js";

/** What {@link errorFromAnswer} knows about the answer. */
export interface Answer {
  /** The server's URL. */
  url: string;
  status: number;
  /** The body as sent: a WireError's JSON, or anything else a proxy answered. */
  text: string;
  /** What was asked, for the message (`sum-numbers`, `the deployment`). */
  what: string;
  /** Set for a function's call: a `MULTIRANK_ERR_REMOTE` answer then becomes a RemoteExecutionError. */
  functionName?: string;
}

/** The error a client throws for a server's error answer: the server's code and class survive (`HostError`). */
export function errorFromAnswer(answer: Answer): Error {
  const body = parseWireError(answer.text);
  if (answer.functionName !== undefined && body?.code === "MULTIRANK_ERR_REMOTE" && body.remote) {
    const { name, message, stack, rank } = body.remote;
    return new RemoteExecutionError({ functionName: answer.functionName, host: answer.url, remoteName: name, remoteMessage: message, remoteStack: stack, rank });
  }
  const reason = typeof body?.error === "string" ? body.error : `HTTP ${answer.status}${answer.text ? `: ${answer.text.slice(0, 300)}` : ""}`;
  return new HostError({ url: answer.url, status: answer.status, message: `the server at ${answer.url} answered ${answer.status} for ${answer.what}: ${reason}`, code: body?.code, kinds: body?.kinds });
}

function parseWireError(text: string): WireError | undefined {
  try {
    const value = text === "" ? undefined : (JSON.parse(text) as unknown);
    return typeof value === "object" && value !== null ? (value as WireError) : undefined;
  } catch {
    return undefined;
  }
}
