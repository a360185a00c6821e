import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Codec, PackedReference, type ReferenceResolver } from "../codec/packer.js";
import { SHM_DIR, SharedSegment, shmAvailable } from "../shm/index.js";
import { viewKind, viewOver } from "../util/typed-views.js";
import { replaceViews, walkData } from "../util/walk-data.js";
import type { PayloadSegmentPool } from "./payload-pool.js";
import { processWide } from "../util/process-wide.js";

/**
 * Large payload buffers through shared memory. The runner copies every Buffer
 * or typed array of at least `minBytes` into one `/dev/shm` segment, once, and
 * sends a small reference instead; each rank maps the segment and sees the
 * same bytes as a view, without the socket copying them N times. Ranks map
 * copy-on-write, so a worker that writes into its payload changes only its
 * own copy. The segment comes from the runner's {@link PayloadSegmentPool}
 * and serves later requests too: a worker keeps payload bytes past its call
 * only through {@link keepPayload} (`ctx.keep()`).
 */

/** Name prefix of payload segments; the owner's pid follows, so `sweepLeftovers` removes those of a dead runner at the next start. */
export const PAYLOAD_SEGMENT_PREFIX = "multirank-payload";
/**
 * Buffers this large or larger go through shared memory. 64 KiB: from there
 * on a segment beats the socket (bench/payload: 256 KiB to 4 ranks in about
 * half the time); below it the segment's setup costs more than it saves.
 */
export const SHARED_PAYLOAD_MIN_BYTES = 64 * 1024;

/** The threshold in force: `MULTIRANK_SHARED_PAYLOAD_MIN_BYTES` when set (bench/payload compares), else {@link SHARED_PAYLOAD_MIN_BYTES}. */
function sharedPayloadMinBytes(): number {
  const set = process.env.MULTIRANK_SHARED_PAYLOAD_MIN_BYTES;
  const n = set === undefined ? Number.NaN : Number(set);
  return n > 0 ? n : SHARED_PAYLOAD_MIN_BYTES;
}

// Element alignment for every typed array kind (Float64Array needs 8).
const ALIGN = 8;

/**
 * Where a segment comes from, which says how long it lives: made for one
 * request, an {@link allocSharedBuffer} segment (its owner writes into it
 * between requests), or one of the runner's pooled segments (rewritten for a
 * later request unless a rank keeps it). The last two outlive the request,
 * so ranks keep their mapping of them.
 */
const enum Origin {
  OneRequest = 0,
  User = 1,
  Pool = 2,
}

/** What travels in place of a large buffer. */
class SharedRef extends PackedReference {
  constructor(
    readonly segment: string,
    readonly offset: number,
    readonly length: number,
    readonly kind: string,
    readonly origin: Origin,
  ) {
    super();
  }

  encode(): Uint8Array {
    return Buffer.from(JSON.stringify([this.segment, this.offset, this.length, this.kind, this.origin]));
  }
}

// Segments opened while one message is unpacked, so several buffers in one
// payload share one mapping. Only set while the resolver runs an unpack.
let opened: Map<string, SharedSegment> | undefined;

/**
 * A rank's mappings of allocSharedBuffer and pooled segments, most recent
 * last. Mapping a new 64 MiB ArrayBuffer per request makes V8 run a full
 * collection per request (tens of ms on every rank); refreshing a cached
 * mapping does not.
 */
const cached = new Map<string, SharedSegment>();
const CACHED_MAX = 8;
/** The segment behind each mapping a payload view may sit on, for {@link keepPayload}. */
const originOf = new WeakMap<ArrayBufferLike, { name: string; origin: Origin }>();
/** Cached mappings that requests not yet finished use: those must not be refreshed under them. */
const inUse = new Map<SharedSegment, number>();
/** Cached mappings the current unpack used (see {@link holdCachedMappings}). */
let usedByUnpack: SharedSegment[] = [];

function mapReusable(name: string): SharedSegment {
  // Names their owner unlinked (the buffer was collected) would pin the pages.
  for (const old of cached.keys()) if (old !== name && !existsSync(join(SHM_DIR, old))) cached.delete(old);
  const mapping = cached.get(name);
  // A request still running on it keeps its bytes: this one gets its own mapping.
  if (mapping && inUse.has(mapping)) return SharedSegment.open(name, { readOnly: true });
  if (mapping) {
    cached.delete(name);
    try {
      mapping.refresh();
      cached.set(name, mapping);
      usedByUnpack.push(mapping);
      return mapping;
    } catch {
      // Unlinked and made again, or resized: map it afresh below.
    }
  }
  const fresh = SharedSegment.open(name, { readOnly: true });
  cached.set(name, fresh);
  usedByUnpack.push(fresh);
  // Dropped, not closed: a worker may still hold views; the collector unmaps it.
  if (cached.size > CACHED_MAX) cached.delete(cached.keys().next().value!);
  return fresh;
}

