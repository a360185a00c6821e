/**
 * `npm run smoke:gpu`: what only a GPU can show, in one command and one table.
 *
 * 1. discovery against the driver (`libcuda.so.1`, or MULTIRANK_CUDA_LIBRARY /
 *    MULTIRANK_FAKE_DRIVER); no driver or no device: says so and exits 0;
 * 2. a runner with one rank per GPU, each rank reporting the UUID of the device
 *    its context is on (must be the one planned for it, and no two alike), its
 *    CPU affinity (must lie within the device's local CPUs when NVML or sysfs
 *    knows them) and a vector add through the CUDA driver API on its context;
 * 3. the LLM app with its layers on GPU 0, tokens per second against the CPU
 *    (skipped when the CUDA engine is not installed, naming the command).
 *
 * Exits 1 when any row FAILED. Against the fake driver it runs every path the
 * fake serves and lists what it cannot prove as skipped rows. Ranks load
 * `dist/`: run `npm run build:ts` first after changing src/.
 *
 *   node --import tsx scripts/smoke-gpu/main.ts
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { DistributedRunner, EngineMissingError, cudaAvailability, ensureLlamaEngine, getCpuAffinity, listDevices, writeTinyLlamaModel, type CudaDeviceInfo } from "../../src/index.js";
import { exitCodeFor, formatTable, rankRows, type RankReport, type SmokeInput, type SmokeRow } from "./report.js";

/** Elements per rank's vector add: 4 MiB per buffer, enough to cover many blocks, quick everywhere. */
const VECTOR_ELEMENTS = 1 << 20;
/** Seconds for the ranks to start, and for the one request. */
const START_TIMEOUT_S = 300;
const INVOKE_TIMEOUT_S = 120;

const worker = fileURLToPath(new URL("./worker.ts", import.meta.url));

const errorText = (error: unknown): string => {
  if (!(error instanceof Error)) return String(error);
  const code = (error as Error & { code?: unknown }).code;
  return typeof code === "string" ? `${code}: ${error.message}` : error.message;
};

/** The fake driver's path when it is the driver in use (MULTIRANK_CUDA_LIBRARY takes precedence over it). */
function fakeDriver(): string | undefined {
  return process.env.MULTIRANK_CUDA_LIBRARY ? undefined : process.env.MULTIRANK_FAKE_DRIVER || undefined;
}

/** What the fake driver cannot prove, listed so a green run on it is not mistaken for a GPU run. */
function fakeDriverRows(path: string): SmokeRow[] {
  const skipped = (check: string, detail: string): SmokeRow => ({ check, target: "-", status: "skipped", detail });
  return [
    skipped("PTX JIT and device execution", `fake driver ${path}: it checks the PTX text names vecAdd and adds on the host; only a real driver compiles and runs it`),
    skipped("device memory", "fake driver: \"device\" buffers are host memory"),
    skipped("hardware CPU locality", "fake driver: local CPUs come from FAKE_CUDA_DEVICE_CPUS, not the machine's topology"),
  ];
}

/** The generated model the LLM rows run: big enough that a GPU's speed shows (about 70 MB of f32 weights). */
const SMOKE_MODEL = { seed: 0, layers: 8, embeddingLength: 512, heads: 8, kvHeads: 8, feedForwardLength: 1376 } as const;
const LLM_INPUT = { prompt: "Once upon a time", maxTokens: 128, temperature: 0.8, seed: 1 };
const llmWorker = fileURLToPath(new URL("../../workers/llm.ts", import.meta.url));

interface LlmRun {
  device: string;
  tokensPerSecond: number;
}

/** One runner of the LLM app (world size 1) on `devices`, one request, its device and speed. Always stops it. */
async function runLlm(devices: "cpu" | number[], model: string, threads: number | undefined): Promise<LlmRun> {
  const logger = pino({ level: process.env.LOG_LEVEL ?? "warn" }, pino.destination(2));
  const runner = new DistributedRunner({ worker: llmWorker, worldSize: 1, devices, isolateDevices: devices !== "cpu", logger });
  try {
    await runner.start({ timeout: START_TIMEOUT_S, model, installEngine: false, ...(threads === undefined ? {} : { threads }) });
    return await runner.invoke<LlmRun>(LLM_INPUT, { timeout: INVOKE_TIMEOUT_S });
  } finally {
    await runner.stop().catch(() => runner.terminate());
  }
}

/**
 * The LLM app (workers/llm.ts) with every layer on GPU 0, against the same
 * app on the CPU: the GPU run must report `cuda` and its tokens per second.
 * It needs node-llama-cpp's CUDA engine (`npx multirank engine install llama
 * --gpu`) and the CUDA runtime it links (libcudart/libcublas 13); without the
 * engine the rows are skipped and name the command. The fake driver cannot
 * run llama.cpp's kernels: skipped there.
 */
