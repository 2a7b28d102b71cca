import { GatewayError } from "../errors.js";
import { StreamInterrupted, type CompletionEvent, type FinalUsage, type RouteTaken } from "../orchestrator.js";
import type { AnswerSink, AnswerWriter, CompletionFormat } from "../rest/format.js";
import { assembleAnswer, closeEventStream, openEventStream, sendAnswer, write, type DoneEvent } from "../rest/io.js";
import { parseResponsesRequest, type ResponseEcho, type ResponsesRequest } from "./validate.js";

/**
 * OpenAI's Responses API, `POST /v1/responses`, stateless: a `response` object whose `output`
 * holds a `message` item (its `output_text`) and `function_call` items, or the event stream
 * (`response.created`, `response.in_progress`, `response.output_item.added`, the content part
 * and `output_text` / `function_call_arguments` deltas and their `.done` events,
 * `response.output_item.done`, then `response.completed` or `response.incomplete`), every event
 * with its `sequence_number`. Errors in OpenAI's envelope; after a stream started, an `error`
 * event and `response.failed`. No Chat Completions field appears in it.
 */
export const responsesFormat: CompletionFormat<ResponsesRequest> = {
  api: "responses",
  path: "/v1/responses",
  operation: "chat",
  parse: (body, request) => parseResponsesRequest(body, request.config, request.header("x-switchyard-cache")),
  answer: (parsed, sink) => (parsed.stream ? new ResponseStream(sink, parsed.echo) : new ResponseJson(sink, parsed.echo)),
  errorBody: (error) => error.toEnvelope(),
};

type Status = "in_progress" | "completed" | "incomplete" | "failed";

/** One item of a response's `output`. */
type OutputItem =
  | { type: "message"; id: string; status: Status; role: "assistant"; content: { type: "output_text"; text: string; annotations: [] }[] }
  | { type: "function_call"; id: string; call_id: string; name: string; arguments: string; status: Status };

function responseId(sink: AnswerSink): string {
  return `resp_${sink.identity.requestId.slice(4)}`;
}

function responsesUsage(u: FinalUsage): Record<string, unknown> {
  return {
    input_tokens: u.inputTokens,
    input_tokens_details: { cached_tokens: u.cachedInputTokens },
    output_tokens: u.outputTokens,
    output_tokens_details: { reasoning_tokens: u.reasoningTokens },
    total_tokens: u.inputTokens + u.outputTokens,
  };
}

/** How a finished answer ends: `incomplete` (with why) when it was cut short. */
function ending(done: DoneEvent): { status: Status; incomplete_details: { reason: string } | null } {
  if (done.finishReason === "length") return { status: "incomplete", incomplete_details: { reason: "max_output_tokens" } };
  if (done.finishReason === "content_filter") return { status: "incomplete", incomplete_details: { reason: "content_filter" } };
  return { status: "completed", incomplete_details: null };
}

/** The `response` object, as a whole answer and in the stream's lifecycle events. */
function responseObject(
  id: string,
  createdAt: number,
  model: string,
  echo: ResponseEcho,
  state: { status: Status; output: OutputItem[]; usage: Record<string, unknown> | null; incomplete_details?: { reason: string } | null; error?: { code: string; message: string } | null },
): Record<string, unknown> {
  return {
    id,
    object: "response",
    created_at: createdAt,
    status: state.status,
    error: state.error ?? null,
    incomplete_details: state.incomplete_details ?? null,
    instructions: echo.instructions,
    max_output_tokens: echo.max_output_tokens,
    model,
    output: state.output,
    parallel_tool_calls: echo.parallel_tool_calls,
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    store: false,
    temperature: echo.temperature,
    text: { format: { type: "text" } },
    tool_choice: echo.tool_choice,
    tools: echo.tools,
    top_p: echo.top_p,
    truncation: "disabled",
    usage: state.usage,
    user: echo.user,
    metadata: echo.metadata,
  };
}

class ResponseJson implements AnswerWriter {
  constructor(
    private readonly sink: AnswerSink,
    private readonly echo: ResponseEcho,
  ) {}

  async write(events: AsyncGenerator<CompletionEvent>) {
    const { text, toolCalls, done } = await assembleAnswer(events, this.sink.firstToken);
    const id = responseId(this.sink);
    const end = ending(done);
    const output: OutputItem[] = [];
    if (text !== "" || toolCalls.length === 0) {
      output.push({ type: "message", id: `msg_${id.slice(5)}`, status: end.status, role: "assistant", content: [{ type: "output_text", text, annotations: [] }] });
    }
    toolCalls.forEach((c, i) => output.push({ type: "function_call", id: `fc_${id.slice(5)}_${i}`, call_id: c.id, name: c.name, arguments: c.arguments, status: "completed" }));
    const body = responseObject(id, Math.floor(Date.now() / 1000), done.route.id, this.echo, { ...end, output, usage: responsesUsage(done.usage) });
    sendAnswer(this.sink.res, body, done, this.sink.identity);
    return { route: done.route, done };
  }

  interrupted(error: GatewayError): string {
    return `event: error\ndata: ${JSON.stringify({ type: "error", code: error.code, message: error.message, param: error.param, sequence_number: 0 })}\n\n`;
  }
}

/**
 * The event stream. Output items are opened as the answer changes kind (text, or a new function
 * call) and finished before the next one opens, as OpenAI streams them.
 */
