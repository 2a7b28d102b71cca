import {
  estimateUsage,
  errorDetailOf,
  HttpAdapter,
  isObject,
  parseEventJson,
  parseToolArguments,
  streamErrorFailure,
  systemText,
  tokenCount,
  type FailureContext,
  type HttpAdapterOptions,
  type StreamTranslation,
} from "./common.js";
import type { SseEvent } from "./sse.js";
import { ErrorKind, ProviderFailure, type FinishReason, type GenerateInput, type ProviderEvent, type TokenUsage } from "./types.js";

/** The Messages API version this adapter speaks. */
export const ANTHROPIC_VERSION = "2023-06-01";

/** Anthropic requires `max_tokens`; this is sent when neither the request nor the model config sets one. */
export const ANTHROPIC_DEFAULT_MAX_TOKENS = 4096;

export interface AnthropicAdapterOptions extends HttpAdapterOptions {
  /** `max_tokens` per model when a request sets none (from the model's `max_output_tokens`). */
  maxOutputTokens?: ReadonlyMap<string, number>;
}

/** Anthropic's Messages API, streamed (`message_start` … `message_stop`). */
export class AnthropicAdapter extends HttpAdapter {
  private readonly maxOutputTokens: ReadonlyMap<string, number>;

  constructor(options: AnthropicAdapterOptions) {
    super(options);
    this.maxOutputTokens = options.maxOutputTokens ?? new Map();
  }

  override async *stream(input: GenerateInput, signal: AbortSignal): AsyncGenerator<ProviderEvent> {
    const body = anthropicRequestBody(input, this.maxOutputTokens.get(input.model) ?? ANTHROPIC_DEFAULT_MAX_TOKENS, this.ctx);
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: "text/event-stream",
      "anthropic-version": ANTHROPIC_VERSION,
    };
    if (this.options.apiKey) headers["x-api-key"] = this.options.apiKey;
    yield* this.run("messages", headers, body, signal, new AnthropicTranslation(input, this.ctx));
  }
}

type Block = Record<string, unknown>;

/**
 * The Messages request body: system turns become the top-level `system`, tool results become
 * `tool_result` blocks of a user turn, and consecutive turns of one role merge (the API wants
 * user and assistant to alternate, and all results of one round of calls in one user turn).
 */
export function anthropicRequestBody(input: GenerateInput, defaultMaxTokens: number, ctx: FailureContext): Record<string, unknown> {
  const messages: { role: "user" | "assistant"; content: Block[] }[] = [];
  for (const m of input.messages) {
    let role: "user" | "assistant";
    const blocks: Block[] = [];
    if (m.role === "system" || m.role === "developer") continue;
    if (m.role === "user") {
      role = "user";
      if (m.content) blocks.push({ type: "text", text: m.content });
    } else if (m.role === "assistant") {
      role = "assistant";
      if (m.content) blocks.push({ type: "text", text: m.content });
      for (const c of m.toolCalls ?? []) blocks.push({ type: "tool_use", id: c.id, name: c.name, input: parseToolArguments(c.argumentsJson, c.name, ctx) });
    } else if (m.role === "tool") {
      role = "user";
      if (!m.toolCallId) throw new ProviderFailure(ErrorKind.BAD_REQUEST, `${ctx.name}: a tool turn needs the id of the call it answers`);
      blocks.push({ type: "tool_result", tool_use_id: m.toolCallId, content: m.content });
    } else {
      throw new ProviderFailure(ErrorKind.BAD_REQUEST, `${ctx.name}: unknown message role "${m.role.slice(0, 20)}"`);
    }
    if (blocks.length === 0) continue;
    const last = messages[messages.length - 1];
    if (last && last.role === role) last.content.push(...blocks);
    else messages.push({ role, content: blocks });
  }
  const body: Record<string, unknown> = {
    model: input.model,
    max_tokens: input.maxTokens ?? defaultMaxTokens,
    messages,
    stream: true,
  };
  const system = systemText(input);
  if (system) body.system = system;
  if (input.temperature !== undefined) body.temperature = input.temperature;
  if (input.topP !== undefined) body.top_p = input.topP;
  if (input.stop.length > 0) body.stop_sequences = input.stop;
  if (input.tools.length > 0) {
    body.tools = input.tools.map((t) => ({
      name: t.name,
      ...(t.description ? { description: t.description } : {}),
      input_schema: t.parameters ?? { type: "object", properties: {} },
    }));
  }
  const choice = input.toolChoice;
  if (choice && input.tools.length > 0) {
    body.tool_choice =
      choice.mode === "tool" ? { type: "tool", name: choice.name } : { type: choice.mode === "required" ? "any" : choice.mode };
  }
  return body;
}

