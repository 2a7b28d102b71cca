import { formatUsd } from "@switchyard/usage/cost";
import { GatewayError } from "../errors.js";
import { StreamInterrupted, type CompletionEvent, type FinalUsage, type RouteTaken } from "../orchestrator.js";
import type { RequestIdentity } from "../request-context.js";
import type { AnswerSink, AnswerWriter, CompletionFormat } from "../rest/format.js";
import { assembleAnswer, closeEventStream, openEventStream, sendAnswer, write, type DoneEvent } from "../rest/io.js";
import { parseChatRequest, type ChatRequest } from "./validate.js";

/**
 * OpenAI's Chat Completions API, `POST /v1/chat/completions`: a `chat.completion`, or
 * `chat.completion.chunk` events ending in `data: [DONE]` (with a usage chunk when
 * `stream_options.include_usage` is set); errors in OpenAI's envelope, and after a stream started
 * as a `data:` event with an `error` object and no `[DONE]`.
 */
export const chatCompletionsFormat: CompletionFormat<ChatRequest> = {
  api: "openai",
  path: "/v1/chat/completions",
  operation: "chat",
  parse: (body, request) => parseChatRequest(body, request.config, request.header("x-switchyard-cache")),
  answer: (parsed, sink) => (parsed.stream ? new ChatStream(sink, parsed.includeUsage) : new ChatJson(sink)),
  errorBody: (error) => error.toEnvelope(),
};

class ChatJson implements AnswerWriter {
  constructor(private readonly sink: AnswerSink) {}

  async write(events: AsyncGenerator<CompletionEvent>) {
    const { text, toolCalls, done } = await assembleAnswer(events, this.sink.firstToken);
    const calls = toolCalls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } }));
    const body = {
      id: chatId(this.sink.identity),
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: done.route.id,
      choices: [
        {
          index: 0,
          message: { role: "assistant", content: calls.length > 0 && text === "" ? null : text, refusal: null, ...(calls.length > 0 ? { tool_calls: calls } : {}) },
          logprobs: null,
          finish_reason: done.finishReason,
        },
      ],
      usage: openAiUsage(done.usage),
      switchyard: switchyardInfo(done, this.sink.identity),
    };
    sendAnswer(this.sink.res, body, done, this.sink.identity);
    return { route: done.route, done };
  }

  interrupted(error: GatewayError): string {
    return `data: ${JSON.stringify(error.toEnvelope())}\n\n`;
  }
}

class ChatStream implements AnswerWriter {
  private readonly id: string;
  private readonly created = Math.floor(Date.now() / 1000);
  private route: RouteTaken | undefined;

  constructor(
    private readonly sink: AnswerSink,
    private readonly includeUsage: boolean,
  ) {
    this.id = chatId(sink.identity);
  }

  private chunk(delta: Record<string, unknown>, finishReason: string | null, extra: Record<string, unknown> = {}): string {
    return `data: ${JSON.stringify({
      id: this.id,
      object: "chat.completion.chunk",
      created: this.created,
      model: this.route!.id,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...(this.includeUsage ? { usage: null } : {}),
      ...extra,
    })}\n\n`;
  }

  async write(events: AsyncGenerator<CompletionEvent>) {
    const { res, identity } = this.sink;
    let firstTokenSent = false;
    for await (const event of events) {
      if (event.type === "routed") {
        this.route = event.route;
        openEventStream(res, event.route, identity);
        await write(res, this.chunk({ role: "assistant", content: "" }, null));
      } else if (event.type === "tool_call") {
        // OpenAI's shape: the first fragment of a call carries id, type and name; later ones only arguments.
        const fn: Record<string, string> = { arguments: event.arguments };
        if (event.name) fn.name = event.name;
        const call: Record<string, unknown> = { index: event.index, function: fn };
        if (event.id) Object.assign(call, { id: event.id, type: "function" });
        await write(res, this.chunk({ tool_calls: [call] }, null));
      } else if (event.type === "delta") {
        if (!this.route || event.text === "") continue;
        await write(res, this.chunk({ content: event.text }, null));
        if (!firstTokenSent) {
          firstTokenSent = true;
          this.sink.firstToken(this.route.id);
        }
      } else {
        this.route = event.route;
        await write(res, this.chunk({}, event.finishReason, { switchyard: switchyardInfo(event, identity) }));
        if (this.includeUsage) {
          await write(res, `data: ${JSON.stringify({ id: this.id, object: "chat.completion.chunk", created: this.created, model: event.route.id, choices: [], usage: openAiUsage(event.usage) })}\n\n`);
        }
        await write(res, "data: [DONE]\n\n");
        closeEventStream(res, event);
        return { route: event.route, done: event };
      }
    }
    throw new StreamInterrupted(new GatewayError(502, "upstream_error", "incomplete", "the answer ended early"));
  }

  interrupted(error: GatewayError): string {
    return `data: ${JSON.stringify(error.toEnvelope())}\n\n`;
  }
}

function chatId(identity: RequestIdentity): string {
  return `chatcmpl-${identity.requestId.slice(4)}`;
}

/** Switchyard's account of the answer, in the `switchyard` field of a chat completion. */
function switchyardInfo(done: DoneEvent, identity: RequestIdentity): Record<string, unknown> {
  return {
    request_id: identity.requestId,
    model: done.route.id,
    tier: done.route.tier,
    task_type: done.route.taskType,
    reason: done.route.reason,
    cache: done.route.cache,
    ...(done.route.cacheKind ? { cache_kind: done.route.cacheKind } : {}),
    fallbacks: done.route.fallbacks,
    cost_usd: formatUsd(done.costMicroUsd),
    saved_usd: formatUsd(done.savedMicroUsd),
    ...(done.baseline
      ? { baseline_model: done.baseline.model, baseline_usd: formatUsd(done.baseline.microUsd), saved_vs_baseline_usd: formatUsd(done.baseline.microUsd - done.costMicroUsd) }
      : {}),
    usage_estimated: done.usage.estimated,
  };
}

function openAiUsage(u: FinalUsage): Record<string, unknown> {
  return {
    prompt_tokens: u.inputTokens,
    completion_tokens: u.outputTokens,
    total_tokens: u.inputTokens + u.outputTokens,
    prompt_tokens_details: { cached_tokens: u.cachedInputTokens },
    completion_tokens_details: { reasoning_tokens: u.reasoningTokens },
  };
}
