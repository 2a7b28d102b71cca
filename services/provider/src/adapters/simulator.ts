import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { ModelConfig } from "@switchyard/config";
import { countChatTokens, countTokens } from "@switchyard/usage";
import { ErrorKind, ProviderFailure, type FinishReason, type GenerateInput, type ProviderAdapter, type ProviderEvent } from "./types.js";

type Profile = NonNullable<ModelConfig["simulator"]>;

const DEFAULT_PROFILE: Profile = { ttft_ms: 150, ttft_jitter_ms: 0, tokens_per_second: 80, output_tokens: 120, quality: 0.7 };

const VOCABULARY = (
  "the a routing model request answer token latency price quality tier provider stream cache " +
  "policy classifier gateway health circuit fallback budget tenant trace span metric cost " +
  "cheap fast careful precise simple complex reasoning step result because therefore however " +
  "first second finally consider example value function system user question context which " +
  "should could would can is are was were be it this that these those with from into over under"
).split(" ");

/**
 * A stand-in for a real model: deterministic text for a given model and conversation, streamed
 * with the configured time to first token and tokens per second, and usage counted by the real
 * tokenizer. Responses name the simulator, so nobody mistakes them for a model's answer.
 */
export class SimulatorAdapter implements ProviderAdapter {
  private readonly profiles: Map<string, Profile>;

  constructor(
    private readonly providerName: string,
    models: readonly ModelConfig[],
  ) {
    this.profiles = new Map(models.map((m) => [m.name, m.simulator ?? DEFAULT_PROFILE]));
  }

  async *stream(input: GenerateInput, signal: AbortSignal): AsyncGenerator<ProviderEvent> {
    const profile = this.profiles.get(input.model);
    if (!profile) throw new ProviderFailure(ErrorKind.UNKNOWN_MODEL, `${this.providerName}: no simulated model "${input.model}"`, 404);
    // The simulator never calls tools: it may decline them (auto, none) but cannot be forced to use one.
    if (input.tools.length > 0 && (input.toolChoice?.mode === "required" || input.toolChoice?.mode === "tool")) {
      throw new ProviderFailure(ErrorKind.BAD_REQUEST, `${this.providerName}: the simulator cannot call tools`);
    }
    const seed = createHash("sha256").update(input.model).update("\0").update(JSON.stringify(input.messages)).digest();
    const rand = mulberry32(seed.readUInt32LE(0));
    let { text, finishReason } = this.compose(input, profile, rand);
    if (input.maxTokens !== undefined && countTokens(text) > input.maxTokens) {
      text = truncateToTokens(text, input.maxTokens);
      finishReason = "length";
    }
    const ttft = profile.ttft_ms + profile.ttft_jitter_ms * rand();
    await sleep(ttft, undefined, { signal });
    const msPerToken = 1000 / profile.tokens_per_second;
    const words = text.match(/\S+\s*/g) ?? [];
    let due = performance.now();
    for (const word of words) {
      yield { type: "delta", text: word };
      due += countTokens(word) * msPerToken;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait, undefined, { signal });
    }
    yield {
      type: "finish",
      finishReason,
      responseModel: input.model,
      usage: { inputTokens: countChatTokens(input.messages), outputTokens: countTokens(text), cachedInputTokens: 0, cacheWriteInputTokens: 0, reasoningTokens: 0, estimated: false },
    };
  }

  private compose(input: GenerateInput, profile: Profile, rand: () => number): { text: string; finishReason: FinishReason } {
    const lastUser = [...input.messages].reverse().find((m) => m.role === "user")?.content ?? "";
    const topic = lastUser.replace(/\s+/g, " ").trim().slice(0, 60);
    const target = Math.max(8, Math.round(profile.output_tokens * (0.7 + 0.6 * rand())));
    const parts = [`[simulated ${input.model}] On "${topic}${lastUser.length > 60 ? "…" : ""}":`];
    let sentence: string[] = [];
    let tokens = countTokens(parts[0]!);
    while (tokens < target) {
      const word = VOCABULARY[Math.floor(rand() * VOCABULARY.length)]!;
      sentence.push(sentence.length === 0 ? word[0]!.toUpperCase() + word.slice(1) : word);
      tokens += 1;
      if (sentence.length >= 6 + Math.floor(rand() * 10)) {
        parts.push(`${sentence.join(" ")}.`);
        sentence = [];
      }
    }
    if (sentence.length > 0) parts.push(`${sentence.join(" ")}.`);
    let text = parts.join(" ");
    for (const stop of input.stop) {
      const at = stop ? text.indexOf(stop) : -1;
      if (at >= 0) text = text.slice(0, at);
    }
    return { text, finishReason: "stop" };
  }
}

function truncateToTokens(text: string, maxTokens: number): string {
  const words = text.match(/\S+\s*/g) ?? [];
  let out = "";
  for (const w of words) {
    if (countTokens(out + w) > maxTokens) break;
    out += w;
  }
  return out;
}

/** Small, fast, seedable PRNG: the same conversation always gets the same answer. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
