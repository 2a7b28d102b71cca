import { randomUUID } from "node:crypto";
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
  type StreamTranslation,
} from "./common.js";
import type { SseEvent } from "./sse.js";
import { ErrorKind, ProviderFailure, type FinishReason, type GenerateInput, type ProviderEvent, type TokenUsage } from "./types.js";

/**
 * Gemini's `streamGenerateContent` with `alt=sse`. The key travels in the `x-goog-api-key` header,
 * never in the URL (URLs end up in logs and traces).
 */
export class GeminiAdapter extends HttpAdapter {
  override async *stream(input: GenerateInput, signal: AbortSignal): AsyncGenerator<ProviderEvent> {
    const body = geminiRequestBody(input, this.ctx);
    const headers: Record<string, string> = { "content-type": "application/json", accept: "text/event-stream" };
    if (this.options.apiKey) headers["x-goog-api-key"] = this.options.apiKey;
    yield* this.run(`${geminiModelPath(input.model)}:streamGenerateContent?alt=sse`, headers, body, signal, new GeminiTranslation(input, this.ctx));
  }
}

/** `models/<name>`, or the resource name as given when it already has a collection (`tunedModels/…`). */
export function geminiModelPath(model: string): string {
  const path = model.includes("/") ? model : `models/${model}`;
  return path.split("/").map(encodeURIComponent).join("/");
}

type Part = Record<string, unknown>;

/**
 * The `GenerateContentRequest`: system turns become `systemInstruction`, assistant turns are role
 * `model`, tool results are `functionResponse` parts of a user turn, and consecutive turns of one
 * role merge (Gemini wants user and model to alternate).
 */
export function geminiRequestBody(input: GenerateInput, ctx: FailureContext): Record<string, unknown> {
  const callNames = new Map<string, string>();
  const contents: { role: "user" | "model"; parts: Part[] }[] = [];
  for (const m of input.messages) {
    let role: "user" | "model";
    const parts: Part[] = [];
    if (m.role === "system" || m.role === "developer") continue;
    if (m.role === "user") {
      role = "user";
      if (m.content) parts.push({ text: m.content });
    } else if (m.role === "assistant") {
      role = "model";
      if (m.content) parts.push({ text: m.content });
      for (const c of m.toolCalls ?? []) {
        callNames.set(c.id, c.name);
        parts.push({ functionCall: { name: c.name, args: parseToolArguments(c.argumentsJson, c.name, ctx) } });
      }
    } else if (m.role === "tool") {
      role = "user";
      const name = m.name || callNames.get(m.toolCallId ?? "");
      if (!name) throw new ProviderFailure(ErrorKind.BAD_REQUEST, `${ctx.name}: a tool turn needs the name of its function or the id of an earlier call`);
      parts.push({ functionResponse: { name, response: toolResponse(m.content) } });
    } else {
      throw new ProviderFailure(ErrorKind.BAD_REQUEST, `${ctx.name}: unknown message role "${m.role.slice(0, 20)}"`);
    }
    if (parts.length === 0) continue;
    const last = contents[contents.length - 1];
    if (last && last.role === role) last.parts.push(...parts);
    else contents.push({ role, parts });
  }
  const body: Record<string, unknown> = { contents };
  const system = systemText(input);
  if (system) body.systemInstruction = { parts: [{ text: system }] };
  const generationConfig: Record<string, unknown> = {};
  if (input.temperature !== undefined) generationConfig.temperature = input.temperature;
  if (input.topP !== undefined) generationConfig.topP = input.topP;
  if (input.maxTokens !== undefined) generationConfig.maxOutputTokens = input.maxTokens;
  if (input.stop.length > 0) generationConfig.stopSequences = input.stop;
  if (input.seed !== undefined) generationConfig.seed = Number(input.seed);
  if (Object.keys(generationConfig).length > 0) body.generationConfig = generationConfig;
  if (input.tools.length > 0) {
    body.tools = [
      {
        functionDeclarations: input.tools.map((t) => ({
          name: t.name,
          ...(t.description ? { description: t.description } : {}),
          // parametersJsonSchema takes full JSON Schema; `parameters` only an OpenAPI subset.
          ...(t.parameters ? { parametersJsonSchema: t.parameters } : {}),
        })),
      },
    ];
    const choice = input.toolChoice;
    if (choice) {
      const mode = { auto: "AUTO", none: "NONE", required: "ANY", tool: "ANY" }[choice.mode];
      body.toolConfig = { functionCallingConfig: { mode, ...(choice.mode === "tool" ? { allowedFunctionNames: [choice.name] } : {}) } };
    }
  }
  return body;
}

