import type * as http from "node:http";
import { context, isSpanContextValid, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Link, type Span } from "@opentelemetry/api";
import type { Client } from "@connectrpc/connect";
import type { Config } from "@switchyard/config";
import type { policy as policyPb } from "@switchyard/proto";
import { extractContext, tracer, type Logger } from "@switchyard/telemetry";
import { formatUsd } from "@switchyard/usage/cost";
import type { Accounting } from "../accounting/account.js";
import { GatewayError, invalidRequest } from "../errors.js";
import type { GatewayMetrics } from "../metrics.js";
import { AUTO_MODEL } from "../model-name.js";
import { StreamInterrupted, type CompletionEvent, type FinalUsage, type Orchestrator, type RouteTaken } from "../orchestrator.js";
import { annotateDone, annotateRoute, newRequestIdentity, type RequestIdentity } from "../request-context.js";
import type { Caller, Credentials, TenantResolver } from "../tenants.js";
import { EdgePolicy, isJsonContentType, unsupportedMediaType } from "./edge.js";
import { parseChatRequest } from "./validate.js";

export interface OpenAiApiDeps {
  config: Config;
  orchestrator: Orchestrator;
  policy: Client<typeof policyPb.PolicyService>;
  tenants: TenantResolver;
  accounting: Accounting;
  metrics: GatewayMetrics;
  logger: Logger;
  /** The operator's page under `/dashboard` (services/gateway/src/dashboard). */
  dashboard?: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<boolean>;
}

/** Probes answered by the server beneath, for anyone: they carry nothing worth taking. */
const PROBES = new Set(["/healthz", "/readyz"]);

/**
 * The OpenAI-compatible REST API: `POST /v1/chat/completions` (streaming and not) and
 * `GET /v1/models`. Every request on the HTTP port passes the edge first (`EdgePolicy`: Host and
 * Origin), except the probes; then CORS headers for an allowed origin and `OPTIONS` preflights.
 * Returns false for any other path (the server answers it: /metrics, or 404).
 */
export function openAiApi(deps: OpenAiApiDeps): (req: http.IncomingMessage, res: http.ServerResponse) => Promise<boolean> {
  const edge = new EdgePolicy(deps.config, deps.tenants.authenticates);
  return async (req, res) => {
    const path = (req.url ?? "").split("?")[0] ?? "";
    if (PROBES.has(path)) return false;
    try {
      const refusal = edge.refusal(req);
      if (refusal) {
        sendError(res, refusal);
        logRequest(deps.logger, { method: req.method ?? "", path: loggedPath(path), status: refusal.status, error: refusal.code });
        return true;
      }
      edge.applyCors(req, res);
      if (deps.dashboard && (path === "/dashboard" || path.startsWith("/dashboard/"))) return await deps.dashboard(req, res);
      const allowed = path === "/v1/chat/completions" ? "POST" : path === "/v1/models" ? "GET" : undefined;
      if (allowed === undefined) return false;
      if (req.method === "OPTIONS") {
        edge.preflight(req, res, allowed);
        return true;
      }
      if (req.method !== allowed) return methodNotAllowed(res, allowed);
      if (allowed === "POST") await chatCompletions(deps, req, res);
      else await listModels(deps, req, res);
      return true;
    } catch (err) {
      // Nothing below should throw (each handler answers its own errors); if something does, the
      // client still gets the envelope and the process does not see an unhandled rejection.
      const error = toGatewayError(err, deps.logger);
      if (!res.headersSent) sendError(res, error);
      else if (!res.writableEnded) res.end();
      return true;
    }
  };
}

async function chatCompletions(deps: OpenAiApiDeps, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const receivedAt = performance.now();
  const { span, ctx } = startServerSpan(deps, req, "POST /v1/chat/completions", {
    "http.request.method": "POST",
    "http.route": "/v1/chat/completions",
    "gen_ai.operation.name": "chat",
  });
  await context.with(ctx, () => chatCompletionsInSpan(deps, req, res, span, receivedAt));
}