const FINISH_REASONS: Record<string, FinishReason> = {
  end_turn: "stop",
  stop_sequence: "stop",
  pause_turn: "stop",
  max_tokens: "length",
  model_context_window_exceeded: "length",
  tool_use: "tool_calls",
  refusal: "content_filter",
};

/** Reads the Messages event sequence up to `message_stop`. */
class AnthropicTranslation implements StreamTranslation {
  ended = false;
  private text = "";
  private stopReason: FinishReason | undefined;
  private responseModel: string;
  private usage: Record<string, unknown> | undefined;
  /** Content block index → tool call index, for `tool_use` blocks. */
  private readonly toolBlocks = new Map<number, number>();

  constructor(
    private readonly input: GenerateInput,
    private readonly ctx: FailureContext,
  ) {
    this.responseModel = input.model;
  }

  read(event: SseEvent, started: boolean): ProviderEvent[] {
    const data = parseEventJson(event.data, this.ctx);
    const type = typeof data.type === "string" ? data.type : event.event;
    switch (type) {
      case "message_start": {
        const message = isObject(data.message) ? data.message : {};
        if (typeof message.model === "string" && message.model) this.responseModel = message.model;
        if (isObject(message.usage)) this.usage = { ...message.usage };
        return [];
      }
      case "content_block_start": {
        const block = isObject(data.content_block) ? data.content_block : {};
        const index = typeof data.index === "number" ? data.index : -1;
        if (block.type === "text" && typeof block.text === "string" && block.text) {
          this.text += block.text;
          return [{ type: "delta", text: block.text }];
        }
        if (block.type === "tool_use") {
          const callIndex = this.toolBlocks.size;
          this.toolBlocks.set(index, callIndex);
          const preset = isObject(block.input) && Object.keys(block.input).length > 0 ? JSON.stringify(block.input) : "";
          this.text += preset;
          return [{ type: "tool_call", index: callIndex, id: String(block.id ?? ""), name: String(block.name ?? ""), arguments: preset }];
        }
        return []; // thinking, redacted_thinking, server tool blocks: not part of the answer
      }
      case "content_block_delta": {
        const delta = isObject(data.delta) ? data.delta : {};
        if (delta.type === "text_delta" && typeof delta.text === "string" && delta.text) {
          this.text += delta.text;
          return [{ type: "delta", text: delta.text }];
        }
        if (delta.type === "input_json_delta" && typeof delta.partial_json === "string" && delta.partial_json) {
          const callIndex = this.toolBlocks.get(typeof data.index === "number" ? data.index : -1);
          if (callIndex === undefined) throw new ProviderFailure(ErrorKind.MALFORMED, `${this.ctx.name}: tool arguments for a content block that is no tool call`);
          this.text += delta.partial_json;
          return [{ type: "tool_call", index: callIndex, id: "", name: "", arguments: delta.partial_json }];
        }
        return []; // thinking_delta, signature_delta, citations_delta
      }
      case "message_delta": {
        const delta = isObject(data.delta) ? data.delta : {};
        if (typeof delta.stop_reason === "string") this.stopReason = FINISH_REASONS[delta.stop_reason] ?? "stop";
        // message_delta usage is cumulative and may restate input counts: the latest value wins.
        if (isObject(data.usage)) this.usage = { ...this.usage, ...data.usage };
        return [];
      }
      case "message_stop":
        this.ended = true;
        return [];
      case "error":
        throw streamErrorFailure(errorDetailOf(data) ?? { message: "unknown error", codes: [] }, started, this.ctx);
      default:
        return []; // ping, content_block_stop, and event types added after this adapter was written
    }
  }

  finish(): Extract<ProviderEvent, { type: "finish" }> {
    if (!this.ended) throw new ProviderFailure(ErrorKind.STREAM_BROKEN, `${this.ctx.name}: the stream ended without its message_stop event`);
    return {
      type: "finish",
      finishReason: this.stopReason ?? (this.toolBlocks.size > 0 ? "tool_calls" : "stop"),
      responseModel: this.responseModel,
      usage: this.usage ? usageOf(this.usage) : estimateUsage(this.input, this.text),
    };
  }
}

/** Anthropic's `input_tokens` excludes cache reads and writes; ours counts every input token. */
function usageOf(u: Record<string, unknown>): TokenUsage {
  const cacheRead = tokenCount(u.cache_read_input_tokens);
  const cacheWrite = tokenCount(u.cache_creation_input_tokens);
  return {
    inputTokens: tokenCount(u.input_tokens) + cacheRead + cacheWrite,
    outputTokens: tokenCount(u.output_tokens),
    cachedInputTokens: cacheRead,
    cacheWriteInputTokens: cacheWrite,
    reasoningTokens: 0,
    estimated: false,
  };
}
