import { hostname } from "node:os";
import type { Bus } from "@switchyard/bus";
import { provider as pb } from "@switchyard/proto";
import type { ServiceParts, ServiceRuntime } from "@switchyard/rpc";
import { ProviderHandler } from "./handler.js";
import { HealthTracker } from "./health.js";
import { startProviders } from "./providers.js";
import { publishHealth } from "./publisher.js";

/**
 * The provider service: an adapter per active provider (connections opened now, before traffic),
 * health observations published on `bus` when there is one.
 */
export async function createProviderService(runtime: ServiceRuntime, bus: Bus | undefined): Promise<ServiceParts> {
  const { config, logger } = runtime;
  const providers = startProviders(config, process.env, logger);
  const tracker = new HealthTracker();
  const stopPublishing = bus ? publishHealth(tracker, bus, `provider@${hostname()}:${process.pid}`, config.nats.health_publish_interval_ms) : () => {};
  await Promise.all([...providers.values()].map((p) => p.adapter.warm?.()));
  return {
    serviceNames: [pb.ProviderService.typeName],
    routes: (router) => router.service(pb.ProviderService, new ProviderHandler(providers, tracker, logger)),
    readiness: () => ({
      ready: providers.size > 0,
      checks: {
        providers: providers.size > 0 ? [...providers.keys()].join(",") : "none active",
        nats: bus ? bus.state : "disabled",
      },
    }),
    onStop: async () => {
      stopPublishing();
      for (const p of providers.values()) p.adapter.close?.();
    },
  };
}