/**
 * The request's server span. A client's `traceparent` becomes its parent only when
 * `telemetry.trust_client_traceparent` is set; otherwise the span starts a trace of our own and
 * links to the client's, so a caller can still find our trace from theirs but cannot graft its
 * spans into ours or choose our sampling.
 */
function startServerSpan(deps: OpenAiApiDeps, req: http.IncomingMessage, name: string, attributes: Attributes): { span: Span; ctx: Context } {
  const base = trace.deleteSpan(context.active());
  const remote = extractContext((k) => header(req, k), base);
  if (deps.config.telemetry.trust_client_traceparent) {
    const span = tracer().startSpan(name, { kind: SpanKind.SERVER, attributes }, remote);
    return { span, ctx: trace.setSpan(remote, span) };
  }
  const client = trace.getSpanContext(remote);
  const links: Link[] = client && isSpanContextValid(client) ? [{ context: client, attributes: { "switchyard.link": "client traceparent" } }] : [];
  const span = tracer().startSpan(name, { kind: SpanKind.SERVER, attributes, links, root: true }, base);
  return { span, ctx: trace.setSpan(base, span) };
}

async function chatCompletionsInSpan(deps: OpenAiApiDeps, req: http.IncomingMessage, res: http.ServerResponse, span: Span, receivedAt: number): Promise<void> {
  const identity = newRequestIdentity(span);
  span.setAttribute("switchyard.request_id", identity.requestId);
  const controller = new AbortController();
  // The client went away before the answer was complete: stop the upstream call too, so nobody
  // pays for an unread answer. (A response that finished also emits "close": nothing to stop.)
  res.once("close", () => {
    if (!res.writableFinished) controller.abort(CLIENT_GONE);
  });
  const timeout = setTimeout(() => controller.abort(TIMED_OUT), deps.config.limits.request_timeout_ms);
  let labels = { api: "openai", status: "200", model: "", tier: "", cache: "" };
  let caller: Caller = { tenant: "", keyId: "" };
  let errorCode = "";
  const account = deps.accounting.open({ requestId: identity.requestId, traceId: identity.traceId, api: "openai", receivedAt });
  try {
    caller = await deps.tenants.identify(credentials(req));
    account.identify(caller);
    if (!isJsonContentType(header(req, "content-type"))) throw unsupportedMediaType(header(req, "content-type"));
    const body = await readJson(req, deps.config.limits.max_body_bytes, deps.config.limits.body_timeout_ms);
    const parsed = parseChatRequest(body, deps.config, header(req, "x-switchyard-cache"));
    const completion = { ...parsed.completion, requestId: identity.requestId, tenant: caller.tenant, receivedAt };
    await account.admit(completion, parsed.stream);
    const events = account.track(deps.orchestrator.complete(completion, controller.signal));
    const outcome = parsed.stream
      ? await streamResponse(res, events, identity, parsed.includeUsage, deps, receivedAt)
      : await jsonResponse(res, events, identity, (model) => deps.metrics.ttft.observe({ api: "openai", model }, (performance.now() - receivedAt) / 1000));
    labels = { ...labels, model: outcome.route.id, tier: outcome.route.tier, cache: outcome.route.cache };
    annotateRoute(span, outcome.route);
    if (outcome.done) {
      annotateDone(span, outcome.done);
      record(deps.metrics, outcome.done, receivedAt);
    }
  } catch (err) {
    const error =
      controller.signal.reason === TIMED_OUT
        ? new GatewayError(504, "timeout_error", "timeout", `the request took longer than ${deps.config.limits.request_timeout_ms} ms`)
        : controller.signal.reason === CLIENT_GONE
          ? new GatewayError(499, "invalid_request_error", "client_closed_request", "the client closed the connection")
          : err instanceof StreamInterrupted
            ? err.cause
            : toGatewayError(err, deps.logger);
    labels.status = String(error.status);
    errorCode = error.code;
    span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
    span.setAttribute("error.type", error.code);
    if (!res.headersSent) {
      // Nothing sent yet (any error of a non-streamed answer, or a stream that broke before
      // its first byte): a plain error response. After a 408 or 413 the connection is not reused.
      sendJson(res, error.status, error.toEnvelope(), identity, { ...error.headers(), ...(error.status === 413 || error.status === 408 ? { connection: "close" } : {}) });
    } else if (err instanceof StreamInterrupted) {
      // Headers are gone: the error travels as an event and [DONE] never comes, so no client
      // can take the half answer for a whole one.
      if (!res.writableEnded) res.end(`data: ${JSON.stringify(error.toEnvelope())}\n\n`);
    } else if (!res.writableEnded) res.end();
  } finally {
    clearTimeout(timeout);
    account.close(Number(labels.status), errorCode);
    deps.metrics.requests.inc(labels);
    span.setAttribute("http.response.status_code", Number(labels.status));
    span.end();
    logRequest(deps.logger, {
      request_id: identity.requestId,
      trace_id: identity.traceId,
      method: "POST",
      path: "/v1/chat/completions",
      status: Number(labels.status),
      tenant: caller.tenant,
      key_id: caller.keyId,
      model: labels.model,
      tier: labels.tier,
      cache: labels.cache,
      ...(errorCode ? { error: errorCode } : {}),
      duration_ms: Math.round((performance.now() - receivedAt) * 100) / 100,
    });
  }
}

