export * from "./report.js";
export * from "./raw-zmq.js";
