/**
 * `multirank devices`: what the ranks would run on. A table for people,
 * `--json` for scripts.
 */
import { MultirankError } from "../errors.js";
import { cudaAvailability, defaultAllowedCpus, formatCpuList, listDevices, type CudaDeviceInfo } from "../devices/index.js";

const USAGE = `Usage: multirank devices [--json]

Lists the CUDA devices this machine offers to ranks, with the CPU cores local
to each, or says why CUDA is not available (ranks then run on CPU).

  --json   print one JSON object: { cuda, devices, allowedCpus[, error] }
  --help   show this text
`;

/**
 * Runs the subcommand. Writes to `out` only.
 *
 * @param argv the arguments after `devices`.
 * @returns the exit code: 0 on success (including "no CUDA", which is a valid
 *   answer), 1 when the driver is installed but failing, 2 for bad arguments.
 * @example process.exitCode = await runDevicesCommand(process.argv.slice(3), process.stdout);
 */
export async function runDevicesCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  let json = false;
  for (const arg of argv) {
    if (arg === "--json") json = true;
    else if (arg === "--help" || arg === "-h") {
      out.write(USAGE);
      return 0;
    } else {
      out.write(`multirank devices: unknown argument ${JSON.stringify(arg)}\n\n${USAGE}`);
      return 2;
    }
  }
  const cuda = cudaAvailability();
  const allowedCpus = defaultAllowedCpus();
  let devices: CudaDeviceInfo[] = [];
  let error: { message: string; code?: string; status?: string } | undefined;
  if (cuda.available) {
    try {
      devices = listDevices();
    } catch (caught) {
      const e = caught instanceof MultirankError ? caught : undefined;
      error = { message: caught instanceof Error ? caught.message : String(caught) };
      if (e) error.code = e.code;
      const status = (caught as { status?: unknown }).status;
      if (typeof status === "string") error.status = status;
    }
  }
  if (json) {
    out.write(`${JSON.stringify({ cuda, devices, allowedCpus, ...(error ? { error } : {}) }, null, 2)}\n`);
    return error ? 1 : 0;
  }
  if (!cuda.available) {
    out.write(`CUDA: not available (${cuda.reason})\n`);
    out.write(`Ranks run on CPU, sharing cores ${formatCpuList(allowedCpus)} (${allowedCpus.length}).\n`);
    return 0;
  }
  out.write(`CUDA: driver ${formatDriverVersion(cuda.driverVersion)}, ${cuda.deviceCount} device(s), via ${cuda.library}\n`);
  if (error) {
    out.write(`error: ${error.message}\n`);
    return 1;
  }
  out.write(formatTable(devices));
  out.write(`Allowed CPUs: ${formatCpuList(allowedCpus)} (${allowedCpus.length})\n`);
  return 0;
}

/** 12040 -> "12.4", the way nvidia-smi prints "CUDA Version". */
function formatDriverVersion(version: number): string {
  return `${Math.floor(version / 1000)}.${Math.floor((version % 1000) / 10)}`;
}

function formatTable(devices: readonly CudaDeviceInfo[]): string {
  const header = ["INDEX", "NAME", "UUID", "PCI BUS ID", "MEMORY", "CC", "LOCAL CPUS"];
  const rows = devices.map((d) => [
    String(d.index),
    d.name,
    d.uuid,
    d.pciBusId,
    `${(d.totalMemory / 2 ** 30).toFixed(1)} GiB`,
    `${d.computeCapability[0]}.${d.computeCapability[1]}`,
    d.cpus.length > 0 ? `${formatCpuList(d.cpus)} (${d.cpuSource ?? "?"})` : "unknown",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `${cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()}\n`;
  return [header, ...rows].map(line).join("");
}
