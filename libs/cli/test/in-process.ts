import { stringify as toYaml } from "yaml";
import { createCacheService } from "@switchyard/cache";
import { createClassifierService } from "@switchyard/classifier";
import { parseConfig, type Config } from "@switchyard/config";
import { createGatewayService } from "@switchyard/gateway";
import { createPolicyService } from "@switchyard/policy";
import { cache, classifier, policy, provider } from "@switchyard/proto";
import { createProviderService } from "@switchyard/provider";
import { createLeanClient, createRpcServer, HealthStatus, LocalChannel, ProcedureTable, serverTracing, type ServiceParts, type ServiceRuntime } from "@switchyard/rpc";
import { createLogger, Registry } from "@switchyard/telemetry";

/** The five services in this process, the gateway on real ports, and every line they log. */
export interface InProcessMesh {
  config: Config;
  /** http://127.0.0.1:<gateway HTTP/1.1 port> */
  httpUrl: string;
  /** http://127.0.0.1:<gateway HTTP/2 port> */
  grpcUrl: string;
  /** Every log line written so far, parsed. */
  readonly logs: Record<string, unknown>[];
  close(): Promise<void>;
}

/**
 * The same composition as `switchyard start --single-process` (the four internal services called
 * in process, the gateway serving both ports with the server's tracing and admit check), but on
 * free ports, with a logger whose lines the test can read and a server it can close. For what the
 * five-process mesh cannot show a test: the gateway's log lines.
 */
export async function startInProcessMesh(settings: Record<string, unknown>): Promise<InProcessMesh> {
  const config = parseConfig(toYaml({ listen_host: "127.0.0.1", nats: { enabled: false }, telemetry: { log_level: "info" }, ...settings }));
  const lines: string[] = [];
  const logger = createLogger({ service: "switchyard", level: "info", write: (line) => lines.push(line) });
  const runtime: ServiceRuntime = { name: "gateway", config, configSource: "test", logger, metrics: new Registry(), tracing: { exporting: false, shutdown: async () => {} } };
  const internal: ServiceParts[] = [
    await createProviderService({ ...runtime, name: "provider", logger: logger.child({ component: "provider" }) }, undefined),
    createPolicyService({ ...runtime, name: "policy", logger: logger.child({ component: "policy" }) }, undefined),
    createCacheService({ ...runtime, name: "cache", logger: logger.child({ component: "cache" }) }),
    await createClassifierService({ ...runtime, name: "classifier", logger: logger.child({ component: "classifier" }) }),
  ];
  const local = new LocalChannel(ProcedureTable.capture((router) => internal.forEach((parts) => parts.routes(router))));
  const gateway = await createGatewayService(runtime, {
    classifier: createLeanClient(classifier.ClassifierService, local),
    policy: createLeanClient(policy.PolicyService, local),
    cache: createLeanClient(cache.CacheService, local),
    provider: createLeanClient(provider.ProviderService, local),
  });
  const server = createRpcServer({
    name: "gateway",
    host: "127.0.0.1",
    port: 0,
    httpPort: 0,
    routes: gateway.routes,
    health: new HealthStatus(gateway.serviceNames),
    logger,
    interceptors: [serverTracing()],
    ...(gateway.httpFallback ? { httpFallback: gateway.httpFallback } : {}),
    ...(gateway.admit ? { admit: gateway.admit } : {}),
  });
  const { port, httpPort } = await server.listen();
  return {
    config,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    grpcUrl: `http://127.0.0.1:${port}`,
    get logs() {
      return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    close: async () => {
      await server.close(100);
      await gateway.onStop?.();
      for (const parts of internal) await parts.onStop?.();
    },
  };
}
