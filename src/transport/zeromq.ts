import { createRequire } from "node:module";

type ZeroMQ = typeof import("zeromq");

let loaded: ZeroMQ | undefined;

/**
 * zeromq.js, loaded on first use. A rank on one host talks to its runner and
 * its peers over unix sockets and never needs ZeroMQ; loading its native
 * binding anyway cost every rank's start 10-15 ms (issue 17). zeromq is
 * CommonJS, so it can be required synchronously where a socket is made.
 */
export function zeromq(): ZeroMQ {
  loaded ??= createRequire(import.meta.url)("zeromq") as ZeroMQ;
  return loaded;
}