/**
 * Marks the cached mappings the last unpack used as in use until the returned
 * function is called (when that request ends), so a later request carrying the
 * same buffer maps it anew instead of changing the bytes under this one.
 */
export function holdCachedMappings(): () => void {
  const held = usedByUnpack;
  usedByUnpack = [];
  for (const m of held) inUse.set(m, (inUse.get(m) ?? 0) + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    for (const m of held) {
      const n = (inUse.get(m) ?? 1) - 1;
      if (n <= 0) inUse.delete(m);
      else inUse.set(m, n);
    }
  };
}

/**
 * Resolves the references {@link offloadLargeBuffers} put in a message: maps
 * each segment once per message, read-only, and returns views over it.
 */
const sharedSegmentReferences: ReferenceResolver = {
  around<T>(unpack: () => T): T {
    const outer = opened;
    opened = new Map();
    usedByUnpack = [];
    try {
      return unpack();
    } finally {
      opened = outer;
    }
  },
  resolve(bytes: Uint8Array): unknown {
    const [segment, offset, length, kind, origin = Origin.OneRequest] = JSON.parse(Buffer.from(bytes).toString()) as [string, number, number, string, Origin?];
    let mapped = opened?.get(segment);
    if (!mapped) {
      mapped = origin === Origin.OneRequest ? SharedSegment.open(segment, { readOnly: true }) : mapReusable(segment);
      opened?.set(segment, mapped);
      if (origin !== Origin.OneRequest) originOf.set(mapped.arrayBuffer, { name: segment, origin });
    }
    // Offsets are 8-aligned in a page-aligned mapping: the view never copies.
    return viewOver(Buffer.from(mapped.arrayBuffer, offset, length), kind);
  },
};

/**
 * What a worker keeps of its payload past the end of its call
 * (`ctx.keep(value)`): pooled segments under `value` are added to `kept`
 * (their names go back to the runner with the request's `done`, so it
 * unlinks them instead of writing the next request's bytes into them) and
 * dropped from the mapping cache (never refreshed again); views of
 * allocSharedBuffer memory are copied, since their owner writes into it for
 * later requests. Returns `value`, or a copy of its containers with those
 * views replaced; everything else is kept as it is (its own memory already).
 */
export function keepPayload<T>(value: T, kept: Set<string>): T {
  const copies = new Map<ArrayBufferView, ArrayBufferView>();
  walkData(value, (v) => {
    if (!ArrayBuffer.isView(v)) return;
    const from = originOf.get(v.buffer);
    if (!from) return;
    if (from.origin === Origin.Pool) {
      kept.add(from.name);
      if (cached.get(from.name)?.arrayBuffer === v.buffer) cached.delete(from.name);
    } else if (!copies.has(v)) {
      copies.set(v, copyView(v));
    }
  }, 8);
  return copies.size === 0 ? value : (replaceViews(value, copies) as T);
}

