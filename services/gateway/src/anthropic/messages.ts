import { GatewayError } from "../errors.js";
import { StreamInterrupted, type CompletionEvent, type FinalUsage, type RouteTaken } from "../orchestrator.js";
import type { AnswerSink, AnswerWriter, CompletionFormat } from "../rest/format.js";
import { assembleAnswer, closeEventStream, openEventStream, sendAnswer, write } from "../rest/io.js";
import { parseMessagesRequest, type MessagesRequest } from "./validate.js";

/**
 * Anthropic's Messages API, `POST /v1/messages`: a `message` with text and `tool_use` blocks, or
 * its event stream (`message_start`, `ping`, `content_block_start` / `_delta` / `_stop` per
 * block, `message_delta` with the stop reason and the usage, `message_stop`); errors as
 * `{"type": "error", "error": {"type", "message"}}`, and after a stream started as an `error`
 * event with no `message_stop`. Nothing of OpenAI's shapes appears in it: what Switchyard adds
 * (route, tier, cache, cost) is in the `x-switchyard-*` headers.
 */
export const anthropicMessagesFormat: CompletionFormat<MessagesRequest> = {
  api: "anthropic",
  path: "/v1/messages",
  operation: "chat",
  parse: (body, request) => parseMessagesRequest(body, request.config, request.header("x-switchyard-cache")),
  answer: (parsed, sink) => (parsed.stream ? new MessageStream(sink) : new MessageJson(sink)),
  errorBody: anthropicError,
};

/** An error in Anthropic's shape. */
export function anthropicError(error: GatewayError): { type: "error"; error: { type: string; message: string } } {
  return { type: "error", error: { type: anthropicErrorType(error), message: error.message } };
}

/** Anthropic's error type for a status (its documented list: 400, 401, 403, 404, 413, 429, 500, 529, 504). */
function anthropicErrorType(error: GatewayError): string {
  switch (error.status) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 408:
    case 504:
      return "timeout_error";
    case 503:
      return error.code === "upstream_overloaded" ? "overloaded_error" : "api_error";
    default:
      return error.status < 500 ? "invalid_request_error" : "api_error";
  }
}

/** Our finish reasons as Anthropic's stop reasons. */
const STOP_REASONS: Record<string, string> = { stop: "end_turn", length: "max_tokens", tool_calls: "tool_use", content_filter: "refusal" };

function stopReason(finishReason: string): string {
  return STOP_REASONS[finishReason] ?? "end_turn";
}

/**
 * Usage as Anthropic counts it: `input_tokens` excludes the tokens read from the provider's
 * prompt cache (ours counts every input token), which are `cache_read_input_tokens`.
 */
function anthropicUsage(u: FinalUsage): { input_tokens: number; output_tokens: number; cache_creation_input_tokens: number; cache_read_input_tokens: number } {
  return {
    input_tokens: Math.max(0, u.inputTokens - u.cachedInputTokens),
    output_tokens: u.outputTokens,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: u.cachedInputTokens,
  };
}

/** A tool call's arguments as the object Anthropic's `input` is (an unparsable string from upstream: empty). */
function toolInput(args: string): Record<string, unknown> {
  if (args.trim() === "") return {};
  try {
    const parsed: unknown = JSON.parse(args);
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

function messageId(sink: AnswerSink): string {
  return `msg_${sink.identity.requestId.slice(4)}`;
}

function event(type: string, data: Record<string, unknown>): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
}

class MessageJson implements AnswerWriter {
  constructor(private readonly sink: AnswerSink) {}

  async write(events: AsyncGenerator<CompletionEvent>) {
    const { text, toolCalls, done } = await assembleAnswer(events, this.sink.firstToken);
    const content: Record<string, unknown>[] = [];
    if (text !== "") content.push({ type: "text", text });
    for (const c of toolCalls) content.push({ type: "tool_use", id: c.id, name: c.name, input: toolInput(c.arguments) });
    const body = {
      id: messageId(this.sink),
      type: "message",
      role: "assistant",
      model: done.route.id,
      content,
      stop_reason: stopReason(done.finishReason),
      stop_sequence: null,
      usage: anthropicUsage(done.usage),
    };
    sendAnswer(this.sink.res, body, done, this.sink.identity);
    return { route: done.route, done };
  }

  interrupted(error: GatewayError): string {
    return event("error", { error: anthropicError(error).error });
  }
}

/**
 * The event stream. Content blocks are opened as the answer changes kind (text, or a new tool
 * call) and closed before the next one opens, so blocks never overlap, as Anthropic streams them.
 */
class MessageStream implements AnswerWriter {
  private route: RouteTaken | undefined;
  /** The open block's index, and what it holds (-1: text; otherwise the tool call's index). */
  private open: { index: number; holds: number } | undefined;
  private blocks = 0;
  /** Tool call index → its block index. */
  private readonly callBlocks = new Map<number, number>();
  private firstTokenSent = false;

  constructor(private readonly sink: AnswerSink) {}

  async write(events: AsyncGenerator<CompletionEvent>) {
    const { res, identity } = this.sink;
    for await (const e of events) {
      if (e.type === "routed") {
        this.route = e.route;
        openEventStream(res, e.route, identity);
        // Input tokens are known only when the provider finishes: message_delta carries them
        // (its usage is cumulative and overrides message_start's, as Anthropic's own clients read it).
        await write(
          res,
          event("message_start", {
            message: {
              id: messageId(this.sink),
              type: "message",
              role: "assistant",
              model: e.route.id,
              content: [],
              stop_reason: null,
              stop_sequence: null,
              usage: { input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
            },
          }) + event("ping", {}),
        );
      } else if (e.type === "delta") {
        if (!this.route || e.text === "") continue;
        let out = "";
        if (this.open?.holds !== -1) out += this.close() + this.start({ type: "text", text: "" }, -1);
        out += event("content_block_delta", { index: this.open!.index, delta: { type: "text_delta", text: e.text } });
        await write(res, out);
        this.token();
      } else if (e.type === "tool_call") {
        let out = "";
        let index = this.callBlocks.get(e.index);
        if (index === undefined) {
          out += this.close() + this.start({ type: "tool_use", id: e.id, name: e.name, input: {} }, e.index);
          index = this.open!.index;
          this.callBlocks.set(e.index, index);
        }
        // A fragment of a call whose block was closed (the upstream interleaved two calls) still
        // goes to that call's block: clients assemble blocks by index.
        if (e.arguments !== "") out += event("content_block_delta", { index, delta: { type: "input_json_delta", partial_json: e.arguments } });
        if (out) await write(res, out);
        this.token();
      } else {
        this.route = e.route;
        await write(
          res,
          this.close() +
            event("message_delta", { delta: { stop_reason: stopReason(e.finishReason), stop_sequence: null }, usage: anthropicUsage(e.usage) }) +
            event("message_stop", {}),
        );
        closeEventStream(res, e);
        return { route: e.route, done: e };
      }
    }
    throw new StreamInterrupted(new GatewayError(502, "upstream_error", "incomplete", "the answer ended early"));
  }

  interrupted(error: GatewayError): string {
    return event("error", { error: anthropicError(error).error });
  }

  private start(block: Record<string, unknown>, holds: number): string {
    this.open = { index: this.blocks++, holds };
    return event("content_block_start", { index: this.open.index, content_block: block });
  }

  private close(): string {
    if (!this.open) return "";
    const index = this.open.index;
    this.open = undefined;
    return event("content_block_stop", { index });
  }

  private token(): void {
    if (this.firstTokenSent || !this.route) return;
    this.firstTokenSent = true;
    this.sink.firstToken(this.route.id);
  }
}
