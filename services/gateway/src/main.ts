import { endpointFor } from "@switchyard/config";
import { cache, classifier, gateway as pb, policy, provider } from "@switchyard/proto";
import { createServiceClient, loadRuntime, serve } from "@switchyard/rpc";
import { DependencyHealth } from "./dependencies.js";
import { GatewayHandler } from "./grpc.js";
import { createGatewayMetrics } from "./metrics.js";
import { openAiApi } from "./openai/http.js";
import { Orchestrator } from "./orchestrator.js";
import { TenantResolver } from "./tenants.js";

const runtime = loadRuntime("gateway");
const { config, logger } = runtime;
const connections = {
  classifier: createServiceClient(classifier.ClassifierService, endpointFor(config, "classifier")),
  policy: createServiceClient(policy.PolicyService, endpointFor(config, "policy")),
  cache: createServiceClient(cache.CacheService, endpointFor(config, "cache")),
  provider: createServiceClient(provider.ProviderService, endpointFor(config, "provider")),
};
// Open every HTTP/2 connection now: the first request should not pay for handshakes.
await Promise.allSettled(Object.values(connections).map((c) => c.warm()));
const clients = {
  classifier: connections.classifier.client,
  policy: connections.policy.client,
  cache: connections.cache.client,
  provider: connections.provider.client,
};
const metrics = createGatewayMetrics(runtime.metrics);
const orchestrator = new Orchestrator(clients, config, metrics, logger);
const tenants = new TenantResolver(config);
const dependencies = new DependencyHealth(config);

await serve({
  runtime,
  port: config.ports.gateway_grpc,
  httpPort: config.ports.gateway_http,
  serviceNames: [pb.GatewayService.typeName],
  routes: (router) => router.service(pb.GatewayService, new GatewayHandler(config, orchestrator, tenants, metrics, logger)),
  httpFallback: openAiApi({ config, orchestrator, policy: clients.policy, tenants, metrics, logger }),
  readiness: () => dependencies.readiness(),
  onStop: async () => {
    dependencies.close();
    for (const c of Object.values(connections)) c.close();
  },
});
