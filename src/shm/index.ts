/**
 * POSIX shared memory for large buffers: segments in `/dev/shm` mapped by the
 * native addon, so processes on one host share bytes without copying them
 * through sockets or syscalls.
 * @module
 */
export { SharedSegment, type OpenSegmentOptions, type SharedSegmentOptions } from "./shared-segment.js";
export { sweepLeftovers, sweepStaleSegments, type LeftoverSweepOptions, type SweepOptions, type SweptLeftovers } from "./sweep.js";
export { processAlive, processStartTime } from "./owner.js";
export { shmAvailable, shmFreeBytes, SHM_DIR } from "./available.js";
export { segmentName, segmentOwner, runDirPrefix, DEFAULT_SEGMENT_PREFIX } from "./naming.js";
