import type * as http from "node:http";
import { context, isSpanContextValid, SpanKind, trace, type Attributes, type Context, type Link, type Span } from "@opentelemetry/api";
import type { Config } from "@switchyard/config";
import { extractContext, tracer, type Logger } from "@switchyard/telemetry";
import { formatUsd } from "@switchyard/usage/cost";
import { GatewayError, invalidRequest } from "../errors.js";
import type { CompletionEvent, RouteTaken } from "../orchestrator.js";
import type { RequestIdentity } from "../request-context.js";
import type { Credentials } from "../tenants.js";

/**
 * The request's server span. A client's `traceparent` becomes its parent only when
 * `telemetry.trust_client_traceparent` is set; otherwise the span starts a trace of our own and
 * links to the client's, so a caller can still find our trace from theirs but cannot graft its
 * spans into ours or choose our sampling.
 */
export function startServerSpan(config: Config, req: http.IncomingMessage, name: string, attributes: Attributes): { span: Span; ctx: Context } {
  const base = trace.deleteSpan(context.active());
  const remote = extractContext((k) => header(req, k), base);
  if (config.telemetry.trust_client_traceparent) {
    const span = tracer().startSpan(name, { kind: SpanKind.SERVER, attributes }, remote);
    return { span, ctx: trace.setSpan(remote, span) };
  }
  const client = trace.getSpanContext(remote);
  const links: Link[] = client && isSpanContextValid(client) ? [{ context: client, attributes: { "switchyard.link": "client traceparent" } }] : [];
  const span = tracer().startSpan(name, { kind: SpanKind.SERVER, attributes, links, root: true }, base);
  return { span, ctx: trace.setSpan(base, span) };
}

/**
 * The audit line: one per request, with the API it came in on, the tenant and the id of the key
 * it used (never the key), or the reason it was refused at the edge.
 */
export function logRequest(logger: Logger, api: string, fields: Record<string, unknown>): void {
  logger.info("request", { api, ...fields });
}

/** A path as logged: known routes as they are, anything else cut short (it is the client's text). */
export function loggedPath(path: string): string {
  return path.length > 64 ? `${path.slice(0, 64)}...` : path;
}

/** The headers that say what happened, on every answer. */
export function routeHeaders(route: RouteTaken, identity: RequestIdentity): Record<string, string> {
  return {
    "x-switchyard-model": route.id,
    "x-switchyard-tier": route.tier,
    "x-switchyard-cache": route.cache,
    "x-switchyard-request-id": identity.requestId,
    traceparent: identity.traceparent,
  };
}

/** A JSON answer with the request's id and trace. */
export function sendJson(res: http.ServerResponse, status: number, body: unknown, identity: RequestIdentity | undefined, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...(identity ? { "x-switchyard-request-id": identity.requestId, traceparent: identity.traceparent } : {}),
    ...headers,
  });
  res.end(text);
}

/** A whole (not streamed) answer: the route headers and its cost. */
export function sendAnswer(res: http.ServerResponse, body: unknown, done: DoneEvent, identity: RequestIdentity): void {
  sendJson(res, 200, body, identity, { ...routeHeaders(done.route, identity), "x-switchyard-cost-usd": formatUsd(done.costMicroUsd) });
}

/**
 * Starts a server-sent event stream for a routed answer: the route headers now, the cost in a
 * trailer once known (a cache hit costs nothing, said at once).
 */
export function openEventStream(res: http.ServerResponse, route: RouteTaken, identity: RequestIdentity): void {
  const headers: http.OutgoingHttpHeaders = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-accel-buffering": "no",
    ...routeHeaders(route, identity),
  };
  if (route.cache === "hit") headers["x-switchyard-cost-usd"] = formatUsd(0n);
  else headers.trailer = "x-switchyard-cost-usd";
  res.writeHead(200, headers);
  res.flushHeaders();
}

/** Ends an event stream after its last event, with the cost trailer. */
export function closeEventStream(res: http.ServerResponse, done: DoneEvent): void {
  if (done.route.cache !== "hit") res.addTrailers({ "x-switchyard-cost-usd": formatUsd(done.costMicroUsd) });
  res.end();
}

export type DoneEvent = Extract<CompletionEvent, { type: "done" }>;

/** One tool call of an answer, assembled from its fragments. */
export interface AssembledToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** A whole answer read from a completion's events (for answers that are not streamed). */
export interface AssembledAnswer {
  text: string;
  toolCalls: AssembledToolCall[];
  done: DoneEvent;
}

/**
 * Reads a completion's events to the end and assembles the answer: the text, the tool calls (a
 * call's first fragment carries its id and name, later ones only arguments) and the `done` event.
 * `onFirstToken` runs when the first text arrives.
 * @throws GatewayError 502 when the events end without `done`
 */