async function llmAppRows(fake: string | undefined, devices: readonly CudaDeviceInfo[]): Promise<SmokeRow[]> {
  const check = "LLM app on GPU vs CPU tokens/s";
  if (fake) return [{ check, target: "-", status: "skipped", detail: `fake driver ${fake}: it cannot run llama.cpp's CUDA kernels` }];
  try {
    await ensureLlamaEngine({ gpu: true, install: false });
    await ensureLlamaEngine({ gpu: false, install: false });
  } catch (error) {
    if (error instanceof EngineMissingError) return [{ check, target: "-", status: "skipped", detail: `${error.message}` }];
    throw error;
  }
  const scratch = mkdtempSync(join(tmpdir(), "multirank-smoke-llm-"));
  try {
    const model = join(scratch, "smoke.gguf");
    writeTinyLlamaModel(model, SMOKE_MODEL);
    let gpu: LlmRun;
    try {
      gpu = await runLlm([devices[0]!.index], model, undefined);
    } catch (error) {
      return [{ check, target: "cuda", status: "FAILED", detail: `on GPU ${devices[0]!.index}: ${errorText(error)}` }];
    }
    const cpu = await runLlm("cpu", model, undefined).catch((error: unknown) => error);
    const cpuText = cpu instanceof Error || typeof cpu !== "object" ? `CPU run failed: ${errorText(cpu)}` : `${(cpu as LlmRun).tokensPerSecond.toFixed(1)} tokens/s on the CPU (${(gpu.tokensPerSecond / (cpu as LlmRun).tokensPerSecond).toFixed(1)}x)`;
    return [
      {
        check,
        target: "cuda",
        status: gpu.device === "cuda" ? "ok" : "FAILED",
        detail: `${gpu.tokensPerSecond.toFixed(1)} tokens/s on GPU ${devices[0]!.index} (device ${gpu.device}), ${cpuText}; model ${SMOKE_MODEL.layers} layers x ${SMOKE_MODEL.embeddingLength}`,
      },
    ];
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Starts one rank per device, invokes the smoke worker once and turns the reports into rows. Always stops the ranks. */
async function rankRowsFor(devices: readonly CudaDeviceInfo[]): Promise<SmokeRow[]> {
  const logger = pino({ level: process.env.LOG_LEVEL ?? "warn" }, pino.destination(2));
  const runner = new DistributedRunner({ worker, worldSize: devices.length, devices: devices.map((d) => d.index), logger });
  const started = performance.now();
  try {
    await runner.start({ timeout: START_TIMEOUT_S });
    const startRow: SmokeRow = {
      check: "runner",
      target: "-",
      status: "ok",
      detail: `${devices.length} rank(s), one per GPU, ready in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    };
    const reports = await runner.invoke<RankReport[] | undefined>({ n: VECTOR_ELEMENTS } satisfies SmokeInput, { timeout: INVOKE_TIMEOUT_S });
    return [startRow, ...rankRows(reports ?? [], devices.map((d) => d.uuid), getCpuAffinity())];
  } catch (error) {
    return [{ check: "runner", target: "-", status: "FAILED", detail: errorText(error) }];
  } finally {
    await runner.stop().catch(() => runner.terminate());
  }
}

/** Runs every check and returns the rows; never throws. */
async function smokeRows(): Promise<SmokeRow[]> {
  const cuda = cudaAvailability();
  if (!cuda.available) {
    // No driver, or a driver with no device to show: nothing a GPU check can say here.
    const nothingHere = { MULTIRANK_LIBRARY_NOT_FOUND: "no CUDA driver", CUDA_ERROR_NO_DEVICE: "no CUDA device" }[cuda.status ?? ""];
    return [
      nothingHere
        ? { check: "driver", target: "-", status: "skipped", detail: `${nothingHere} on this machine, nothing to check: ${cuda.reason}` }
        : { check: "driver", target: "-", status: "FAILED", detail: `${cuda.status ?? "unavailable"}: ${cuda.reason}` },
    ];
  }
  const fake = fakeDriver();
  const driverRow: SmokeRow = {
    check: "driver",
    target: "-",
    status: "ok",
    detail: `CUDA ${Math.floor(cuda.driverVersion / 1000)}.${(cuda.driverVersion % 1000) / 10}, ${cuda.deviceCount} device(s), via ${cuda.library}${fake ? " (fake driver)" : ""}`,
  };
  let devices: CudaDeviceInfo[];
  try {
    devices = listDevices();
  } catch (error) {
    return [driverRow, { check: "discovery", target: "-", status: "FAILED", detail: errorText(error) }];
  }
  if (devices.length === 0) return [driverRow, { check: "discovery", target: "-", status: "skipped", detail: "the driver reports no device" }];
  const discoveryRows = devices.map((d): SmokeRow => ({
    check: "discovery",
    target: `gpu ${d.index}`,
    status: "ok",
    detail: `${d.name}, ${d.uuid}, ${d.pciBusId}, local cpus ${d.cpus.length > 0 ? d.cpus.join(",") : "unknown"} (${d.cpuSource ?? "none"})`,
  }));
  return [driverRow, ...discoveryRows, ...(await rankRowsFor(devices)), ...(await llmAppRows(fake, devices)), ...(fake ? fakeDriverRows(fake) : [])];
}

async function main(): Promise<void> {
  let rows: SmokeRow[];
  try {
    rows = await smokeRows();
  } catch (error) {
    rows = [{ check: "smoke test", target: "-", status: "FAILED", detail: errorText(error) }];
  }
  process.stdout.write(formatTable(rows));
  process.exitCode = exitCodeFor(rows);
}

await main();