interface ResponseOutcome {
  route: RouteTaken;
  done?: Extract<CompletionEvent, { type: "done" }>;
}

async function streamResponse(
  res: http.ServerResponse,
  events: AsyncGenerator<CompletionEvent>,
  identity: RequestIdentity,
  includeUsage: boolean,
  deps: OpenAiApiDeps,
  receivedAt: number,
): Promise<ResponseOutcome> {
  const id = `chatcmpl-${identity.requestId.slice(4)}`;
  const created = Math.floor(Date.now() / 1000);
  let route: RouteTaken | undefined;
  let firstTokenSent = false;
  const chunk = (delta: Record<string, unknown>, finishReason: string | null, extra: Record<string, unknown> = {}) =>
    `data: ${JSON.stringify({
      id,
      object: "chat.completion.chunk",
      created,
      model: route!.id,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...(includeUsage ? { usage: null } : {}),
      ...extra,
    })}\n\n`;
  for await (const event of events) {
    if (event.type === "routed") {
      route = event.route;
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
      await write(res, chunk({ role: "assistant", content: "" }, null));
    } else if (event.type === "tool_call") {
      // OpenAI's shape: the first fragment of a call carries id, type and name; later ones only arguments.
      const fn: Record<string, string> = { arguments: event.arguments };
      if (event.name) fn.name = event.name;
      const call: Record<string, unknown> = { index: event.index, function: fn };
      if (event.id) Object.assign(call, { id: event.id, type: "function" });
      await write(res, chunk({ tool_calls: [call] }, null));
    } else if (event.type === "delta") {
      if (!route) continue;
      if (event.text === "") continue;
      await write(res, chunk({ content: event.text }, null));
      if (!firstTokenSent) {
        firstTokenSent = true;
        deps.metrics.ttft.observe({ api: "openai", model: route.id }, (performance.now() - receivedAt) / 1000);
      }
    } else {
      route = event.route;
      await write(res, chunk({}, event.finishReason, { switchyard: switchyardInfo(event, identity) }));
      if (includeUsage) {
        await write(
          res,
          `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model: route.id, choices: [], usage: openAiUsage(event.usage) })}\n\n`,
        );
      }
      await write(res, "data: [DONE]\n\n");
      if (route.cache !== "hit") res.addTrailers({ "x-switchyard-cost-usd": formatUsd(event.costMicroUsd) });
      res.end();
      return { route, done: event };
    }
  }
  throw new StreamInterrupted(new GatewayError(502, "upstream_error", "incomplete", "the answer ended early"));
}

