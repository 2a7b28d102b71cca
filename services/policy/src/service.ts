import type { Bus } from "@switchyard/bus";
import { policy as pb } from "@switchyard/proto";
import type { ServiceParts, ServiceRuntime } from "@switchyard/rpc";
import { Counter, Gauge } from "@switchyard/telemetry";
import { PolicyHandler } from "./handler.js";
import { HealthTable } from "./health.js";
import { PriceTable } from "./prices.js";
import { TopTierCap } from "./tier-cap.js";

/**
 * The policy service: price and health tables fed from `bus` (prices from the configuration
 * alone without one), route planning, the top-tier cap.
 */
export function createPolicyService(runtime: ServiceRuntime, bus: Bus | undefined): ServiceParts {
  const { config, logger, metrics } = runtime;
  const prices = new PriceTable(config, process.env);
  const health = new HealthTable();
  const rejected = new Counter({ name: "switchyard_policy_updates_rejected_total", help: "Broadcast updates rejected as invalid.", labelNames: ["kind"], registers: [metrics] });
  const applied = new Counter({ name: "switchyard_policy_updates_applied_total", help: "Broadcast updates applied.", labelNames: ["kind"], registers: [metrics] });
  if (bus) {
    bus.onInvalid((kind, reason) => {
      rejected.inc({ kind });
      logger.warn("rejected broadcast update", { kind, reason });
    });
    bus.watchPrices((provider, model, update) => {
      const why = prices.apply(provider, model, update);
      if (why) {
        rejected.inc({ kind: "price" });
        logger.warn("rejected price update", { provider, model, reason: why });
      } else applied.inc({ kind: "price" });
    });
    bus.subscribeHealth((update) => {
      health.apply(update);
      applied.inc({ kind: "health" });
    });
  }
  const stale = () => bus !== undefined && bus.state !== "connected" && bus.sinceStateChangeMs() > config.nats.stale_after_ms;
  new Gauge({
    name: "switchyard_policy_tables_stale",
    help: "1 when NATS has been away longer than nats.stale_after_ms and tables may be out of date.",
    registers: [metrics],
    collect() {
      this.set(stale() ? 1 : 0);
    },
  });

  const CIRCUIT_VALUE = { closed: 0, half_open: 1, open: 2 } as const;
  new Gauge({
    name: "switchyard_policy_circuit_state",
    help: "Circuit state per model as this replica sees it: 0 closed, 1 half-open, 2 open.",
    labelNames: ["model"],
    registers: [metrics],
    collect() {
      for (const e of prices.catalog) this.set({ model: e.id }, CIRCUIT_VALUE[health.circuit(e.id)]);
    },
  });
  new Gauge({
    name: "switchyard_policy_nats_disconnected_seconds",
    help: "How long NATS has been unreachable (0 when connected or disabled).",
    registers: [metrics],
    collect() {
      this.set(bus && bus.state !== "connected" ? bus.sinceStateChangeMs() / 1000 : 0);
    },
  });

  return {
    serviceNames: [pb.PolicyService.typeName],
    routes: (router) => router.service(pb.PolicyService, new PolicyHandler(config, prices, health, stale, new TopTierCap(config))),
    readiness: () => ({
      ready: prices.catalog.length > 0,
      checks: {
        models: String(prices.catalog.length),
        nats: bus ? (stale() ? `${bus.state} (tables stale)` : bus.state) : "disabled (prices from config)",
      },
    }),
  };
}
