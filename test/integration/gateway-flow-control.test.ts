/** The flow-control suite (test/fixtures/gateway/flow-control-suite.ts) against the in-memory queue. */
import { flowControlSuite } from "../fixtures/gateway/flow-control-suite.js";

flowControlSuite(() => undefined);
