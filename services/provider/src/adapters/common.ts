import { countChatTokens, countTokens } from "@switchyard/usage";
import { parseSse, type SseEvent } from "./sse.js";
import {
  ErrorKind,
  ProviderFailure,
  sanitiseUpstreamText,
  type GenerateInput,
  type ProviderAdapter,
  type ProviderEvent,
  type TokenUsage,
} from "./types.js";
import { kindForStatus, readLimited, retryAfterMs, Upstream, type PoolStats, type UpstreamHeaders } from "./upstream.js";

/** What every HTTP adapter needs to turn upstream trouble into safe, typed failures. */
export interface FailureContext {
  /** Provider name as configured, the prefix of every message. */
  name: string;
  /** Values removed verbatim from any upstream text (the API key). */
  secrets: readonly string[];
}

/** An error an upstream described in a JSON body. */
export interface UpstreamErrorDetail {
  message: string;
  /** Machine-readable codes, most specific first (Gemini reason, then code, then type/status). */
  codes: string[];
}

/**
 * Reads the error out of a JSON body in any of the three providers' shapes: OpenAI
 * `{"error":{"message","type","code"}}`, Anthropic `{"type":"error","error":{"type","message"}}`,
 * Gemini `{"error":{"code","message","status","details":[{"reason"}]}}` (also wrapped in an array,
 * as its non-SSE streaming endpoint sends it). Undefined when the body is no such error.
 */
