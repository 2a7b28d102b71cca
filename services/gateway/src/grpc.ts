import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { trace } from "@opentelemetry/api";
import type { Config } from "@switchyard/config";
import { gateway as pb } from "@switchyard/proto";
import type { Logger } from "@switchyard/telemetry";
import { formatUsd } from "@switchyard/usage";
import { GatewayError, invalidRequest } from "./errors.js";
import type { GatewayMetrics } from "./metrics.js";
import { parseModel } from "./model-name.js";
import { StreamInterrupted, type CompletionEvent, type CompletionRequest, type Orchestrator, type RouteTaken } from "./orchestrator.js";
import { annotateDone, newRequestIdentity } from "./request-context.js";
import type { TenantResolver } from "./tenants.js";

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
    private readonly metrics: GatewayMetrics,
    private readonly logger: Logger,
  ) {}

  async *streamComplete(req: pb.CompleteRequest, ctx: HandlerContext): AsyncGenerator<pb.CompleteResponse> {
    const labels = { api: "grpc", status: "OK", model: "", tier: "", cache: "" };
    const receivedAt = performance.now();
    try {
      for await (const event of this.run(req, ctx, receivedAt)) {
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
          yield create(pb.CompleteResponseSchema, { completion: completionOf(event, ctx) });
        }
      }
    } catch (err) {
      labels.status = err instanceof GatewayError ? String(err.status) : err instanceof StreamInterrupted ? String(err.cause.status) : "500";
      throw this.toConnect(err);
    } finally {
      this.metrics.requests.inc(labels);
      const span = trace.getActiveSpan();
      this.logger.info("request", {
        request_id: ctx.responseHeader.get("x-switchyard-request-id") ?? "",
        trace_id: span?.spanContext().traceId ?? "",
        api: "grpc",
        status: labels.status,
        model: labels.model,
        tier: labels.tier,
        cache: labels.cache,
        duration_ms: Math.round((performance.now() - receivedAt) * 100) / 100,
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

  private async *run(req: pb.CompleteRequest, ctx: HandlerContext, receivedAt: number): AsyncGenerator<CompletionEvent> {
    // The server interceptor made this RPC a span; answer with it so the client can find the trace.
    const span = trace.getActiveSpan() ?? trace.wrapSpanContext({ traceId: "0".repeat(32), spanId: "0".repeat(16), traceFlags: 0 });
    const identity = newRequestIdentity(span);
    ctx.responseHeader.set("x-switchyard-request-id", identity.requestId);
    ctx.responseHeader.set("traceparent", identity.traceparent);
    const tenant = this.tenants.resolve(ctx.requestHeader.get("authorization") ?? undefined);
    const request = this.toRequest(req, tenant, identity.requestId, receivedAt);
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
