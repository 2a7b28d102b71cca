import { Counter, Gauge, Histogram, LATENCY_BUCKETS, type Registry } from "@switchyard/telemetry";

/** What the gateway measures of every completion. */
export interface GatewayMetrics {
  requests: Counter<"api" | "status" | "model" | "tier" | "cache">;
  ttft: Histogram<"api" | "model">;
  duration: Histogram<"api" | "model">;
  /** From arrival to the provider call: what routing costs. */
  overhead: Histogram<string>;
  tokens: Counter<"model" | "direction">;
  costMicroUsd: Counter<"model" | "tier">;
  savedMicroUsd: Counter<string>;
  fallbacks: Counter<"model" | "code">;
  dependencyFailures: Counter<"dependency">;
  planReuse: Counter<"outcome">;
  /** Usage records by how they left: jetstream, ledger (the RPC path), dropped. */
  usageRecords: Counter<"outcome">;
  /** Records waiting in this gateway for JetStream or the ledger to take them. */
  usageBacklog: Gauge<string>;
  /** Requests refused at admission, by limit. */
  quotaRefusals: Counter<"limit">;
  /** Admissions counted in this replica because Redis was away. */
  quotaFallbacks: Counter<string>;
}

export function createGatewayMetrics(registry: Registry): GatewayMetrics {
  const registers = [registry];
  return {
    requests: new Counter({ name: "switchyard_gateway_requests_total", help: "Completions by API, final status, model, tier and cache result.", labelNames: ["api", "status", "model", "tier", "cache"], registers }),
    ttft: new Histogram({ name: "switchyard_gateway_time_to_first_token_seconds", help: "From request arrival to the first answer byte sent.", labelNames: ["api", "model"], buckets: LATENCY_BUCKETS, registers }),
    duration: new Histogram({ name: "switchyard_gateway_request_duration_seconds", help: "From request arrival to the end of the answer.", labelNames: ["api", "model"], buckets: LATENCY_BUCKETS, registers }),
    overhead: new Histogram({ name: "switchyard_gateway_routing_overhead_seconds", help: "From request arrival to the provider call (cache, classifier, policy).", buckets: LATENCY_BUCKETS, registers }),
    tokens: new Counter({ name: "switchyard_gateway_tokens_total", help: "Tokens by model and direction (input, output).", labelNames: ["model", "direction"], registers }),
    costMicroUsd: new Counter({ name: "switchyard_gateway_cost_micro_usd_total", help: "What answers cost, micro-dollars.", labelNames: ["model", "tier"], registers }),
    savedMicroUsd: new Counter({ name: "switchyard_gateway_cache_saved_micro_usd_total", help: "What cache hits saved, micro-dollars.", registers }),
    fallbacks: new Counter({ name: "switchyard_gateway_fallbacks_total", help: "Routes abandoned before the first token, by model and error code.", labelNames: ["model", "code"], registers }),
    planReuse: new Counter({ name: "switchyard_gateway_plan_reuse_total", help: "Routed requests whose plan came from the gateway's plan cache (hit), from a policy call shared with requests alike (shared), or from a policy call of their own (miss).", labelNames: ["outcome"], registers }),
    usageRecords: new Counter({ name: "switchyard_gateway_usage_records_total", help: "Usage records by outcome: published to JetStream, handed to the ledger over RPC, or dropped (the buffer was full).", labelNames: ["outcome"], registers }),
    usageBacklog: new Gauge({ name: "switchyard_gateway_usage_records_pending", help: "Usage records held in this gateway until JetStream or the ledger takes them.", registers }),
    quotaRefusals: new Counter({ name: "switchyard_gateway_quota_refusals_total", help: "Requests refused at admission (429), by limit: budget, requests_per_minute, tokens_per_minute.", labelNames: ["limit"], registers }),
    quotaFallbacks: new Counter({ name: "switchyard_gateway_quota_fallbacks_total", help: "Admissions counted in this replica alone because the shared counters (Redis) were unreachable.", registers }),
    dependencyFailures: new Counter({ name: "switchyard_gateway_dependency_failures_total", help: "Calls to internal services that failed and were degraded around.", labelNames: ["dependency"], registers }),
  };
}
