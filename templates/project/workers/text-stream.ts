import { DistributedWorker, type CallContext } from "multirank";

export interface TextStreamInput {
  prompt?: string;
  /** @default 12 */
  maxTokens?: number;
  /** Pause between tokens, to look like a model. @default 20 */
  delayMs?: number;
}

const WORDS = "the model runs on every rank and rank zero speaks for the group while tokens arrive".split(" ");

/**
 * Streams tokens as they are made, then returns the whole text. Every rank
 * runs call(); rank 0's result is the answer. Swap the word chain for a model.
 */
export default class TextStream extends DistributedWorker<TextStreamInput, { text: string; tokens: number }> {
  override async call(input: TextStreamInput, ctx: CallContext) {
    const maxTokens = Math.max(1, Math.min(1000, Math.floor(input.maxTokens ?? 12)));
    const delayMs = Math.max(0, Math.min(5000, input.delayMs ?? 20));
    let state = [...(input.prompt ?? "")].reduce((h, c) => (Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0), 2166136261);
    const tokens: string[] = [];
    for (let index = 0; index < maxTokens; index++) {
      ctx.signal.throwIfAborted(); // the caller went away
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      const token = WORDS[(state >>> 16) % WORDS.length]!;
      tokens.push(token);
      // Awaited, so a slow reader slows the worker down instead of filling memory.
      if (ctx.streaming) await this.addStreamingResult({ token, index });
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
    return { text: tokens.join(" "), tokens: tokens.length };
  }
}
