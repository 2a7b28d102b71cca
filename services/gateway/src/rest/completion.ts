import type * as http from "node:http";
import { context, SpanStatusCode, type Span } from "@opentelemetry/api";
import type { Config } from "@switchyard/config";
import type { Logger } from "@switchyard/telemetry";
import type { Accounting } from "../accounting/account.js";
import { GatewayError } from "../errors.js";
import type { GatewayMetrics } from "../metrics.js";
import { StreamInterrupted, type Orchestrator } from "../orchestrator.js";
import { annotateDone, annotateRoute, newRequestIdentity } from "../request-context.js";
import type { Caller, TenantResolver } from "../tenants.js";
import { isJsonContentType, unsupportedMediaType } from "../openai/edge.js";
import type { AnswerWriter, CompletionFormat, ParsedCompletion } from "./format.js";
import { CLIENT_GONE, credentials, header, logRequest, readJson, sendJson, startServerSpan, TIMED_OUT, toGatewayError, type DoneEvent } from "./io.js";

/** What every completion entry point runs on. */
export interface CompletionDeps {
  config: Config;
  orchestrator: Orchestrator;
  tenants: TenantResolver;
  accounting: Accounting;
  metrics: GatewayMetrics;
  logger: Logger;
}

/**
 * Serves one completion request in `format`'s wire format. Everything but the format is the same
 * for every API: a server span; the caller identified from its key; the body read (JSON only,
 * bounded in size and time) and parsed; the request admitted against budgets and rate limits and
 * accounted for whatever happens; the completion run by the orchestrator (routing, cache,
 * fallbacks); cancelled when the client goes away or the request timeout passes; one audit line,
 * the metrics and the span's attributes at the end; errors answered in the format's own terms.
 */
export async function serveCompletion<P extends ParsedCompletion>(deps: CompletionDeps, format: CompletionFormat<P>, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const receivedAt = performance.now();
  const { span, ctx } = startServerSpan(deps.config, req, `POST ${format.path}`, {
    "http.request.method": "POST",
    "http.route": format.path,
    "gen_ai.operation.name": format.operation,
  });
  await context.with(ctx, () => serveInSpan(deps, format, req, res, span, receivedAt));
}

async function serveInSpan<P extends ParsedCompletion>(
  deps: CompletionDeps,
  format: CompletionFormat<P>,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  span: Span,
  receivedAt: number,
): Promise<void> {
  const api = format.api;
  const identity = newRequestIdentity(span);
  span.setAttribute("switchyard.request_id", identity.requestId);
  const controller = new AbortController();
  // The client went away before the answer was complete: stop the upstream call too, so nobody
  // pays for an unread answer. (A response that finished also emits "close": nothing to stop.)
  res.once("close", () => {
    if (!res.writableFinished) controller.abort(CLIENT_GONE);
  });
  const timeout = setTimeout(() => controller.abort(TIMED_OUT), deps.config.limits.request_timeout_ms);
  let labels = { api, status: "200", model: "", tier: "", cache: "" };
  let caller: Caller = { tenant: "", keyId: "" };
  let errorCode = "";
  let writer: AnswerWriter | undefined;
  const account = deps.accounting.open({ requestId: identity.requestId, traceId: identity.traceId, api, receivedAt });
  try {
    caller = await deps.tenants.identify(credentials(req));
    account.identify(caller);
    if (!isJsonContentType(header(req, "content-type"))) throw unsupportedMediaType(header(req, "content-type"));
    const body = await readJson(req, deps.config.limits.max_body_bytes, deps.config.limits.body_timeout_ms);
    const parsed = format.parse(body, { config: deps.config, header: (name) => header(req, name) });
    const completion = { ...parsed.completion, requestId: identity.requestId, tenant: caller.tenant, receivedAt };
    await account.admit(completion, parsed.stream);
    const events = account.track(deps.orchestrator.complete(completion, controller.signal));
    writer = format.answer(parsed, {
      res,
      identity,
      firstToken: (model) => deps.metrics.ttft.observe({ api, model }, (performance.now() - receivedAt) / 1000),
    });
    const outcome = await writer.write(events);
    labels = { ...labels, model: outcome.route.id, tier: outcome.route.tier, cache: outcome.route.cache };
    annotateRoute(span, outcome.route);
    if (outcome.done) {
      annotateDone(span, outcome.done);
      record(deps.metrics, api, outcome.done, receivedAt);
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
      sendJson(res, error.status, format.errorBody(error), identity, { ...error.headers(), ...(error.status === 413 || error.status === 408 ? { connection: "close" } : {}) });
    } else if (err instanceof StreamInterrupted && writer) {
      // Headers are gone: the error travels as the API's error event and its end-of-stream
      // marker never comes.
      if (!res.writableEnded) res.end(writer.interrupted(error));
    } else if (!res.writableEnded) res.end();
  } finally {
    clearTimeout(timeout);
    account.close(Number(labels.status), errorCode);
    deps.metrics.requests.inc(labels);
    span.setAttribute("http.response.status_code", Number(labels.status));
    span.end();
    logRequest(deps.logger, api, {
      request_id: identity.requestId,
      trace_id: identity.traceId,
      method: "POST",
      path: format.path,
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

function record(metrics: GatewayMetrics, api: string, done: DoneEvent, receivedAt: number): void {
  const model = done.route.id;
  metrics.duration.observe({ api, model }, (performance.now() - receivedAt) / 1000);
  metrics.tokens.inc({ model, direction: "input" }, done.usage.inputTokens);
  metrics.tokens.inc({ model, direction: "output" }, done.usage.outputTokens);
  metrics.costMicroUsd.inc({ model, tier: done.route.tier }, Number(done.costMicroUsd));
  if (done.savedMicroUsd > 0n) metrics.savedMicroUsd.inc(Number(done.savedMicroUsd));
}