async function jsonResponse(
  res: http.ServerResponse,
  events: AsyncGenerator<CompletionEvent>,
  identity: RequestIdentity,
  onFirstToken: (model: string) => void,
): Promise<ResponseOutcome> {
  let text = "";
  let model = "";
  const calls: { id: string; type: "function"; function: { name: string; arguments: string } }[] = [];
  for await (const event of events) {
    if (event.type === "routed") model = event.route.id;
    else if (event.type === "tool_call") {
      const call = (calls[event.index] ??= { id: "", type: "function", function: { name: "", arguments: "" } });
      if (event.id) call.id = event.id;
      if (event.name) call.function.name = event.name;
      call.function.arguments += event.arguments;
    }
    else if (event.type === "delta") {
      if (text === "" && event.text !== "") onFirstToken(model);
      text += event.text;
    }
    else if (event.type === "done") {
      const route = event.route;
      const body = {
        id: `chatcmpl-${identity.requestId.slice(4)}`,
        object: "chat.completion",
        created: Math.floor(Date.now() / 1000),
        model: route.id,
        choices: [
          {
            index: 0,
            message: { role: "assistant", content: calls.length > 0 && text === "" ? null : text, refusal: null, ...(calls.length > 0 ? { tool_calls: calls.filter(Boolean) } : {}) },
            logprobs: null,
            finish_reason: event.finishReason,
          },
        ],
        usage: openAiUsage(event.usage),
        switchyard: switchyardInfo(event, identity),
      };
      sendJson(res, 200, body, identity, { ...routeHeaders(route, identity), "x-switchyard-cost-usd": formatUsd(event.costMicroUsd) });
      return { route, done: event };
    }
  }
  throw new GatewayError(502, "upstream_error", "incomplete", "the answer ended early");
}

async function listModels(deps: OpenAiApiDeps, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const { span, ctx } = startServerSpan(deps, req, "GET /v1/models", { "http.request.method": "GET", "http.route": "/v1/models" });
  try {
    await context.with(ctx, () => listModelsInSpan(deps, req, res, span));
  } finally {
    span.end();
  }
}

async function listModelsInSpan(deps: OpenAiApiDeps, req: http.IncomingMessage, res: http.ServerResponse, span: Span): Promise<void> {
  const receivedAt = performance.now();
  const identity = newRequestIdentity(span);
  let caller: Caller = { tenant: "", keyId: "" };
  let status = 200;
  let errorCode = "";
  try {
    caller = await deps.tenants.identify(credentials(req));
    const { models } = await deps.policy.listModels({}, { timeoutMs: 2_000 });
    const data = [
      { id: AUTO_MODEL, object: "model", created: 0, owned_by: "switchyard", switchyard: { routed: true, tiers: deps.config.tiers.map((t) => t.name) } },
      ...deps.config.tiers.map((t) => ({ id: `${AUTO_MODEL}:${t.name}`, object: "model", created: 0, owned_by: "switchyard", switchyard: { routed: true, tiers: [t.name] } })),
      ...models.map((m) => ({
        id: `${m.provider}/${m.model}`,
        object: "model",
        created: 0,
        owned_by: m.provider,
        switchyard: {
          routed: false,
          tiers: m.tiers,
          circuit: m.circuit,
          price_source: m.priceSource,
          input_usd_per_mtok: Number(m.price?.inputMicroUsdPerMtok ?? 0n) / 1e6,
          output_usd_per_mtok: Number(m.price?.outputMicroUsdPerMtok ?? 0n) / 1e6,
          cached_input_usd_per_mtok: Number(m.price?.cachedInputMicroUsdPerMtok ?? 0n) / 1e6,
        },
      })),
    ];
    sendJson(res, 200, { object: "list", data }, identity);
  } catch (err) {
    const error = err instanceof GatewayError ? err : new GatewayError(503, "api_error", "policy_unavailable", "the model list is unavailable: the policy service did not answer");
    status = error.status;
    errorCode = error.code;
    span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
    sendJson(res, error.status, error.toEnvelope(), identity);
  } finally {
    span.setAttribute("http.response.status_code", status);
    logRequest(deps.logger, {
      request_id: identity.requestId,
      trace_id: identity.traceId,
      method: "GET",
      path: "/v1/models",
      status,
      tenant: caller.tenant,
      key_id: caller.keyId,
      ...(errorCode ? { error: errorCode } : {}),
      duration_ms: Math.round((performance.now() - receivedAt) * 100) / 100,
    });
  }
}