/** A view of the same class and contents over memory of its own. */
function copyView(view: ArrayBufferView): ArrayBufferView {
  const bytes = Buffer.allocUnsafeSlow(view.byteLength);
  bytes.set(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
  return viewOver(bytes, viewKind(view));
}

/** A codec for control messages: it packs offloaded payloads' references and maps their segments when unpacking. */
export function createControlCodec(): Codec {
  return new Codec({ references: sharedSegmentReferences });
}

/** A payload with its large buffers moved to a segment, and the segment's name (to unlink later). */
export interface OffloadedPayload {
  payload: unknown;
  /** Lent by the pool given to {@link offloadLargeBuffers} (to give back), else made for this request (to unlink). */
  segment: SharedSegment | undefined;
  /** Bytes moved into the segment. */
  sharedBytes: number;
  /**
   * allocSharedBuffer memory the payload refers to by name: the caller keeps
   * it reachable until the request ends, or collecting it would unlink the
   * name before every rank has mapped it.
   */
  retained: ArrayBufferLike[];
}

/**
 * Segments made by {@link allocSharedBuffer}, by the memory they map. Process-wide: a worker
 * importing its own copy of this module must still hand the runtime buffers it recognises.
 */
const userSegments = processWide("shared-payload.user-segments", () => new WeakMap<ArrayBufferLike, SharedSegment>());
/** Their names, to unlink when the memory is collected or the process exits. */
const userSegmentNames = new Set<string>();
const unlinkWhenCollected = new FinalizationRegistry<string>((name) => unlinkName(name));
let unlinkAtExit = false;

function unlinkName(name: string): void {
  userSegmentNames.delete(name);
  // On Linux shm_unlink(name) is exactly this unlink. Already gone (swept) is fine.
  rmSync(join(SHM_DIR, name), { force: true });
}

/**
 * A Buffer of `bytes` in shared memory that ranks on this host read without
 * any copy: pass it (or typed-array views of it of at least 64 KiB) in
 * payloads, and only a reference travels. Reuse it across requests, like a
 * pinned staging buffer, so its pages are allocated once; an ordinary Buffer
 * is copied into one of the runner's pooled segments for every request instead.
 *
 * It is shared, not copied: write into it only while no request that carries
 * it is running, and have workers copy what they keep past `call()`. Ranks
 * map it copy-on-write, so a worker that writes into its payload changes only
 * its own copy. Over tcp (ranks on other hosts) it is sent as bytes like any
 * Buffer. Its memory is freed when it is garbage-collected.
 * @throws {ValidationError} `bytes` not a positive integer.
 * @throws {NativeError} without the native addon, or when `/dev/shm` has no room (`"ENOSPC"`).
 */
export function allocSharedBuffer(bytes: number): Buffer {
  const segment = SharedSegment.create({ size: bytes, prefix: PAYLOAD_SEGMENT_PREFIX });
  const memory = segment.arrayBuffer;
  userSegments.set(memory, segment);
  userSegmentNames.add(segment.name);
  unlinkWhenCollected.register(memory, segment.name);
  if (!unlinkAtExit) {
    unlinkAtExit = true;
    process.once("exit", () => {
      for (const name of [...userSegmentNames]) unlinkName(name);
    });
  }
  return Buffer.from(memory, 0, bytes);
}

/** Options of {@link offloadLargeBuffers}. */
export interface OffloadOptions {
  /** Smallest buffer moved. Default: `MULTIRANK_SHARED_PAYLOAD_MIN_BYTES`, else {@link SHARED_PAYLOAD_MIN_BYTES}. */
  minBytes?: number | undefined;
  /** Takes the segment from this pool (ranks may keep it only through {@link keepPayload}); without it, a new segment for this request. */
  pool?: PayloadSegmentPool | undefined;
}

/**
 * Moves the payload's large buffers into one segment (the caller's value is
 * not changed). Returns the payload as it is when there are none, when
 * shared memory is unavailable, or when `/dev/shm` has no room.
 */
export function offloadLargeBuffers(payload: unknown, options: OffloadOptions = {}): OffloadedPayload {
  const { minBytes, pool } = options;
  const views: ArrayBufferView[] = [];
  walkData(payload, (v) => {
    if (ArrayBuffer.isView(v) && !(v instanceof DataView)) views.push(v);
  }, 8);
  const none: OffloadedPayload = { payload, segment: undefined, sharedBytes: 0, retained: [] };
  // Most payloads hold no binary: they cost one walk, nothing more.
  if (views.length === 0) return none;
  const min = minBytes ?? sharedPayloadMinBytes();
  const found = views.filter((v) => v.byteLength >= min);
  if (found.length === 0 || !shmAvailable()) return none;
  const refs = new Map<ArrayBufferView, SharedRef>();
  const retained: ArrayBufferLike[] = [];
  // Views of allocSharedBuffer memory travel as references to it, uncopied.
  const unique = [...new Set(found)].filter((view) => {
    const own = userSegments.get(view.buffer);
    if (own) {
      refs.set(view, new SharedRef(own.name, view.byteOffset, view.byteLength, viewKind(view), Origin.User));
      retained.push(view.buffer);
    }
    return !own;
  });
  if (unique.length === 0) return { payload: replaceViews(payload, refs), segment: undefined, sharedBytes: 0, retained };
  let size = 0;
  const offsets = unique.map((view) => {
    const offset = size;
    size += Math.ceil(view.byteLength / ALIGN) * ALIGN;
    return offset;
  });
  let segment: SharedSegment;
  try {
    segment = pool ? pool.take(size) : SharedSegment.create({ size, prefix: PAYLOAD_SEGMENT_PREFIX });
  } catch {
    // No room in /dev/shm (or no addon): the socket path still works for these.
    return { payload: replaceViews(payload, refs), segment: undefined, sharedBytes: 0, retained };
  }
  const target = segment.buffer;
  unique.forEach((view, i) => {
    target.set(new Uint8Array(view.buffer, view.byteOffset, view.byteLength), offsets[i]!);
    refs.set(view, new SharedRef(segment.name, offsets[i]!, view.byteLength, viewKind(view), pool ? Origin.Pool : Origin.OneRequest));
  });
  return { payload: replaceViews(payload, refs), segment, sharedBytes: size, retained };
}
