/** The fal protocol suite (test/fixtures/gateway/fal-suite.ts) against the in-memory queue. */
import { falProtocolSuite } from "../fixtures/gateway/fal-suite.js";

falProtocolSuite(() => undefined);
