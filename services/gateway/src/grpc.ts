import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { trace, type Span } from "@opentelemetry/api";
import type { Config } from "@switchyard/config";
import { gateway as pb } from "@switchyard/proto";
import type { Logger } from "@switchyard/telemetry";
import { formatUsd } from "@switchyard/usage/cost";
import type { Accounting } from "./accounting/account.js";
import { GatewayError, invalidRequest } from "./errors.js";
import type { RouteExplainer } from "./explain.js";
import type { GatewayMetrics } from "./metrics.js";
import { parseModel } from "./model-name.js";
import { StreamInterrupted, type CompletionEvent, type CompletionRequest, type Orchestrator, type RouteTaken } from "./orchestrator.js";
import { annotateDone, newRequestIdentity, type RequestIdentity } from "./request-context.js";
import { rpcCredentials, type Caller, type TenantResolver } from "./tenants.js";

const ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);

/**
 * `switchyard.gateway.v1.GatewayService` over gRPC, Connect and gRPC-Web. Route headers
 * (`x-switchyard-*`) go out with the first message; the last message carries the route, usage and
 * cost, and the cost is repeated in the trailers.
 */
export class GatewayHandler implements ServiceImpl<typeof pb.GatewayService> {
  constructor(
    private readonly config: Config,
    private readonly orchestrator: Orchestrator,
    private readonly tenants: TenantResolver,
    private readonly accounting: Accounting,
    private readonly metrics: GatewayMetrics,
    private readonly logger: Logger,
    private readonly explainer: RouteExplainer,
  ) {}

  async *streamComplete(req: pb.CompleteRequest, ctx: HandlerContext): AsyncGenerator<pb.CompleteResponse> {
    const labels = { api: "grpc", status: "OK", model: "", tier: "", cache: "" };
    const receivedAt = performance.now();
    const { span, identity } = rpcIdentity(ctx);
    let caller: Caller = { tenant: "", keyId: "" };
    let errorCode = "";
    let answered = false;
    const account = this.accounting.open({ requestId: identity.requestId, traceId: identity.traceId, api: "grpc", receivedAt });
    try {
      caller = await this.tenants.identify(rpcCredentials(ctx.requestHeader));
      account.identify(caller);
      const request = this.toRequest(req, caller.tenant, identity.requestId, receivedAt);
      // Complete() is StreamComplete read to its end: it counts as not streamed.
      await account.admit(request, ctx.method.name === "StreamComplete");
      for await (const event of account.track(this.run(ctx, span, request))) {
        if (event.type === "routed") {
          Object.assign(labels, { model: event.route.id, tier: event.route.tier, cache: event.route.cache });
        } else if (event.type === "delta") {
          if (event.text) yield create(pb.CompleteResponseSchema, { text: event.text });
        } else if (event.type === "tool_call") {
          // The gRPC API takes no tools, so providers are never asked for calls through it.
          continue;
        } else {
          ctx.responseTrailer.set("x-switchyard-cost-usd", formatUsd(event.costMicroUsd));
          this.metrics.costMicroUsd.inc({ model: event.route.id, tier: event.route.tier }, Number(event.costMicroUsd));
          answered = true;
          yield create(pb.CompleteResponseSchema, { completion: completionOf(event, ctx) });
        }
      }
      if (!answered) throw new StreamInterrupted(new GatewayError(502, "upstream_error", "incomplete", "the answer ended early"));
    } catch (err) {
      const error = ctx.signal.aborted ? abortError(ctx.signal.reason) : err instanceof StreamInterrupted ? err.cause : err instanceof GatewayError ? err : undefined;
      labels.status = error ? String(error.status) : "500";
      errorCode = error?.code ?? "internal_error";
      throw this.toConnect(err);
    } finally {
      if (!answered && labels.status === "OK") {
        // Stopped before the answer without an error of ours: the caller went away (or its deadline passed).
        const error = abortError(ctx.signal.reason);
        labels.status = String(error.status);
        errorCode = error.code;
      }
      account.close(labels.status === "OK" ? 200 : Number(labels.status), errorCode);
      this.metrics.requests.inc(labels);
      // The audit line: who (tenant, key id; never the key), what, and how it ended.
      this.logger.info("request", {
        ...auditFields(ctx, identity, caller, labels.status, errorCode, receivedAt),
        model: labels.model,
        tier: labels.tier,
        cache: labels.cache,
      });
    }
  }