export async function assembleAnswer(events: AsyncGenerator<CompletionEvent>, onFirstToken: (model: string) => void): Promise<AssembledAnswer> {
  let text = "";
  let model = "";
  const calls: AssembledToolCall[] = [];
  for await (const event of events) {
    if (event.type === "routed") model = event.route.id;
    else if (event.type === "tool_call") {
      const call = (calls[event.index] ??= { id: "", name: "", arguments: "" });
      if (event.id) call.id = event.id;
      if (event.name) call.name = event.name;
      call.arguments += event.arguments;
    } else if (event.type === "delta") {
      if (text === "" && event.text !== "") onFirstToken(model);
      text += event.text;
    } else return { text, toolCalls: calls.filter(Boolean), done: event };
  }
  throw new GatewayError(502, "upstream_error", "incomplete", "the answer ended early");
}

/**
 * Writes, waiting for the socket to drain when the client reads slower than the model writes.
 * Throws once the client is gone, so the stream loop ends (and the upstream call with it) instead
 * of waiting for a drain that never comes.
 */
export function write(res: http.ServerResponse, data: string): Promise<void> | void {
  if (res.destroyed || !res.writable) throw CLIENT_GONE;
  // Events that arrive together (several deltas in one upstream read) leave in one socket write
  // at the end of this tick instead of one system call each.
  if (res.writableCorked === 0) {
    res.cork();
    process.nextTick(uncork, res);
  }
  if (res.write(data)) return;
  return new Promise((resolve, reject) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      if (res.destroyed) reject(CLIENT_GONE);
      else resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

function uncork(res: http.ServerResponse): void {
  res.uncork();
}

/** Abort reasons of a completion, told apart when mapping the error. */
export const CLIENT_GONE = new Error("client disconnected");
export const TIMED_OUT = new Error("request timeout");

/** Reads a JSON body. @throws GatewayError 400 (empty or not JSON), 408, 413 */
export async function readJson(req: http.IncomingMessage, limit: number, stallMs: number): Promise<unknown> {
  const text = (await readBody(req, limit, stallMs)).toString("utf8");
  if (text.trim() === "") throw invalidRequest("the request body is empty; send a JSON object");
  try {
    return JSON.parse(text);
  } catch {
    throw invalidRequest("the request body is not valid JSON", null, "invalid_json");
  }
}

/**
 * Reads a body up to `limit` bytes. A larger body (declared or not) is read to its end and
 * thrown away before the 413 goes out: answering while the client is still uploading would close
 * the connection under it, and a reset connection loses the answer (the client would see a
 * broken pipe, not why). Only a body beyond 16 times the limit is cut short. A body that sends
 * nothing for `stallMs` is a 408.
 */
function readBody(req: http.IncomingMessage, limit: number, stallMs: number): Promise<Buffer> {
  const tooLarge = () => new GatewayError(413, "invalid_request_error", "request_too_large", `the request body is larger than ${limit} bytes`);
  const drainCap = Math.max(limit * 16, 64 << 20);
  if (Number(req.headers["content-length"] ?? "0") > drainCap) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(stalled);
      outcome();
    };
    const stalled = setTimeout(
      () => finish(() => reject(new GatewayError(408, "invalid_request_error", "request_timeout", `the request body sent nothing for ${stallMs} ms`))),
      stallMs,
    );
    req.on("data", (chunk: Buffer) => {
      if (settled) return;
      stalled.refresh();
      size += chunk.length;
      if (size > limit) {
        parts.length = 0;
        if (size > drainCap) finish(() => reject(tooLarge()));
        return;
      }
      parts.push(chunk);
    });
    req.once("end", () => finish(() => (size > limit ? reject(tooLarge()) : resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts)))));
    req.once("error", () => finish(() => reject(new GatewayError(499, "invalid_request_error", "client_closed_request", "the client stopped sending the request body"))));
  });
}

/** The API key a request presents: `Authorization: Bearer`, or `x-api-key` (as Anthropic's SDK sends it). */
export function credentials(req: http.IncomingMessage): Credentials {
  return { authorization: header(req, "authorization"), xApiKey: header(req, "x-api-key") };
}

/** One request header's value (the first, when repeated). */
export function header(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Anything not already a GatewayError is our bug: log it, tell the client no more than that. */
export function toGatewayError(err: unknown, logger: Logger): GatewayError {
  if (err instanceof GatewayError) return err;
  logger.error("unexpected error", { err });
  return new GatewayError(500, "api_error", "internal_error", "internal error in the gateway");
}
