import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import {
  DistributedWorker,
  loadLlamaEngine,
  multirankCacheDir,
  ValidationError,
  writeTinyLlamaModel,
  type CallContext,
  type LlamaCompletionInstance,
  type LlamaContextInstance,
  type LlamaInstance,
  type LlamaModelInstance,
} from "multirank";

/** `setup` arguments (an app's `setupArgs`, or `runner.start(args)`); all optional. */
export interface LlmSetupArgs {
  /** A GGUF model file. @default process.env.MULTIRANK_LLM_MODEL, else the tiny model, written once into the cache */
  model?: string;
  /** Tokens of context. @default 2048 */
  contextSize?: number;
  /** CPU threads. @default the number of cores multirank pinned this rank to */
  threads?: number;
  /** Install the engine when it is missing (it is about 83 MB on CPU). @default true */
  installEngine?: boolean;
}

export interface LlmInput {
  /** The text to continue. @default "Once upon a time" */
  prompt?: string;
  /** Most tokens to generate. @default 64 */
  maxTokens?: number;
  /** Sampling temperature; 0 is greedy (the seed then does not matter). @default 0.8 */
  temperature?: number;
  /** The sampler's seed: the same seed and input give the same tokens. @default 1 */
  seed?: number;
}

export interface LlmOutput {
  text: string;
  tokens: number;
  tokensPerSecond: number;
  seed: number;
  /** "cuda" when the model runs on this rank's GPU, else "cpu". */
  device: string;
}

/**
 * A language model on llama.cpp (node-llama-cpp), one per rank: a runner of
 * world size 1 serves one model. On a CUDA rank every layer goes to the
 * rank's GPU (run it with `isolateDevices` so that GPU is the only one CUDA
 * sees); on a CPU rank llama.cpp runs on the cores multirank pinned the rank
 * to. Tokens stream as text events `{ delta, index }` (`delta` is the token's
 * text, spaces included); cancelling stops generation at the rank.
 */
export default class Llm extends DistributedWorker<LlmInput, LlmOutput, LlmSetupArgs> {
  #llama: LlamaInstance | undefined;
  #model: LlamaModelInstance | undefined;
  #context: LlamaContextInstance | undefined;
  #completion: LlamaCompletionInstance | undefined;
  #device = "cpu";

  override async setup(args: LlmSetupArgs): Promise<void> {
    const gpu = this.device.kind === "cuda";
    const modelPath = resolveModel(args.model);
    const threads = args.threads ?? Math.max(1, this.device.cpus.length);
    const { engine, module } = await loadLlamaEngine({ gpu, logger: this.log, install: args.installEngine ?? true });
    const started = Date.now();
    this.#llama = await module.getLlama({ gpu: gpu ? "cuda" : false, build: "never", skipDownload: true, maxThreads: threads, logLevel: "warn", progressLogs: false });
    this.#model = await this.#llama.loadModel({ modelPath, gpuLayers: gpu ? "max" : 0 });
    this.#context = await this.#model.createContext({ contextSize: args.contextSize ?? 2048, threads });
    this.#completion = new module.LlamaCompletion({ contextSequence: this.#context.getSequence() });
    this.#device = this.#llama.gpu === false ? "cpu" : String(this.#llama.gpu);
    this.log.info({ model: modelPath, engine: engine.dir, device: this.#device, gpuLayers: this.#model.gpuLayers, threads, ms: Date.now() - started }, "model loaded");
  }

  override async call(input: LlmInput, ctx: CallContext): Promise<LlmOutput> {
    const completion = this.#completion!;
    const prompt = input.prompt ?? "Once upon a time";
    if (typeof prompt !== "string") throw new ValidationError("input.prompt must be a string");
    const maxTokens = integer(input.maxTokens ?? 64, 1, 32_768, "input.maxTokens");
    const seed = integer(input.seed ?? 1, 0, 2 ** 32 - 1, "input.seed");
    const temperature = input.temperature ?? 0.8;
    if (typeof temperature !== "number" || !(temperature >= 0 && temperature <= 10)) throw new ValidationError("input.temperature must be a number from 0 to 10");
    let tokens = 0;
    let index = 0;
    const started = performance.now();
    try {
      const text = await completion.generateCompletion(prompt, {
        maxTokens,
        temperature,
        seed,
        signal: ctx.signal,
        onToken: (generated) => {
          tokens += generated.length;
        },
        onTextChunk: (token) => {
          // Results past the stream's credit window queue in the rank; a model makes tokens slower than they drain.
          if (ctx.streaming) void this.addStreamingResult({ delta: token, index: index++ }, { asTextEvent: true }).catch(() => {});
        },
      });
      const seconds = (performance.now() - started) / 1000;
      return { text, tokens, tokensPerSecond: seconds > 0 ? tokens / seconds : 0, seed, device: this.#device };
    } catch (error) {
      // node-llama-cpp stops decoding when the signal aborts and throws its reason: say so here, where it happened.
      if (ctx.signal.aborted) ctx.log.info({ tokens, maxTokens }, "generation stopped: the request was cancelled");
      throw error;
    }
  }

  override async teardown(): Promise<void> {
    this.#completion?.dispose();
    await this.#context?.dispose();
    await this.#model?.dispose();
    await this.#llama?.dispose();
  }
}

/** The setup argument, else `MULTIRANK_LLM_MODEL`, else the tiny model, written once into the cache. */
function resolveModel(given: string | undefined): string {
  const named = given ?? process.env.MULTIRANK_LLM_MODEL;
  if (named !== undefined && named !== "") {
    if (typeof named !== "string") throw new ValidationError("setup args.model must be a path to a GGUF file");
    const path = resolve(named);
    if (!existsSync(path)) throw new ValidationError(`the model file ${path} does not exist (from ${given !== undefined ? "setup args.model" : "MULTIRANK_LLM_MODEL"})`);
    return path;
  }
  const path = join(multirankCacheDir(), "models", "multirank-tiny-llama-seed0.gguf");
  // The write is atomic (temporary file and rename): ranks starting together each write the same bytes, and none reads half a file.
  if (!existsSync(path)) writeTinyLlamaModel(path, { seed: 0 });
  return path;
}

function integer(value: unknown, min: number, max: number, field: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) throw new ValidationError(`${field} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  return value;
}