  async complete(req: pb.CompleteRequest, ctx: HandlerContext): Promise<pb.CompleteResponse> {
    let text = "";
    for await (const message of this.streamComplete(req, ctx)) {
      text += message.text;
      if (message.completion) return create(pb.CompleteResponseSchema, { text, completion: message.completion });
    }
    throw new GatewayError(502, "upstream_error", "incomplete", "the answer ended early").toConnectError();
  }

  /**
   * Explains how a CompleteRequest would be routed, without answering it. The caller is
   * authenticated and its tenant found as for a completion; `tenant` may name another tenant only
   * while the gateway has no API keys (a local gateway, where no caller can be told apart).
   */
  async routeExplain(req: pb.RouteExplainRequest, ctx: HandlerContext): Promise<pb.RouteExplainResponse> {
    const receivedAt = performance.now();
    const { identity } = rpcIdentity(ctx);
    let caller: Caller = { tenant: "", keyId: "" };
    let status = "OK";
    let errorCode = "";
    let explained: pb.RouteExplainResponse | undefined;
    try {
      caller = await this.tenants.identify(rpcCredentials(ctx.requestHeader));
      const tenant = this.tenantFor(req.tenant, caller);
      explained = await this.explainer.explain(this.toRequest(req.request ?? create(pb.CompleteRequestSchema), tenant, identity.requestId, receivedAt), ctx.signal);
      return explained;
    } catch (err) {
      const error = ctx.signal.aborted ? abortError(ctx.signal.reason) : err instanceof GatewayError ? err : undefined;
      status = error ? String(error.status) : "500";
      errorCode = error?.code ?? "internal_error";
      throw this.toConnect(err);
    } finally {
      this.logger.info("request", {
        ...auditFields(ctx, identity, caller, status, errorCode, receivedAt),
        ...(explained ? { model: explained.model, tier: explained.tier } : {}),
      });
    }
  }

  /** The tenant an explanation is for: the caller's, or one it names (see routeExplain). */
  private tenantFor(named: string, caller: Caller): string {
    if (!named || named === caller.tenant) return caller.tenant;
    if (this.tenants.authenticates) throw new GatewayError(403, "permission_error", "tenant_not_allowed", `this API key belongs to tenant "${caller.tenant}", not "${named}"`, "tenant");
    if (!this.config.tenants.some((t) => t.name === named)) {
      throw new GatewayError(404, "not_found_error", "tenant_not_found", `unknown tenant "${named}" (tenants: ${this.config.tenants.map((t) => t.name).join(", ")})`, "tenant");
    }
    return named;
  }

  private async *run(ctx: HandlerContext, span: Span, request: CompletionRequest): AsyncGenerator<CompletionEvent> {
    for await (const event of this.orchestrator.complete(request, ctx.signal)) {
      if (event.type === "routed") setRouteHeaders(ctx, event.route);
      if (event.type === "done") annotateDone(span, event);
      yield event;
    }
  }

  private toRequest(req: pb.CompleteRequest, tenant: string, requestId: string, receivedAt: number): CompletionRequest {
    if (req.messages.length === 0) throw invalidRequest("messages must not be empty", "messages");
    if (req.messages.length > this.config.limits.max_messages) throw invalidRequest(`messages has more than ${this.config.limits.max_messages} entries`, "messages");
    const messages = req.messages.map((m, i) => {
      if (!ROLES.has(m.role)) throw invalidRequest(`messages[${i}].role must be one of ${[...ROLES].join(", ")}`, `messages[${i}].role`);
      const role = m.role === "developer" ? "system" : m.role;
      return m.name ? { role, content: m.content, name: m.name } : { role, content: m.content };
    });
    const check = (v: number | undefined, name: string, min: number, max: number) => {
      if (v !== undefined && !(v >= min && v <= max)) throw invalidRequest(`${name} must be from ${min} to ${max}`, name);
    };
    check(req.temperature, "temperature", 0, 2);
    check(req.topP, "top_p", 0, 1);
    if (req.maxTokens !== undefined && req.maxTokens < 1) throw invalidRequest("max_tokens must be positive", "max_tokens");
    if (req.stop.length > 4) throw invalidRequest("stop takes at most 4 sequences", "stop");
    const r = req.routing;
    check(r?.qualityTarget, "routing.quality_target", 0, 1);
    check(r?.costWeight, "routing.cost_weight", 0, 1);
    const cacheMode = r?.cache === pb.CacheMode.USE ? "use" : r?.cache === pb.CacheMode.BYPASS ? "bypass" : "default";
    return {
      requestId,
      tenant,
      requestedModel: req.model,
      choice: parseModel(req.model, this.config),
      messages,
      sampling: {
        stop: req.stop,
        ...(req.temperature === undefined ? {} : { temperature: req.temperature }),
        ...(req.topP === undefined ? {} : { topP: req.topP }),
        ...(req.maxTokens === undefined ? {} : { maxTokens: req.maxTokens }),
        ...(req.seed === undefined ? {} : { seed: req.seed }),
      },
      ...(r?.qualityTarget === undefined ? {} : { qualityTarget: r.qualityTarget }),
      ...(r?.costWeight === undefined ? {} : { costWeight: r.costWeight }),
      maxOutputMicroUsdPerMtok: r?.maxOutputMicroUsdPerMtok ?? 0n,
      cacheMode,
      receivedAt,
    };
  }