export function errorDetailOf(body: string | unknown): UpstreamErrorDetail | undefined {
  let parsed: unknown = body;
  if (typeof body === "string") {
    try {
      parsed = JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  if (Array.isArray(parsed)) parsed = parsed[0];
  if (!isObject(parsed)) return undefined;
  const error = parsed.error;
  if (typeof error === "string") return { message: error, codes: [] };
  if (!isObject(error)) return undefined;
  const codes: string[] = [];
  if (Array.isArray(error.details)) {
    for (const d of error.details) if (isObject(d) && typeof d.reason === "string") codes.push(d.reason);
  }
  for (const key of ["code", "type", "status"] as const) {
    const v = error[key];
    if (typeof v === "string" && v) codes.push(v);
  }
  const message = typeof error.message === "string" ? error.message : "";
  return { message: message || codes[0] || "unknown error", codes };
}

const KIND_FOR_CODE: Record<string, ErrorKind> = {
  // Anthropic error types
  authentication_error: ErrorKind.AUTH,
  permission_error: ErrorKind.AUTH,
  rate_limit_error: ErrorKind.RATE_LIMITED,
  overloaded_error: ErrorKind.OVERLOADED,
  api_error: ErrorKind.OVERLOADED,
  not_found_error: ErrorKind.UNKNOWN_MODEL,
  invalid_request_error: ErrorKind.BAD_REQUEST,
  request_too_large: ErrorKind.BAD_REQUEST,
  // OpenAI codes and types
  invalid_api_key: ErrorKind.AUTH,
  rate_limit_exceeded: ErrorKind.RATE_LIMITED,
  insufficient_quota: ErrorKind.RATE_LIMITED,
  server_error: ErrorKind.OVERLOADED,
  model_not_found: ErrorKind.UNKNOWN_MODEL,
  context_length_exceeded: ErrorKind.BAD_REQUEST,
  // Google reasons and statuses
  API_KEY_INVALID: ErrorKind.AUTH,
  UNAUTHENTICATED: ErrorKind.AUTH,
  PERMISSION_DENIED: ErrorKind.AUTH,
  RESOURCE_EXHAUSTED: ErrorKind.RATE_LIMITED,
  RATE_LIMIT_EXCEEDED: ErrorKind.RATE_LIMITED,
  UNAVAILABLE: ErrorKind.OVERLOADED,
  INTERNAL: ErrorKind.OVERLOADED,
  DEADLINE_EXCEEDED: ErrorKind.TIMEOUT,
  NOT_FOUND: ErrorKind.UNKNOWN_MODEL,
  INVALID_ARGUMENT: ErrorKind.BAD_REQUEST,
  FAILED_PRECONDITION: ErrorKind.BAD_REQUEST,
};

/** The kind the first recognised code names, if any. */
export function kindForCodes(codes: readonly string[]): ErrorKind | undefined {
  for (const c of codes) {
    const kind = KIND_FOR_CODE[c];
    if (kind !== undefined) return kind;
  }
  return undefined;
}

/**
 * The typed failure of a non-2xx response. The status decides the kind, except a plain 4xx whose
 * body names something more specific (Gemini answers a bad key with 400 API_KEY_INVALID). An auth
 * failure's body is never quoted: it may echo the key back.
 */
export function httpFailure(status: number, headers: UpstreamHeaders, body: string, ctx: FailureContext): ProviderFailure {
  const contentType = String(headers["content-type"] ?? "");
  const detail = contentType.includes("html") ? undefined : errorDetailOf(body);
  let kind = kindForStatus(status);
  if (kind === ErrorKind.BAD_REQUEST || kind === ErrorKind.UNKNOWN_MODEL) kind = kindForCodes(detail?.codes ?? []) ?? kind;
  if (kind === ErrorKind.AUTH) return new ProviderFailure(kind, `${ctx.name}: the provider rejected our credentials (HTTP ${status})`, status);
  const retryAfter = kind === ErrorKind.RATE_LIMITED || kind === ErrorKind.OVERLOADED ? retryAfterMs(headers) : 0;
  let suffix = "";
  if (detail) suffix = `: ${sanitiseUpstreamText(detail.message, ctx.secrets)}`;
  else if (contentType.includes("html")) suffix = " with an HTML page (a proxy answered, not the API)";
  return new ProviderFailure(kind, `${ctx.name}: HTTP ${status}${suffix}`, status, retryAfter);
}

/** The typed failure of a 2xx response that is not an event stream: an error body, an HTML page, or anything else. */
export function notAStreamFailure(contentType: string, body: string, ctx: FailureContext): ProviderFailure {
  const detail = contentType.includes("html") ? undefined : errorDetailOf(body);
  if (detail) {
    const kind = kindForCodes(detail.codes) ?? ErrorKind.OVERLOADED;
    if (kind === ErrorKind.AUTH) return new ProviderFailure(kind, `${ctx.name}: the provider rejected our credentials (HTTP 200 carrying an error)`, 200);
    return new ProviderFailure(kind, `${ctx.name}: HTTP 200 carrying an error: ${sanitiseUpstreamText(detail.message, ctx.secrets)}`, 200);
  }
  const what = contentType.includes("html") ? "an HTML page" : `"${sanitiseUpstreamText(contentType, ctx.secrets, 60) || "no content type"}"`;
  return new ProviderFailure(ErrorKind.MALFORMED, `${ctx.name}: expected an event stream, got ${what}`, 200);
}

/** An open event stream and a way to drop what is left of it. */
export interface EventStream {
  events: AsyncGenerator<SseEvent, { clean: boolean }>;
  discard(): void;
}

/**
 * Sends a streaming request and returns its Server-Sent Events once the response proved to be an
 * event stream; otherwise throws the typed failure the status and body describe.
 */
export async function openEventStream(
  upstream: Upstream,
  path: string,
  init: { headers: Record<string, string>; body: string; signal: AbortSignal },
  ctx: FailureContext,
): Promise<EventStream> {
  const res = await upstream.request(path, { method: "POST", ...init });
  const contentType = String(res.headers["content-type"] ?? "");
  if (res.status < 200 || res.status >= 300) {
    const text = await readLimited(res.body).catch(() => "");
    throw httpFailure(res.status, res.headers, text, ctx);
  }
  if (!contentType.includes("text/event-stream")) {
    const text = await readLimited(res.body).catch(() => "");
    throw notAStreamFailure(contentType, text, ctx);
  }
  return { events: parseSse(res.body), discard: res.discard };
}

/**
 * One provider's wire format, read one Server-Sent Event at a time into the common chunk stream.
 * A fresh instance serves one request.
 */
export interface StreamTranslation {
  /** The events one upstream event means; `started` says whether any event reached the caller. Throws ProviderFailure. */
  read(event: SseEvent, started: boolean): ProviderEvent[];
  /** True once the upstream's terminator arrived (what follows is only drained). */
  readonly ended: boolean;
  /** The final event, at the terminator or at the end of the body; throws when the stream stopped short of its terminator. */
  finish(): Extract<ProviderEvent, { type: "finish" }>;
}

/** Options every HTTP adapter takes. */
export interface HttpAdapterOptions {
  /** Provider name as configured, for messages. */
  name: string;
  baseUrl: string;
  apiKey: string | undefined;
  /** Most connections to the upstream; undefined = as many as requests in flight need. */
  maxConnections?: number;
  /** Offer HTTP/2 to an https upstream (default true). */
  http2?: boolean;
  /** Connections opened by `warm` and kept open while idle (default 2). */
  warmConnections?: number;
  /** How often idle warm connections are refreshed; 0 = never (default 30 s). */
  keepWarmIntervalMs?: number;
  /** A started response that sends nothing for this long is broken (default 60 s). */
  idleTimeoutMs?: number;
  /** Trusted CA certificates (PEM) in place of the default roots. */
  ca?: string | Buffer;
}

/**
 * What the OpenAI, Anthropic and Gemini adapters share: a warm keep-alive pool, typed failures,
 * and the loop that turns an event stream into the common chunk stream, drains the body after the
 * terminator (so the connection goes back to the pool) and insists on the terminator.
 */
export abstract class HttpAdapter implements ProviderAdapter {
  protected readonly upstream: Upstream;
  protected readonly ctx: FailureContext;

  constructor(protected readonly options: HttpAdapterOptions) {
    // Idle connections outlive the keep-warm interval, so the warm ones are refreshed, not reopened.
    const keepAliveTimeoutMs = Math.max(60_000, 2 * (options.keepWarmIntervalMs ?? 30_000));
    this.upstream = new Upstream({
      baseUrl: options.baseUrl,
      label: options.name,
      keepAliveTimeoutMs,
      ...(options.maxConnections === undefined ? {} : { maxConnections: options.maxConnections }),
      ...(options.http2 === undefined ? {} : { http2: options.http2 }),
      ...(options.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: options.idleTimeoutMs }),
      ...(options.ca === undefined ? {} : { ca: options.ca }),
    });
    this.ctx = { name: options.name, secrets: options.apiKey ? [options.apiKey] : [] };
  }

  abstract stream(input: GenerateInput, signal: AbortSignal): AsyncIterable<ProviderEvent>;

  /** Opens the warm connections and keeps them warm. */
  async warm(): Promise<void> {
    const target = this.options.warmConnections ?? 2;
    await this.upstream.warm(target);
    this.upstream.keepWarm(target, this.options.keepWarmIntervalMs ?? 30_000);
  }

  /** Connections open now. */
  poolStats(): PoolStats {
    return this.upstream.stats();
  }

  close(): void {
    this.upstream.close();
  }

  /**
   * Streams one request through `translation`. After the terminator the rest of the body is read
   * in the background, detached from the caller's signal, so the connection goes back to the pool
   * even when the caller stops reading at the finish event; a server that keeps the response open
   * after its terminator loses the connection after a second instead of holding it.
   */
  protected async *run(path: string, headers: Record<string, string>, body: unknown, signal: AbortSignal, translation: StreamTranslation): AsyncGenerator<ProviderEvent> {
    const upstreamAbort = new AbortController();
    const forwardAbort = () => upstreamAbort.abort(signal.reason);
    if (signal.aborted) forwardAbort();
    else signal.addEventListener("abort", forwardAbort, { once: true });
    let stream: EventStream | undefined;
    let finished = false;
    try {
      stream = await openEventStream(this.upstream, path, { headers, body: JSON.stringify(body), signal: upstreamAbort.signal }, this.ctx);
      let started = false;
      for (;;) {
        let next: IteratorResult<SseEvent, unknown>;
        try {
          next = await stream.events.next();
        } catch (err) {
          throw readFailure(err, upstreamAbort.signal, this.ctx);
        }
        if (next.done) break;
        for (const out of translation.read(next.value, started)) {
          started = true;
          yield out;
        }
        if (translation.ended) {
          finished = true;
          signal.removeEventListener("abort", forwardAbort);
          break;
        }
      }
      // Throws when the stream stopped short of its terminator.
      const finish = translation.finish();
      finished = true;
      yield finish;
    } finally {
      signal.removeEventListener("abort", forwardAbort);
      if (stream && finished) void drain(stream);
      else if (stream) void stream.events.return({ clean: false });
    }
  }
}

/** Reads what is left of a finished stream (at most a second), so its connection is reused. */
async function drain(stream: EventStream): Promise<void> {
  const timer = setTimeout(stream.discard, 1_000);
  try {
    while (!(await stream.events.next()).done);
  } catch {
    // the connection is gone either way
  } finally {
    clearTimeout(timer);
  }
}

/**
 * An error event inside a stream. Before anything reached the caller it is typed by its code (so
 * the gateway can fall back, e.g. on Anthropic's `overloaded_error`); after, the stream is broken.
 */
export function streamErrorFailure(detail: UpstreamErrorDetail, started: boolean, ctx: FailureContext): ProviderFailure {
  const text = sanitiseUpstreamText(detail.message, ctx.secrets);
  if (started) return new ProviderFailure(ErrorKind.STREAM_BROKEN, `${ctx.name}: the provider reported an error mid-stream: ${text}`);
  const kind = kindForCodes(detail.codes) ?? ErrorKind.OVERLOADED;
  if (kind === ErrorKind.AUTH) return new ProviderFailure(kind, `${ctx.name}: the provider rejected our credentials`);
  return new ProviderFailure(kind, `${ctx.name}: the provider reported an error before answering: ${text}`);
}

/** What a failure while reading the stream means: ours if typed, the caller's deadline, or a broken connection. */
export function readFailure(err: unknown, signal: AbortSignal, ctx: FailureContext): ProviderFailure {
  if (err instanceof ProviderFailure) return err;
  if (signal.aborted) {
    const reason = signal.reason as unknown;
    return reason instanceof ProviderFailure ? reason : new ProviderFailure(ErrorKind.TIMEOUT, `${ctx.name}: request cancelled`);
  }
  return new ProviderFailure(ErrorKind.STREAM_BROKEN, `${ctx.name}: the connection broke mid-stream`);
}

/** Parses one event's JSON data, or fails as a malformed stream. */
export function parseEventJson(data: string, ctx: FailureContext): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    throw new ProviderFailure(ErrorKind.MALFORMED, `${ctx.name}: the provider sent a stream event that is not JSON`);
  }
  if (!isObject(parsed)) throw new ProviderFailure(ErrorKind.MALFORMED, `${ctx.name}: the provider sent a stream event that is not a JSON object`);
  return parsed;
}

