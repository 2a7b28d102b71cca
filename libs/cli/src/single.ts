import { createClient, createRouterTransport } from "@connectrpc/connect";
import { startBus } from "@switchyard/bus";
import type { Config } from "@switchyard/config";
import { createCacheService } from "@switchyard/cache";
import { createClassifierService } from "@switchyard/classifier";
import { createGatewayService } from "@switchyard/gateway";
import { createPolicyService } from "@switchyard/policy";
import { cache, classifier, policy, provider } from "@switchyard/proto";
import { createProviderService } from "@switchyard/provider";
import { clientTracing, serve, serverTracing, type ServiceParts, type ServiceRuntime } from "@switchyard/rpc";
import { createLogger, createMetricsRegistry, initTracing } from "@switchyard/telemetry";

/**
 * All five services in this process: the gateway listens on its ports, the four others are
 * reached through Connect's in-memory transport (each hop still a ConnectRPC call, traced, with
 * serialisation, but no sockets and no process hops), and they share one NATS bus. For one
 * machine, where the network hops are pure overhead; Kubernetes runs them apart.
 */
export async function startSingleProcess(config: Config, configSource: string): Promise<{ port: number; httpPort?: number }> {
  const logger = createLogger({ service: "switchyard", level: config.telemetry.log_level });
  const runtime: ServiceRuntime = {
    name: "gateway",
    config,
    configSource,
    logger,
    metrics: createMetricsRegistry("switchyard"),
    tracing: initTracing("switchyard", logger),
  };
  const bus = startBus(config, "switchyard", logger);
  const internal: ServiceParts[] = [
    await createProviderService({ ...runtime, name: "provider", logger: logger.child({ component: "provider" }) }, bus),
    createPolicyService({ ...runtime, name: "policy", logger: logger.child({ component: "policy" }) }, bus),
    createCacheService({ ...runtime, name: "cache", logger: logger.child({ component: "cache" }) }),
    await createClassifierService({ ...runtime, name: "classifier", logger: logger.child({ component: "classifier" }) }),
  ];
  const transport = createRouterTransport(
    (router) => {
      for (const parts of internal) parts.routes(router);
    },
    { router: { interceptors: [serverTracing()] }, transport: { interceptors: [clientTracing()] } },
  );
  const gateway = await createGatewayService(runtime, {
    classifier: createClient(classifier.ClassifierService, transport),
    policy: createClient(policy.PolicyService, transport),
    cache: createClient(cache.CacheService, transport),
    provider: createClient(provider.ProviderService, transport),
  });
  return serve({
    runtime,
    port: config.ports.gateway_grpc,
    httpPort: config.ports.gateway_http,
    ...gateway,
    readiness: () => {
      const checks: Record<string, string> = { mode: "single process" };
      let ready = true;
      for (const parts of internal) {
        const r = parts.readiness?.();
        if (!r) continue;
        ready &&= r.ready;
        for (const [k, v] of Object.entries(r.checks)) checks[`${parts.serviceNames[0]?.split(".")[1]}.${k}`] = v;
      }
      return { ready, checks };
    },
    onStop: async () => {
      await gateway.onStop?.();
      for (const parts of internal) await parts.onStop?.();
      await bus?.close();
    },
  });
}
