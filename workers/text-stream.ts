import { DistributedWorker, type CallContext } from "multirank";

export interface TextStreamInput {
  /** The text to continue. */
  prompt?: string;
  /** How many tokens to produce. @default 32 */
  maxTokens?: number;
  /** Pause between tokens, to look like a model. @default 20 */
  delayMs?: number;
}

export interface TextStreamOutput {
  text: string;
  tokens: number;
}

const VOCABULARY = "the model runs on every rank and rank zero speaks for the group while tokens arrive one at a time".split(" ");

/**
 * Streams tokens as Server-Sent Events, then returns the whole text. The
 * "model" is a deterministic word chain seeded by the prompt, so the same
 * prompt always gives the same text; cancelling stops it between tokens.
 */
export default class TextStream extends DistributedWorker<TextStreamInput, TextStreamOutput> {
  override async call(input: TextStreamInput, ctx: CallContext): Promise<TextStreamOutput> {
    const maxTokens = clamp(input.maxTokens ?? 32, 1, 4096);
    const delayMs = clamp(input.delayMs ?? 20, 0, 10_000);
    let state = seed(input.prompt ?? "");
    const tokens: string[] = [];
    for (let index = 0; index < maxTokens; index++) {
      ctx.signal.throwIfAborted();
      state = (state * 1103515245 + 12345) >>> 0;
      const token = VOCABULARY[state % VOCABULARY.length]!;
      tokens.push(token);
      if (ctx.streaming) void this.addStreamingResult({ token, index }, { asTextEvent: true });
      if (delayMs > 0) await sleep(delayMs, ctx.signal);
    }
    return { text: tokens.join(" "), tokens: tokens.length };
  }
}

function seed(text: string): number {
  let hash = 2166136261;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 16777619) >>> 0;
  return hash;
}

function clamp(value: number, min: number, max: number): number {
  return Math.max(min, Math.min(max, Math.floor(Number(value) || min)));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
