import { hostname } from "node:os";
import { Bus } from "@switchyard/bus";
import { provider as pb } from "@switchyard/proto";
import { loadRuntime, serve } from "@switchyard/rpc";
import { ProviderHandler } from "./handler.js";
import { HealthTracker } from "./health.js";
import { startProviders } from "./providers.js";
import { publishHealth } from "./publisher.js";

const runtime = loadRuntime("provider");
const { config, logger } = runtime;
const providers = startProviders(config, process.env, logger);
const tracker = new HealthTracker();
const bus = config.nats.enabled
  ? Bus.start({ url: config.nats.url, name: "provider", priceBucket: config.nats.price_bucket, healthSubject: config.nats.health_subject, logger })
  : undefined;
const stopPublishing = bus ? publishHealth(tracker, bus, `provider@${hostname()}:${process.pid}`, config.nats.health_publish_interval_ms) : () => {};
await Promise.all([...providers.values()].map((p) => p.adapter.warm?.()));

await serve({
  runtime,
  port: config.ports.provider,
  httpPort: config.ports.provider_http,
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
    await bus?.close();
  },
});
