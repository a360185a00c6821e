import { constants as bufferConstants } from "node:buffer";
import { callNative } from "../devices/addon.js";
import { NativeError, StateError, ValidationError } from "../errors.js";
import { loadAddonWithShm } from "./available.js";
import { DEFAULT_SEGMENT_PREFIX, segmentName, segmentOwner } from "./naming.js";

/** Options of {@link SharedSegment.create}. */
export interface SharedSegmentOptions {
  /** Bytes to allocate. Required; checked against the free space of `/dev/shm`. */
  size: number;
  /**
   * Start of the name, followed by `-p<pid>-<random>` so that
   * `sweepStaleSegments(prefix)` can remove what a dead process left.
   * @default "multirank"
   */
  prefix?: string;
}

/** Options of {@link SharedSegment.open}. */
export interface OpenSegmentOptions {
  /**
   * Map without write access to the segment: the view shows the segment's
   * bytes, and a write through it changes only this process's private copy of
   * that page (copy-on-write), which from then on no longer follows the segment.
   * @default false
   */
  readOnly?: boolean;
}

/**
 * A POSIX shared-memory segment (`/dev/shm/<name>`) mapped into this process:
 * `buffer` is the segment's memory itself, so bytes written by one process are
 * seen by every other process that opened the same name, with no copy and no
 * syscall. Needs the native addon (see {@link shmAvailable}).
 *
 * Lifetime: the creator should {@link unlink} the name once every reader has
 * opened it (mappings stay valid), so nothing is left behind even if it is
 * killed later; {@link close} unmaps at once (every view of `buffer` becomes
 * empty rather than dangling). A segment that is neither closed nor unlinked
 * is unmapped when garbage-collected, but its name stays until
 * `sweepStaleSegments` finds its owner dead.
 *
 * @example
 * using seg = SharedSegment.create({ size: 1 << 20, prefix: "myapp" });
 * seg.buffer.set(bytes);
 * // another process: const peer = SharedSegment.open(name, { readOnly: true });
 */
export class SharedSegment {
  /** The name, without the leading "/" (the file in `/dev/shm`). */
  readonly name: string;
  /** Size in bytes. */
  readonly size: number;
  /** Whether this process created the segment (and so should unlink it). */
  readonly created: boolean;
  /** Whether the mapping is copy-on-write (see {@link OpenSegmentOptions.readOnly}). */
  readonly readOnly: boolean;
  #arrayBuffer: ArrayBuffer | undefined;
  #view: Uint8Array | undefined;
  #unlinked = false;

  private constructor(name: string, arrayBuffer: ArrayBuffer, created: boolean, readOnly: boolean) {
    this.name = name;
    this.size = arrayBuffer.byteLength;
    this.created = created;
    this.readOnly = readOnly;
    this.#arrayBuffer = arrayBuffer;
  }

  /**
   * Creates, sizes and maps a new segment named `<prefix>-p<pid>-<random>`.
   * Its pages are reserved at once, so a full `/dev/shm` fails here instead
   * of crashing whoever touches the memory later.
   * @throws {ValidationError} bad `size` or `prefix`.
   * @throws {NativeError} status `"ENOSPC"` when `size` exceeds the free bytes of
   *   `/dev/shm` (the message names both), `"EEXIST"`, `"EMFILE"`, ...; status
   *   `"MULTIRANK_EXTERNAL_BUFFERS_FORBIDDEN"` where the runtime forbids
   *   external ArrayBuffers; `"MULTIRANK_ADDON_NOT_LOADED"` without the addon.
   */
  static create(options: SharedSegmentOptions): SharedSegment {
    if (typeof options !== "object" || options === null) throw new ValidationError("options must be an object with a size");
    const { size, prefix = DEFAULT_SEGMENT_PREFIX } = options;
    if (!Number.isSafeInteger(size) || size < 1) throw new ValidationError(`options.size must be a positive integer number of bytes (got ${String(size)})`);
    const name = segmentName(prefix);
    loadAddonWithShm();
    // What does not fit in /dev/shm is refused by the addon (ENOSPC, naming both
    // numbers); what fits but exceeds an ArrayBuffer's limit, here.
    if (size > bufferConstants.MAX_LENGTH && size <= callNative((a) => a.shmFreeBytes())) {
      throw new ValidationError(`options.size must be at most ${bufferConstants.MAX_LENGTH} bytes, the largest ArrayBuffer this runtime makes (got ${size})`);
    }
    const arrayBuffer = callNative((addon) => addon.shmCreate(name, size));
    return new SharedSegment(name, arrayBuffer, true, false);
  }

