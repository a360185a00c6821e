/** The Runpod protocol suite (test/fixtures/gateway/runpod-suite.ts) against the in-memory queue. */
import { runpodProtocolSuite } from "../fixtures/gateway/runpod-suite.js";

runpodProtocolSuite(() => undefined);
