// POSIX shared memory for large buffers: segments made with shm_open, sized,
// mapped, and handed to JS as ArrayBuffers backed by the mapping itself, so
// several processes read and write the same bytes without copying through
// syscalls. The typed face is src/shm/shared-segment.ts.
//
// Every function runs on the JS main thread (mapping is cheap; the only slow
// step, reserving tmpfs pages for a large segment, is bounded by its size).
#pragma once

#include <napi.h>

namespace multirank {

// shmCreate(name: string, size: number): ArrayBuffer.
// shm_open(O_CREAT | O_EXCL, 0600) + ftruncate + fallocate (so running out of
// tmpfs is ENOSPC here, not SIGBUS on first touch) + mmap(MAP_SHARED). `size`
// is checked against the free bytes of /dev/shm first. Throws NativeError-style
// errors: status "EEXIST" when the name is taken, "ENOSPC" (message names the
// size and the free bytes), "MULTIRANK_EXTERNAL_BUFFERS_FORBIDDEN" when the
// runtime refuses external ArrayBuffers; nothing is left behind on failure.
Napi::Value ShmCreate(const Napi::CallbackInfo& info);

// shmOpen(name: string, readOnly: boolean): ArrayBuffer over the whole segment.
// readOnly maps it copy-on-write (MAP_PRIVATE over an O_RDONLY descriptor):
// the view sees the segment's bytes, and writes through it stay private to
// this process instead of crashing it. Status "ENOENT" when there is no such segment.
Napi::Value ShmOpen(const Napi::CallbackInfo& info);

// shmUnlink(name: string): void. Removes the name; mappings stay valid until
// closed. Status "ENOENT" when there is no such segment.
Napi::Value ShmUnlink(const Napi::CallbackInfo& info);

// shmClose(buffer: ArrayBuffer): boolean. Detaches `buffer` (every view of it
// becomes empty, so no later access can reach unmapped memory) and unmaps it
// now rather than at garbage collection. false when it is not a live mapping
// made by shmCreate/shmOpen (already closed, or another ArrayBuffer).
Napi::Value ShmClose(const Napi::CallbackInfo& info);

// shmRemap(buffer: ArrayBuffer, name: string): void. `buffer` is a copy-on-write
// mapping made by shmOpen(name, true); maps the segment again over the same
// address, so the buffer shows the segment's current bytes and drops this
// process's private copies, without a new ArrayBuffer (a new 64 MiB one per
// request makes V8 run a full GC per request). Status "EINVAL" for a buffer
// that is not a live mapping or a segment of another size, "ENOENT" when the
// segment is gone.
Napi::Value ShmRemap(const Napi::CallbackInfo& info);

// shmFreeBytes(dir?: string): number. statvfs(dir).f_bavail * f_frsize, the
// bytes an unprivileged process may still allocate there. @default "/dev/shm"
Napi::Value ShmFreeBytes(const Napi::CallbackInfo& info);

}  // namespace multirank