  /**
   * Maps an existing segment, whole.
   * @throws {ValidationError} a name that cannot be a segment's.
   * @throws {NativeError} status `"ENOENT"` when there is no such segment, `"EACCES"`, ...
   */
  static open(name: string, options: OpenSegmentOptions = {}): SharedSegment {
    if (typeof name !== "string" || name.length === 0) throw new ValidationError("name must be a non-empty string");
    const readOnly = options.readOnly ?? false;
    if (typeof readOnly !== "boolean") throw new ValidationError("options.readOnly must be a boolean");
    loadAddonWithShm();
    const bare = name.startsWith("/") ? name.slice(1) : name;
    const arrayBuffer = callNative((addon) => addon.shmOpen(bare, readOnly));
    return new SharedSegment(bare, arrayBuffer, false, readOnly);
  }

  /**
   * For a copy-on-write mapping ({@link OpenSegmentOptions.readOnly}): shows
   * the segment's current bytes again and drops this process's private
   * copies, keeping the same ArrayBuffer (so no new allocation for V8 to
   * collect). Views made earlier see the new bytes too.
   * @throws {StateError} after {@link close}, or on a writable mapping.
   * @throws {NativeError} status `"ENOENT"` when the segment was unlinked.
   */
  refresh(): void {
    const arrayBuffer = this.arrayBuffer;
    if (!this.readOnly) throw new StateError(`shared memory segment ${this.name} is mapped writable; only copy-on-write mappings refresh`);
    callNative((addon) => addon.shmRemap(arrayBuffer, this.name));
  }

  /** The pid embedded in the name by {@link create}, or `undefined` for foreign names. */
  get ownerPid(): number | undefined {
    return segmentOwner(this.name);
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#arrayBuffer === undefined;
  }

  /**
   * The segment's memory (no copy). For other element types, wrap
   * {@link arrayBuffer}: `new Float32Array(seg.arrayBuffer, 0, n)`.
   * @throws {StateError} after {@link close}.
   */
  get buffer(): Uint8Array {
    if (this.#arrayBuffer === undefined) throw new StateError(`shared memory segment ${this.name} is closed`);
    return (this.#view ??= new Uint8Array(this.#arrayBuffer));
  }

  /** The mapping as an ArrayBuffer. @throws {StateError} after {@link close}. */
  get arrayBuffer(): ArrayBuffer {
    if (this.#arrayBuffer === undefined) throw new StateError(`shared memory segment ${this.name} is closed`);
    return this.#arrayBuffer;
  }

  /**
   * Removes the name, so no one else can open it and the memory is freed once
   * every process has closed it. Idempotent; a name already removed (by a
   * sweep or another process) is not an error.
   * @throws {NativeError} on other failures (`"EACCES"`).
   */
  unlink(): void {
    if (this.#unlinked) return;
    try {
      callNative((addon) => addon.shmUnlink(this.name));
    } catch (error) {
      if (!(error instanceof NativeError && error.status === "ENOENT")) throw error;
    }
    this.#unlinked = true;
  }

  /**
   * Unmaps now. Views of {@link buffer} and {@link arrayBuffer} become empty
   * (length 0) instead of pointing at freed memory. Does not unlink. Idempotent.
   */
  close(): void {
    const arrayBuffer = this.#arrayBuffer;
    if (arrayBuffer === undefined) return;
    this.#arrayBuffer = undefined;
    this.#view = undefined;
    callNative((addon) => addon.shmClose(arrayBuffer));
  }

  /** Closes, and unlinks a segment this process created. */
  [Symbol.dispose](): void {
    try {
      if (this.created) this.unlink();
    } finally {
      this.close();
    }
  }
}
