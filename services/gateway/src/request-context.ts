import { randomUUID } from "node:crypto";
import type { Span } from "@opentelemetry/api";
import { traceparentOf } from "@switchyard/telemetry";
import { formatUsd } from "@switchyard/usage/cost";
import type { CompletionEvent, RouteTaken } from "./orchestrator.js";

/** Identity of one request: its id and the W3C trace context it answers with. */
export interface RequestIdentity {
  requestId: string;
  traceId: string;
  traceparent: string;
}

/** A new request id; the traceparent is the request's own span, so a client can find the trace. */
export function newRequestIdentity(span: Span): RequestIdentity {
  // 94 random bits of a randomUUID (its version nibble left out), which draws on a pooled entropy buffer (randomBytes asks
  // the system for every call, a visible cost under load).
  const uuid = randomUUID();
  const requestId = `req_${uuid.slice(0, 8)}${uuid.slice(9, 13)}${uuid.slice(15, 18)}${uuid.slice(19, 23)}${uuid.slice(24, 29)}`;
  return { requestId, traceId: span.spanContext().traceId, traceparent: traceparentOf(span) };
}

/** Puts the routing decision on the request span (`switchyard.*` attributes). */
export function annotateRoute(span: Span, route: RouteTaken): void {
  span.setAttributes({
    "switchyard.model": route.id,
    "switchyard.provider": route.provider,
    "switchyard.tier": route.tier,
    "switchyard.task_type": route.taskType,
    "switchyard.route_reason": route.reason,
    "switchyard.cache": route.cacheKind ? `${route.cache}:${route.cacheKind}` : route.cache,
    "switchyard.fallbacks": route.fallbacks,
  });
}

/** Puts usage and cost on the request span. */
export function annotateDone(span: Span, done: Extract<CompletionEvent, { type: "done" }>): void {
  annotateRoute(span, done.route);
  span.setAttributes({
    "switchyard.cost_usd": formatUsd(done.costMicroUsd),
    "switchyard.saved_usd": formatUsd(done.savedMicroUsd),
    "gen_ai.usage.input_tokens": done.usage.inputTokens,
    "gen_ai.usage.output_tokens": done.usage.outputTokens,
    "gen_ai.response.finish_reasons": [done.finishReason],
  });
}
