/**
 * A rank's own memory cgroup: a child of this process's cgroup with its
 * memory limit set, so the kernel holds the rank to its `memory` limit even
 * for memory V8's heap limit does not see (Buffers, native code). On cgroup
 * v2 (the unified hierarchy) that is `memory.max`, where this process may
 * delegate the memory controller to a child group; on cgroup v1 (older
 * kernels and hosts, and many container hosts still) it is the memory
 * controller's own hierarchy and `memory.limit_in_bytes`. Either usually
 * means root. Elsewhere the rank runs without one and V8's heap limit is the
 * only guard; that is logged once, at debug.
 */
import { accessSync, constants, existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";

/** Where the cgroup files are; tests point these at a temporary directory. */
export interface CgroupFs {
  /** Where cgroups are mounted: the unified (v2) mount, or the directory of v1's per-controller mounts. @default "/sys/fs/cgroup" */
  root: string;
  /** Text of `/proc/self/cgroup`. */
  selfCgroup: () => string;
}

const SYSTEM: CgroupFs = { root: "/sys/fs/cgroup", selfCgroup: () => readFileSync("/proc/self/cgroup", "utf8") };

/** Where child groups can go (and in which cgroup version's files), or why they cannot. */
type Parent = { ok: true; dir: string; version: 1 | 2 } | { ok: false; why: string };

const parents = new Map<string, Parent>();
let unavailableLogged = false;

/**
 * This process's cgroup directory when it can hold memory-limited children:
 * cgroup v2 at `fs.root`, the memory controller available to it and enabled
 * (or enableable) for its children. Decided once per root; the answer does
 * not change while the process lives.
 */
export function cgroupParent(fs: CgroupFs = SYSTEM): Parent {
  let parent = parents.get(fs.root);
  if (!parent) {
    parent = findParent(fs);
    parents.set(fs.root, parent);
  }
  return parent;
}

function findParent(fs: CgroupFs): Parent {
  if (!existsSync(join(fs.root, "cgroup.controllers"))) {
    if (existsSync(join(fs.root, "memory", "memory.limit_in_bytes"))) return findV1Parent(fs);
    return { ok: false, why: `${fs.root} is neither a cgroup v2 (unified) mount nor holds cgroup v1's memory controller` };
  }
  let own: string | undefined;
  try {
    own = fs
      .selfCgroup()
      .split("\n")
      .find((line) => line.startsWith("0::"))
      ?.slice(3)
      .trim();
  } catch (error) {
    return { ok: false, why: `cannot read this process's cgroup: ${(error as Error).message}` };
  }
  if (own === undefined) return { ok: false, why: "this process is in no cgroup v2 group" };
  const dir = join(fs.root, own);
  try {
    if (!readFileSync(join(dir, "cgroup.controllers"), "utf8").split(/\s+/).includes("memory")) {
      return { ok: false, why: `the memory controller is not available in ${dir}` };
    }
    if (!readFileSync(join(dir, "cgroup.subtree_control"), "utf8").split(/\s+/).includes("memory")) {
      // Refused (EBUSY) when this group holds processes and is not the root: cgroup v2's
      // "no internal processes" rule. Then no child of ours can have a memory limit.
      writeFileSync(join(dir, "cgroup.subtree_control"), "+memory");
    }
  } catch (error) {
    return { ok: false, why: `cannot enable the memory controller for children of ${dir}: ${(error as Error).message}` };
  }
  return { ok: true, dir, version: 2 };
}

/** cgroup v1: this process's group in the memory controller's own hierarchy, when it may make children there. */
function findV1Parent(fs: CgroupFs): Parent {
  let own: string | undefined;
  try {
    // Lines are "id:controllers:path"; the memory controller's may share its line with others.
    own = fs
      .selfCgroup()
      .split("\n")
      .map((line) => line.split(":"))
      .find((fields) => fields.length >= 3 && fields[1]!.split(",").includes("memory"))
      ?.slice(2)
      .join(":")
      .trim();
  } catch (error) {
    return { ok: false, why: `cannot read this process's cgroup: ${(error as Error).message}` };
  }
  if (own === undefined) return { ok: false, why: "this process is in no cgroup v1 memory group" };
  const dir = join(fs.root, "memory", own);
  try {
    accessSync(dir, constants.W_OK);
  } catch (error) {
    return { ok: false, why: `cannot make memory cgroups under ${dir}: ${(error as Error).message}` };
  }
  return { ok: true, dir, version: 1 };
}

/** What {@link RankCgroup.create} needs. */
export interface RankCgroupOptions {
  /** The group's directory name, unique on the host. */
  name: string;
  /** `memory.max`, bytes. */
  limitBytes: number;
  /** The rank process to move into it. */
  pid: number;
  logger: Logger;
  fs?: CgroupFs;
}

/** One rank's memory-limited cgroup; {@link remove} it once the rank has exited. */
export class RankCgroup {
  /** The group's directory. */
  readonly dir: string;
  readonly #version: 1 | 2;
  #removed = false;

  private constructor(dir: string, version: 1 | 2) {
    this.dir = dir;
    this.#version = version;
  }

  /**
   * Makes the group, sets `memory.max` (and `memory.swap.max` to 0, so the
   * limit is not dodged by swapping) and moves `pid` into it. Returns
   * `undefined`, having logged why at debug (once per process when cgroups
   * are out of reach altogether), when that cannot be done.
   */
  static create(options: RankCgroupOptions): RankCgroup | undefined {
    const parent = cgroupParent(options.fs);
    if (!parent.ok) {
      if (!unavailableLogged) {
        unavailableLogged = true;
        options.logger.debug({ why: parent.why }, "no per-rank memory cgroups here; the memory limit is V8's heap limit alone");
      }
      return undefined;
    }
    const group = new RankCgroup(join(parent.dir, options.name), parent.version);
    try {
      mkdirSync(group.dir);
      if (parent.version === 2) {
        writeFileSync(join(group.dir, "memory.max"), String(options.limitBytes));
        if (existsSync(join(group.dir, "memory.swap.max"))) writeFileSync(join(group.dir, "memory.swap.max"), "0");
      } else {
        writeFileSync(join(group.dir, "memory.limit_in_bytes"), String(options.limitBytes));
        // Memory plus swap at the same limit: no swapping around it (where swap accounting is on).
        if (existsSync(join(group.dir, "memory.memsw.limit_in_bytes"))) writeFileSync(join(group.dir, "memory.memsw.limit_in_bytes"), String(options.limitBytes));
      }
      writeFileSync(join(group.dir, "cgroup.procs"), String(options.pid));
      return group;
    } catch (error) {
      options.logger.debug({ err: error, dir: group.dir }, "could not put the rank in a memory cgroup; the memory limit is V8's heap limit alone");
      group.remove();
      return undefined;
    }
  }

  /**
   * The group's counters as cgroup v2's `memory.events` names them (`oom`,
   * `oom_kill`, `max`, ...); on v1, `oom_kill` from `memory.oom_control` and
   * `max` and `oom` from `memory.failcnt` (the times the limit was hit).
   * Empty when unreadable.
   */
  events(): Record<string, number> {
    if (this.#version === 2) return readCounters(join(this.dir, "memory.events"));
    const out = readCounters(join(this.dir, "memory.oom_control"));
    const counters: Record<string, number> = {};
    if (out.oom_kill !== undefined) counters.oom_kill = out.oom_kill;
    try {
      const failcnt = Number(readFileSync(join(this.dir, "memory.failcnt"), "utf8").trim());
      if (Number.isInteger(failcnt)) counters.max = counters.oom = failcnt;
    } catch {
      // Removed already: no counter.
    }
    return counters;
  }

  /**
   * Removes the group; its processes must have exited. A group whose last
   * process has only just been reaped may still read as busy for a moment,
   * so that is retried briefly. Idempotent; never throws.
   */
  remove(attempt = 0): void {
    if (this.#removed) return;
    try {
      rmdirSync(this.dir);
      this.#removed = true;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT") this.#removed = true;
      else if (code === "EBUSY" && attempt < 20) setTimeout(() => this.remove(attempt + 1), 50).unref();
    }
  }
}

/** `key value` lines of a cgroup file, the numeric ones; empty when unreadable. */
function readCounters(path: string): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const line of readFileSync(path, "utf8").split("\n")) {
      const [key, value] = line.trim().split(/\s+/);
      if (key && value !== undefined && /^\d+$/.test(value)) out[key] = Number(value);
    }
  } catch {
    // Removed already, or not a real cgroup: no counters.
  }
  return out;
}
