import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

/** Latency buckets in seconds, fine at the low end where routing overhead lives. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** One Prometheus registry per process, with Node's default metrics and a `service` label. */
export function createMetricsRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry, prefix: "switchyard_" });
  return registry;
}

/** RPC metrics every service records through its server interceptor. */
export class RpcMetrics {
  readonly requests: Counter<"method" | "code">;
  readonly duration: Histogram<"method">;

  constructor(registry: Registry) {
    this.requests = new Counter({
      name: "switchyard_rpc_requests_total",
      help: "RPCs handled, by method and final status code.",
      labelNames: ["method", "code"],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: "switchyard_rpc_duration_seconds",
      help: "Time from an RPC's arrival to its last response message.",
      labelNames: ["method"],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });
  }
}

export { Counter, Gauge, Histogram, Registry };