  private toConnect(err: unknown) {
    if (err instanceof StreamInterrupted) return err.cause.toConnectError();
    if (err instanceof GatewayError) return err.toConnectError();
    this.logger.error("unexpected error", { err });
    return new GatewayError(500, "api_error", "internal_error", "internal error in the gateway").toConnectError();
  }
}

/**
 * A call's request id and trace context, sent in its response headers. The server interceptor made
 * the RPC a span; the call answers with it so the client can find the trace.
 */
function rpcIdentity(ctx: HandlerContext): { span: Span; identity: RequestIdentity } {
  const span = trace.getActiveSpan() ?? trace.wrapSpanContext({ traceId: "0".repeat(32), spanId: "0".repeat(16), traceFlags: 0 });
  const identity = newRequestIdentity(span);
  ctx.responseHeader.set("x-switchyard-request-id", identity.requestId);
  ctx.responseHeader.set("traceparent", identity.traceparent);
  return { span, identity };
}

/**
 * Why a call's signal fired, as the status the audit line records: the client cancelled (499, as
 * the REST API logs a client that hung up) or its deadline passed (504).
 */
/** The audit line's common fields: who (tenant, key id; never the key), what, how it ended, how long it took. */
function auditFields(ctx: HandlerContext, identity: RequestIdentity, caller: Caller, status: string, errorCode: string | undefined, receivedAt: number): Record<string, unknown> {
  return {
    request_id: identity.requestId,
    trace_id: identity.traceId,
    api: "grpc",
    protocol: ctx.protocolName,
    method: ctx.method.name,
    status,
    tenant: caller.tenant,
    key_id: caller.keyId,
    ...(errorCode ? { error: errorCode } : {}),
    duration_ms: Math.round((performance.now() - receivedAt) * 100) / 100,
  };
}

function abortError(reason: unknown): GatewayError {
  return ConnectError.from(reason).code === Code.DeadlineExceeded
    ? new GatewayError(504, "timeout_error", "deadline_exceeded", "the call's deadline passed")
    : new GatewayError(499, "invalid_request_error", "client_closed_request", "the client cancelled the call");
}

function setRouteHeaders(ctx: HandlerContext, route: RouteTaken): void {
  ctx.responseHeader.set("x-switchyard-model", route.id);
  ctx.responseHeader.set("x-switchyard-tier", route.tier);
  ctx.responseHeader.set("x-switchyard-cache", route.cache);
}

function completionOf(done: Extract<CompletionEvent, { type: "done" }>, ctx: HandlerContext): pb.Completion {
  return create(pb.CompletionSchema, {
    requestId: ctx.responseHeader.get("x-switchyard-request-id") ?? "",
    finishReason: done.finishReason,
    costMicroUsd: done.costMicroUsd,
    savedMicroUsd: done.savedMicroUsd,
    baselineMicroUsd: done.baseline?.microUsd ?? 0n,
    baselineModel: done.baseline?.model ?? "",
    usage: {
      inputTokens: BigInt(done.usage.inputTokens),
      outputTokens: BigInt(done.usage.outputTokens),
      cachedInputTokens: BigInt(done.usage.cachedInputTokens),
      reasoningTokens: BigInt(done.usage.reasoningTokens),
      estimated: done.usage.estimated,
    },
    route: {
      model: done.route.id,
      provider: done.route.provider,
      tier: done.route.tier,
      reason: done.route.reason,
      cache: done.route.cache,
      fallbacks: done.route.fallbacks,
      taskType: done.route.taskType,
    },
  });
}
