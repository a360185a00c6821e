import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { RequestLogStream, requestLogger, type RequestLogRecord } from "../../src/worker/request-log.js";

/** A rank-like logger: lines to `lines` at `level`, request records to `records` from info up. */
function rankLogger(level = "debug") {
  const lines: string[] = [];
  const records: RequestLogRecord[] = [];
  const logger = pino(
    { level: "debug", base: { rank: 0 } },
    pino.multistream([
      { level: level as pino.Level, stream: { write: (line: string) => void lines.push(line) } },
      { level: "info", stream: new RequestLogStream((record) => records.push(record)) },
    ]),
  );
  return { logger, lines, records };
}

describe("request logs", () => {
  it("hands a request logger's records on as values, and its lines still go to the rank's log", () => {
    const { logger, lines, records } = rankLogger();
    const before = Date.now();
    const log = requestLogger(logger, 5);
    log.info("loading shard %d of %s", 2, "four");
    log.warn({ step: 1 }, "slow");
    log.error(new Error("it broke"));
    log.info({ msg: "from the object" });
    log.debug("below info: the rank's log only");
    logger.info("the rank's own record");
    expect(records.map(({ requestId, level, msg }) => ({ requestId, level, msg }))).toEqual([
      { requestId: 5, level: 30, msg: "loading shard 2 of four" },
      { requestId: 5, level: 40, msg: "slow" },
      { requestId: 5, level: 50, msg: "it broke" },
      { requestId: 5, level: 30, msg: "from the object" },
    ]);
    for (const record of records) expect(record.time).toBeGreaterThanOrEqual(before);
    // The same records in the rank's log, with requestId bound, and the rest besides.
    const parsed = lines.map((line) => JSON.parse(line) as { requestId?: number; msg: string; time: number });
    expect(parsed.map((l) => [l.requestId, l.msg])).toEqual([
      [5, "loading shard 2 of four"],
      [5, "slow"],
      [5, "it broke"],
      [5, "from the object"],
      [5, "below info: the rank's log only"],
      [undefined, "the rank's own record"],
    ]);
    expect(records[0]!.time).toBe(parsed[0]!.time);
  });

  it("forwards a request logger's children, and a record naming requestId in its object", () => {
    const { logger, records } = rankLogger();
    requestLogger(logger, 3).child({ component: "sampler" }).info("step");
    logger.warn({ requestId: 9 }, "about request 9");
    logger.info({ requestId: "not a number" }, "ignored");
    expect(records.map(({ requestId, msg }) => [requestId, msg])).toEqual([
      [3, "step"],
      [9, "about request 9"],
    ]);
  });

  it("forwards from info up whatever the rank's level, without reading the line", () => {
    const lines: string[] = [];
    const records: RequestLogRecord[] = [];
    // The line pino writes is mangled on its way: a forwarder that parsed it would lose the record.
    const logger = pino(
      { level: "info", hooks: { streamWrite: () => "not json\n" } },
      pino.multistream([
        { level: "error", stream: { write: (line: string) => void lines.push(line) } },
        { level: "info", stream: new RequestLogStream((record) => records.push(record)) },
      ]),
    );
    requestLogger(logger, 1).info("hello");
    expect(lines).toEqual([]);
    expect(records.map(({ requestId, level, msg }) => ({ requestId, level, msg }))).toEqual([{ requestId: 1, level: 30, msg: "hello" }]);
  });
});
