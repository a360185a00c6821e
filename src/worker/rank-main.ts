/**
 * The entry point of a rank process. The runner spawns `node rank-main.js`
 * with the rank's environment; nothing here is meant to be imported.
 */
import { bootRank } from "./rank-boot.js";

void bootRank();
