import { startBus } from "@switchyard/bus";
import type { Config } from "@switchyard/config";
import { createCacheService } from "@switchyard/cache";
import { createClassifierService } from "@switchyard/classifier";
import { createGatewayService } from "@switchyard/gateway";
import { createLedgerService } from "@switchyard/ledger";
import { createPolicyService } from "@switchyard/policy";
import { cache, classifier, ledger, policy, provider } from "@switchyard/proto";
import { createProviderService } from "@switchyard/provider";
import { createLeanClient, LocalChannel, ProcedureTable, serve, type ServiceParts, type ServiceRuntime } from "@switchyard/rpc";
import { createLogger, createMetricsRegistry, initTracing } from "@switchyard/telemetry";

/**
 * All six services in this process: the gateway listens on its ports, the five others are
 * called in process through the same service interfaces (each hop still a call with its deadline,
 * cancellation and span, but no sockets, no serialisation and no process hops), and they share
 * one NATS bus. For one
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
    await createLedgerService({ ...runtime, name: "ledger", logger: logger.child({ component: "ledger" }) }, { bus }),
  ];
  const procedures = ProcedureTable.capture((router) => {
    for (const parts of internal) parts.routes(router);
  });
  const local = new LocalChannel(procedures);
  const gateway = await createGatewayService(runtime, {
    classifier: createLeanClient(classifier.ClassifierService, local),
    policy: createLeanClient(policy.PolicyService, local),
    cache: createLeanClient(cache.CacheService, local),
    provider: createLeanClient(provider.ProviderService, local),
    ledger: createLeanClient(ledger.LedgerService, local),
  }, bus);
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