/** A function response must be a JSON object: results that are not one are wrapped. */
function toolResponse(content: string): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(content);
    if (isObject(parsed)) return parsed;
    return { result: parsed };
  } catch {
    return { result: content };
  }
}

const FINISH_REASONS: Record<string, FinishReason> = {
  STOP: "stop",
  MAX_TOKENS: "length",
  SAFETY: "content_filter",
  RECITATION: "content_filter",
  BLOCKLIST: "content_filter",
  PROHIBITED_CONTENT: "content_filter",
  SPII: "content_filter",
  IMAGE_SAFETY: "content_filter",
  IMAGE_PROHIBITED_CONTENT: "content_filter",
  IMAGE_RECITATION: "content_filter",
};

/**
 * Reads `GenerateContentResponse` chunks. There is no terminator event: a complete stream is one
 * whose last candidate chunk carried a `finishReason` (or whose prompt was blocked) before EOF.
 */
class GeminiTranslation implements StreamTranslation {
  readonly ended = false;
  private text = "";
  private finishReason: FinishReason | undefined;
  private responseModel: string;
  private usage: TokenUsage | undefined;
  private calls = 0;

  constructor(
    private readonly input: GenerateInput,
    private readonly ctx: FailureContext,
  ) {
    this.responseModel = input.model;
  }

  read(event: SseEvent, started: boolean): ProviderEvent[] {
    const chunk = parseEventJson(event.data, this.ctx);
    const error = errorDetailOf(chunk);
    if (error) throw streamErrorFailure(error, started, this.ctx);
    if (typeof chunk.modelVersion === "string" && chunk.modelVersion) this.responseModel = chunk.modelVersion;
    // usageMetadata is cumulative: each chunk restates the totals so far, so the last one wins.
    if (isObject(chunk.usageMetadata)) this.usage = usageOf(chunk.usageMetadata);
    const feedback = isObject(chunk.promptFeedback) ? chunk.promptFeedback : {};
    if (typeof feedback.blockReason === "string" && feedback.blockReason) this.finishReason = "content_filter";
    const out: ProviderEvent[] = [];
    const candidate: unknown = Array.isArray(chunk.candidates) ? chunk.candidates[0] : undefined;
    if (!isObject(candidate)) return out;
    const content = isObject(candidate.content) ? candidate.content : {};
    for (const part of Array.isArray(content.parts) ? content.parts : []) {
      if (!isObject(part) || part.thought === true) continue; // thought summaries are not the answer
      if (typeof part.text === "string" && part.text) {
        this.text += part.text;
        out.push({ type: "delta", text: part.text });
      } else if (isObject(part.functionCall)) {
        const call = part.functionCall;
        const args = JSON.stringify(isObject(call.args) ? call.args : {});
        this.text += args;
        // Gemini sends each call whole, in one part; older models give it no id.
        const id = typeof call.id === "string" && call.id ? call.id : `call_${randomUUID().replaceAll("-", "")}`;
        out.push({ type: "tool_call", index: this.calls++, id, name: String(call.name ?? ""), arguments: args });
      }
    }
    if (typeof candidate.finishReason === "string" && candidate.finishReason) {
      const reason = FINISH_REASONS[candidate.finishReason] ?? "stop";
      // Gemini says STOP after function calls; OpenAI clients expect tool_calls.
      this.finishReason = reason === "stop" && this.calls > 0 ? "tool_calls" : reason;
    }
    return out;
  }

  finish(): Extract<ProviderEvent, { type: "finish" }> {
    if (!this.finishReason) throw new ProviderFailure(ErrorKind.STREAM_BROKEN, `${this.ctx.name}: the stream ended without a finishReason`);
    return {
      type: "finish",
      finishReason: this.finishReason,
      responseModel: this.responseModel,
      usage: this.usage ?? estimateUsage(this.input, this.text),
    };
  }
}

/** candidatesTokenCount excludes thinking; ours counts every output token, reasoning included. */
function usageOf(u: Record<string, unknown>): TokenUsage {
  const thoughts = tokenCount(u.thoughtsTokenCount);
  return {
    inputTokens: tokenCount(u.promptTokenCount) + tokenCount(u.toolUsePromptTokenCount),
    outputTokens: tokenCount(u.candidatesTokenCount) + thoughts,
    cachedInputTokens: tokenCount(u.cachedContentTokenCount),
    cacheWriteInputTokens: 0,
    reasoningTokens: thoughts,
    estimated: false,
  };
}
