import { randomUUID } from "node:crypto";
import { estimateUsage, errorDetailOf, HttpAdapter, isObject, parseEventJson, streamErrorFailure, tokenCount, type FailureContext, type StreamTranslation } from "./common.js";
import type { SseEvent } from "./sse.js";
import { ErrorKind, ProviderFailure, type FinishReason, type GenerateInput, type ProviderEvent, type TokenUsage } from "./types.js";

/**
 * Chat Completions over any OpenAI-compatible base URL (OpenAI, Together, Fireworks, Groq,
 * DeepInfra, OpenRouter, vLLM, Ollama). Always streams upstream, asking for usage in the final
 * chunk; servers that ignore `stream_options` get their usage counted by our tokenizer.
 */
export class OpenAiAdapter extends HttpAdapter {
  override async *stream(input: GenerateInput, signal: AbortSignal): AsyncGenerator<ProviderEvent> {
    const headers: Record<string, string> = { "content-type": "application/json", accept: "text/event-stream" };
    if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`;
    yield* this.run("chat/completions", headers, openAiRequestBody(input), signal, new OpenAiTranslation(input, this.ctx));
  }
}

/** The Chat Completions request body for a generate input (streaming, usage requested). */
export function openAiRequestBody(input: GenerateInput): Record<string, unknown> {
  const body: Record<string, unknown> = {
    model: input.model,
    messages: input.messages.map((m) => {
      const out: Record<string, unknown> = { role: m.role, content: m.content };
      if (m.name && m.role !== "tool") out.name = m.name;
      if (m.toolCalls && m.toolCalls.length > 0) {
        // OpenAI wants null, not "", for an assistant turn that only calls tools.
        if (m.content === "") out.content = null;
        out.tool_calls = m.toolCalls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.argumentsJson || "{}" } }));
      }
      if (m.role === "tool") out.tool_call_id = m.toolCallId ?? "";
      return out;
    }),
    stream: true,
    stream_options: { include_usage: true },
  };
  if (input.temperature !== undefined) body.temperature = input.temperature;
  if (input.topP !== undefined) body.top_p = input.topP;
  if (input.maxTokens !== undefined) body.max_tokens = input.maxTokens;
  if (input.stop.length > 0) body.stop = input.stop;
  if (input.seed !== undefined) body.seed = Number(input.seed);
  if (input.tools.length > 0) {
    body.tools = input.tools.map((t) => ({
      type: "function",
      function: { name: t.name, ...(t.description ? { description: t.description } : {}), parameters: t.parameters ?? { type: "object", properties: {} } },
    }));
  }
  const choice = input.toolChoice;
  // OpenAI rejects tool_choice without tools.
  if (choice && input.tools.length > 0) body.tool_choice = choice.mode === "tool" ? { type: "function", function: { name: choice.name } } : choice.mode;
  return body;
}

const FINISH_REASONS: Record<string, FinishReason> = {
  stop: "stop",
  length: "length",
  content_filter: "content_filter",
  tool_calls: "tool_calls",
  function_call: "tool_calls",
};

/** Reads `chat.completion.chunk` events up to `data: [DONE]`. */
class OpenAiTranslation implements StreamTranslation {
  ended = false;
  private text = "";
  private finishReason: FinishReason | undefined;
  private responseModel: string;
  private usage: TokenUsage | undefined;
  /** Tool calls seen, by index: servers that omit ids get one of ours on the first fragment. */
  private readonly calls = new Map<number, string>();

  constructor(
    private readonly input: GenerateInput,
    private readonly ctx: FailureContext,
  ) {
    this.responseModel = input.model;
  }

  read(event: SseEvent, started: boolean): ProviderEvent[] {
    if (event.data === "[DONE]") {
      this.ended = true;
      return [];
    }
    const chunk = parseEventJson(event.data, this.ctx);
    const error = errorDetailOf(chunk);
    if (error) throw streamErrorFailure(error, started, this.ctx);
    if (typeof chunk.model === "string" && chunk.model) this.responseModel = chunk.model;
    if (isObject(chunk.usage)) this.usage = usageOf(chunk.usage);
    const out: ProviderEvent[] = [];
    for (const choice of Array.isArray(chunk.choices) ? chunk.choices : []) {
      if (!isObject(choice)) continue;
      const delta = isObject(choice.delta) ? choice.delta : {};
      if (typeof delta.content === "string" && delta.content) {
        this.text += delta.content;
        out.push({ type: "delta", text: delta.content });
      }
      if (Array.isArray(delta.tool_calls)) {
        delta.tool_calls.forEach((call: unknown, position: number) => {
          if (isObject(call)) out.push(this.toolCall(call, position));
        });
      }
      if (typeof choice.finish_reason === "string" && choice.finish_reason) {
        this.finishReason = FINISH_REASONS[choice.finish_reason] ?? "stop";
      }
    }
    return out;
  }

  finish(): Extract<ProviderEvent, { type: "finish" }> {
    if (!this.ended) throw new ProviderFailure(ErrorKind.STREAM_BROKEN, `${this.ctx.name}: the stream ended without its [DONE] terminator`);
    return {
      type: "finish",
      finishReason: this.finishReason ?? (this.calls.size > 0 ? "tool_calls" : "stop"),
      responseModel: this.responseModel,
      usage: this.usage ?? estimateUsage(this.input, this.text),
    };
  }

  private toolCall(call: Record<string, unknown>, position: number): ProviderEvent {
    const index = typeof call.index === "number" ? call.index : position;
    const fn = isObject(call.function) ? call.function : {};
    const args = typeof fn.arguments === "string" ? fn.arguments : "";
    this.text += args;
    if (this.calls.has(index)) return { type: "tool_call", index, id: "", name: "", arguments: args };
    const id = typeof call.id === "string" && call.id ? call.id : `call_${randomUUID().replaceAll("-", "")}`;
    this.calls.set(index, id);
    return { type: "tool_call", index, id, name: typeof fn.name === "string" ? fn.name : "", arguments: args };
  }
}

function usageOf(u: Record<string, unknown>): TokenUsage {
  const prompt = isObject(u.prompt_tokens_details) ? u.prompt_tokens_details : {};
  const completion = isObject(u.completion_tokens_details) ? u.completion_tokens_details : {};
  return {
    inputTokens: tokenCount(u.prompt_tokens),
    outputTokens: tokenCount(u.completion_tokens),
    cachedInputTokens: tokenCount(prompt.cached_tokens),
    cacheWriteInputTokens: 0,
    reasoningTokens: tokenCount(completion.reasoning_tokens),
    estimated: false,
  };
}
