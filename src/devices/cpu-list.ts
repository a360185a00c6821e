/** Kernel cpulist text ("0-3,8") and even splits of a core set. Pure functions. */

/**
 * Parses a Linux cpulist (`/proc/self/status` `Cpus_allowed_list`, sysfs
 * `local_cpulist`) into ascending, unique CPU numbers.
 *
 * @throws {RangeError} on malformed text.
 * @example parseCpuList("0-2,8") // [0, 1, 2, 8]
 */
export function parseCpuList(text: string): number[] {
  const cpus = new Set<number>();
  for (const raw of text.trim().split(",")) {
    const part = raw.trim();
    if (part === "") continue;
    const match = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!match) throw new RangeError(`malformed cpulist entry "${part}" in "${text}"`);
    const first = Number(match[1]);
    const last = match[2] === undefined ? first : Number(match[2]);
    if (last < first) throw new RangeError(`malformed cpulist range "${part}" in "${text}"`);
    for (let cpu = first; cpu <= last; cpu++) cpus.add(cpu);
  }
  return [...cpus].sort((a, b) => a - b);
}

/**
 * Formats CPU numbers as a cpulist, collapsing runs.
 * @example formatCpuList([0, 1, 2, 8]) // "0-2,8"
 */
export function formatCpuList(cpus: readonly number[]): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}

/**
 * Splits `pool` among `parts` consumers: contiguous chunks whose sizes differ
 * by at most one when there are enough cores (2 ranks on 2 cores get one each),
 * and one core each, round robin, when there are more consumers than cores.
 * Contiguous chunks keep a rank's cores on neighbouring (usually same-socket,
 * same-cache) CPUs.
 *
 * @example splitCpus([0, 1, 2, 3, 4], 2) // [[0, 1, 2], [3, 4]]
 * @example splitCpus([0, 1], 3)          // [[0], [1], [0]]
 */
export function splitCpus(pool: readonly number[], parts: number): number[][] {
  if (parts <= 0) return [];
  if (pool.length === 0) return Array.from({ length: parts }, () => []);
  if (pool.length < parts) return Array.from({ length: parts }, (_, i) => [pool[i % pool.length]!]);
  const base = Math.floor(pool.length / parts);
  const extra = pool.length % parts;
  const out: number[][] = [];
  let start = 0;
  for (let i = 0; i < parts; i++) {
    const size = base + (i < extra ? 1 : 0);
    out.push(pool.slice(start, start + size));
    start += size;
  }
  return out;
}