/** Parses the JSON arguments of a tool call in history, or fails as a bad request naming the call. */
export function parseToolArguments(argumentsJson: string, callName: string, ctx: FailureContext): Record<string, unknown> {
  if (argumentsJson.trim() === "") return {};
  try {
    const parsed: unknown = JSON.parse(argumentsJson);
    if (isObject(parsed)) return parsed;
  } catch {
    // reported below
  }
  throw new ProviderFailure(ErrorKind.BAD_REQUEST, `${ctx.name}: the arguments of tool call "${callName}" in the conversation are not a JSON object`);
}

/** Usage counted with our tokenizer when the provider reported none, marked estimated. */
export function estimateUsage(input: GenerateInput, outputText: string): TokenUsage {
  const turns = input.messages.map((m) => ({
    role: m.role,
    content: m.content + (m.toolCalls ?? []).map((c) => c.name + c.argumentsJson).join(""),
    ...(m.name ? { name: m.name } : {}),
  }));
  const toolTokens = input.tools.length > 0 ? countTokens(JSON.stringify(input.tools)) : 0;
  return {
    inputTokens: countChatTokens(turns) + toolTokens,
    outputTokens: countTokens(outputText),
    cachedInputTokens: 0,
    cacheWriteInputTokens: 0,
    reasoningTokens: 0,
    estimated: true,
  };
}

/** A non-negative integer token count from an upstream field, 0 when absent or nonsense. */
export function tokenCount(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) && value > 0 ? Math.floor(value) : 0;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Joins the system turns of a conversation (APIs that take the system prompt apart from the turns). */
export function systemText(input: GenerateInput): string {
  return input.messages
    .filter((m) => m.role === "system" || m.role === "developer")
    .map((m) => m.content)
    .join("\n\n");
}
