export * from "./report.js";
export * from "./raw-zmq.js";
export * from "./raw-unix.js";