class ResponseStream implements AnswerWriter {
  private readonly id: string;
  private readonly createdAt = Math.floor(Date.now() / 1000);
  private route: RouteTaken | undefined;
  private sequence = 0;
  private readonly output: OutputItem[] = [];
  /** The item being written: its output index, and for a function call the tool call's index. */
  private open: { index: number; call?: number } | undefined;
  /** Tool call index → its output index. */
  private readonly callItems = new Map<number, number>();
  private firstTokenSent = false;

  constructor(
    private readonly sink: AnswerSink,
    private readonly echo: ResponseEcho,
  ) {
    this.id = responseId(sink);
  }

  async write(events: AsyncGenerator<CompletionEvent>) {
    const { res, identity } = this.sink;
    for await (const e of events) {
      if (e.type === "routed") {
        this.route = e.route;
        openEventStream(res, e.route, identity);
        const response = this.response({ status: "in_progress", usage: null });
        await write(res, this.event("response.created", { response }) + this.event("response.in_progress", { response }));
      } else if (e.type === "delta") {
        if (!this.route || e.text === "") continue;
        let out = "";
        let item = this.open && this.open.call === undefined ? this.output[this.open.index] : undefined;
        if (!item || item.type !== "message") {
          out += this.finishOpen();
          item = { type: "message", id: `msg_${this.id.slice(5)}_${this.output.length}`, status: "in_progress", role: "assistant", content: [] };
          out += this.add(item);
          const part = { type: "output_text" as const, text: "", annotations: [] as [] };
          item.content.push(part);
          out += this.event("response.content_part.added", { item_id: item.id, output_index: this.open!.index, content_index: 0, part });
        }
        item.content[0]!.text += e.text;
        out += this.event("response.output_text.delta", { item_id: item.id, output_index: this.open!.index, content_index: 0, delta: e.text, logprobs: [] });
        await write(res, out);
        this.token();
      } else if (e.type === "tool_call") {
        let out = "";
        let index = this.callItems.get(e.index);
        if (index === undefined) {
          out += this.finishOpen();
          out += this.add({ type: "function_call", id: `fc_${this.id.slice(5)}_${e.index}`, call_id: e.id, name: e.name, arguments: "", status: "in_progress" }, e.index);
          index = this.open!.index;
          this.callItems.set(e.index, index);
        }
        const item = this.output[index]!;
        if (e.arguments !== "" && item.type === "function_call") {
          item.arguments += e.arguments;
          out += this.event("response.function_call_arguments.delta", { item_id: item.id, output_index: index, delta: e.arguments });
        }
        if (out) await write(res, out);
        this.token();
      } else {
        this.route = e.route;
        const end = ending(e);
        const out = this.finishOpen(end.status === "incomplete" ? "incomplete" : "completed");
        const response = this.response({ ...end, usage: responsesUsage(e.usage) });
        await write(res, out + this.event(end.status === "completed" ? "response.completed" : "response.incomplete", { response }));
        closeEventStream(res, e);
        return { route: e.route, done: e };
      }
    }
    throw new StreamInterrupted(new GatewayError(502, "upstream_error", "incomplete", "the answer ended early"));
  }

  interrupted(error: GatewayError): string {
    const failed = this.response({ status: "failed", usage: null, error: { code: error.code, message: error.message } });
    return (
      this.event("error", { code: error.code, message: error.message, param: error.param }) +
      (this.route ? this.event("response.failed", { response: failed }) : "")
    );
  }

  private response(state: { status: Status; usage: Record<string, unknown> | null; incomplete_details?: { reason: string } | null; error?: { code: string; message: string } }) {
    return responseObject(this.id, this.createdAt, this.route?.id ?? "", this.echo, { ...state, output: this.output.map((item) => structuredClone(item)) });
  }

  private event(type: string, data: Record<string, unknown>): string {
    return `event: ${type}\ndata: ${JSON.stringify({ type, ...data, sequence_number: this.sequence++ })}\n\n`;
  }

  /** Opens an output item. */
  private add(item: OutputItem, call?: number): string {
    this.output.push(item);
    this.open = { index: this.output.length - 1, ...(call === undefined ? {} : { call }) };
    const added = item.type === "message" ? { ...item, content: [] } : { ...item };
    return this.event("response.output_item.added", { output_index: this.open.index, item: added });
  }

  /** Finishes the open item: its `.done` events, in the order OpenAI sends them. */
  private finishOpen(status: Status = "completed"): string {
    if (!this.open) return "";
    const index = this.open.index;
    this.open = undefined;
    const item = this.output[index]!;
    let out = "";
    if (item.type === "message") {
      const part = item.content[0]!;
      out += this.event("response.output_text.done", { item_id: item.id, output_index: index, content_index: 0, text: part.text, logprobs: [] });
      out += this.event("response.content_part.done", { item_id: item.id, output_index: index, content_index: 0, part });
    } else {
      out += this.event("response.function_call_arguments.done", { item_id: item.id, output_index: index, name: item.name, arguments: item.arguments });
    }
    item.status = item.type === "message" ? status : "completed";
    return out + this.event("response.output_item.done", { output_index: index, item });
  }

  private token(): void {
    if (this.firstTokenSent || !this.route) return;
    this.firstTokenSent = true;
    this.sink.firstToken(this.route.id);
  }
}