/**
 * The audit line: one per request, with the tenant and the id of the key it used (never the key),
 * or the reason it was refused at the edge.
 */
function logRequest(logger: Logger, fields: Record<string, unknown>): void {
  logger.info("request", { api: "openai", ...fields });
}

/** A path as logged: known routes as they are, anything else cut short (it is the client's text). */
function loggedPath(path: string): string {
  return path.length > 64 ? `${path.slice(0, 64)}...` : path;
}

/** An error answered outside a request's span (edge refusals, the last-resort catch). */
function sendError(res: http.ServerResponse, error: GatewayError): void {
  const text = JSON.stringify(error.toEnvelope());
  res.writeHead(error.status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function record(metrics: GatewayMetrics, done: Extract<CompletionEvent, { type: "done" }>, receivedAt: number): void {
  const model = done.route.id;
  metrics.duration.observe({ api: "openai", model }, (performance.now() - receivedAt) / 1000);
  metrics.tokens.inc({ model, direction: "input" }, done.usage.inputTokens);
  metrics.tokens.inc({ model, direction: "output" }, done.usage.outputTokens);
  metrics.costMicroUsd.inc({ model, tier: done.route.tier }, Number(done.costMicroUsd));
  if (done.savedMicroUsd > 0n) metrics.savedMicroUsd.inc(Number(done.savedMicroUsd));
}

function routeHeaders(route: RouteTaken, identity: RequestIdentity): Record<string, string> {
  return {
    "x-switchyard-model": route.id,
    "x-switchyard-tier": route.tier,
    "x-switchyard-cache": route.cache,
    "x-switchyard-request-id": identity.requestId,
    traceparent: identity.traceparent,
  };
}

function switchyardInfo(done: Extract<CompletionEvent, { type: "done" }>, identity: RequestIdentity): Record<string, unknown> {
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

function sendJson(res: http.ServerResponse, status: number, body: unknown, identity: RequestIdentity, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "x-switchyard-request-id": identity.requestId,
    traceparent: identity.traceparent,
    ...headers,
  });
  res.end(text);
}

/**
 * Writes, waiting for the socket to drain when the client reads slower than the model writes.
 * Throws once the client is gone, so the stream loop ends (and the upstream call with it) instead
 * of waiting for a drain that never comes.
 */
function write(res: http.ServerResponse, data: string): Promise<void> | void {
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
const CLIENT_GONE = new Error("client disconnected");
const TIMED_OUT = new Error("request timeout");

async function readJson(req: http.IncomingMessage, limit: number, stallMs: number): Promise<unknown> {
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

function methodNotAllowed(res: http.ServerResponse, allowed: string): true {
  res.setHeader("allow", `${allowed}, OPTIONS`);
  sendError(res, new GatewayError(405, "invalid_request_error", "method_not_allowed", `use ${allowed} for this path`));
  return true;
}

/** The API key a request presents: `Authorization: Bearer`, or `x-api-key` (as Anthropic's SDK sends it). */
export function credentials(req: http.IncomingMessage): Credentials {
  return { authorization: header(req, "authorization"), xApiKey: header(req, "x-api-key") };
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Anything not already a GatewayError is our bug: log it, tell the client no more than that. */
export function toGatewayError(err: unknown, logger: Logger): GatewayError {
  if (err instanceof GatewayError) return err;
  logger.error("unexpected error", { err });
  return new GatewayError(500, "api_error", "internal_error", "internal error in the gateway");
}
