import { startBus, type Bus } from "@switchyard/bus";
import { endpointFor } from "@switchyard/config";
import { admin, cache, classifier, gateway as pb, ledger, policy, provider } from "@switchyard/proto";
import { createServiceClient, loadMeshIdentity, type ServiceClientOptions, type ServiceParts, type ServiceRuntime } from "@switchyard/rpc";
import { createGatewayBooks } from "./accounting/index.js";
import { AdminHandler } from "./admin.js";
import { createDashboard } from "./dashboard/index.js";
import { DependencyHealth } from "./dependencies.js";
import { gatewayInterceptors, publicTrace, registerGatewayService } from "./edge-rpc.js";
import { RouteExplainer } from "./explain.js";
import { GatewayHandler } from "./grpc.js";
import { createGatewayMetrics } from "./metrics.js";
import { EdgePolicy } from "./openai/edge.js";
import { restApi } from "./rest/api.js";
import { Orchestrator, type MeshClients } from "./orchestrator.js";
import { PlanCache } from "./plan-cache.js";
import { TenantResolver } from "./tenants.js";

/**
 * The gateway: both public APIs over an orchestrator. Without `clients` it calls the other
 * services over the network at their configured endpoints, on HTTP/2 connections opened now;
 * with them (one process), over the given transports.
 */
export async function createGatewayService(runtime: ServiceRuntime, clients?: MeshClients, sharedBus?: Bus): Promise<ServiceParts> {
  const { config, logger } = runtime;
  let mesh = clients;
  let dependencies: DependencyHealth | undefined;
  let closeConnections = () => {};
  if (!mesh) {
    // The gateway calls the others with its mesh certificate (identity "gateway") when it has one.
    const identity = loadMeshIdentity(config, "gateway");
    const via = (label: string): ServiceClientOptions => ({ label, ...(identity ? { tls: identity } : {}) });
    const connections = {
      classifier: createServiceClient(classifier.ClassifierService, endpointFor(config, "classifier"), via("the classifier service")),
      policy: createServiceClient(policy.PolicyService, endpointFor(config, "policy"), via("the policy service")),
      cache: createServiceClient(cache.CacheService, endpointFor(config, "cache"), via("the cache service")),
      provider: createServiceClient(provider.ProviderService, endpointFor(config, "provider"), via("the provider service")),
      ledger: createServiceClient(ledger.LedgerService, endpointFor(config, "ledger"), via("the ledger service")),
    };
    // Open every HTTP/2 connection now: the first request should not pay for handshakes.
    await Promise.allSettled(Object.values(connections).map((c) => c.warm()));
    mesh = {
      classifier: connections.classifier.client,
      policy: connections.policy.client,
      cache: connections.cache.client,
      provider: connections.provider.client,
      ledger: connections.ledger.client,
    };
    dependencies = new DependencyHealth(config, identity);
    closeConnections = () => {
      for (const c of Object.values(connections)) c.close();
    };
  }
  const metrics = createGatewayMetrics(runtime.metrics);
  // The policy's tables change on price and health broadcasts: so do the plans the gateway reuses.
  const plans = new PlanCache(config.router.plan_cache_ms);
  const ownBus = sharedBus ? undefined : startBus(config, "gateway", logger);
  const bus = sharedBus ?? ownBus;
  bus?.watchPrices(() => plans.invalidate());
  bus?.subscribeHealth(() => plans.invalidate());
  const orchestrator = new Orchestrator(mesh, config, metrics, logger, plans);
  const books = createGatewayBooks({ config, logger, metrics, bus, ledger: mesh.ledger });
  const { accounting } = books;
  const tenants = new TenantResolver(config, books.keys);
  const edge = new EdgePolicy(config, tenants.authenticates);
  const handler = new GatewayHandler(config, orchestrator, tenants, accounting, metrics, logger, new RouteExplainer(mesh, config, logger));
  const adminHandler = new AdminHandler(mesh.ledger, tenants, logger);
  // A client's traceparent is linked to, not adopted, on every RPC protocol and port (as on REST).
  const interceptors = gatewayInterceptors(config);
  const readiness = () => {
    const r = dependencies?.readiness() ?? { ready: true, checks: { mesh: "in process" } };
    // Broadcasts keep its reused plans fresh; without them plans expire by plan_cache_ms alone.
    return {
      ...r,
      checks: {
        ...r.checks,
        nats: bus ? bus.state : "disabled",
        ...books.checks(),
      },
    };
  };
  const dashboard = createDashboard({ config, tenants, ledger: mesh.ledger, policy: mesh.policy, readiness, logger });
  return {
    serviceNames: [pb.GatewayService.typeName, admin.AdminService.typeName],
    routes: (router) => {
      registerGatewayService(router, handler, interceptors);
      router.service(admin.AdminService, adminHandler, { interceptors });
    },
    ...(publicTrace(config) ? { linkCallerTrace: publicTrace(config)! } : {}),
    httpFallback: restApi({ config, orchestrator, policy: mesh.policy, tenants, accounting, metrics, logger, dashboard }),
    readiness,
    // RPCs (gRPC, Connect, gRPC-Web, on both ports) pass the same Host and Origin rules as REST.
    admit: (host, origin) => {
      const refusal = edge.check(host, origin);
      return refusal ? { status: refusal.status, message: refusal.message } : undefined;
    },
    onStop: async () => {
      // Records of the last requests still go out (bounded), before the connections close.
      await books.close(Math.min(config.limits.shutdown_grace_ms, 3_000));
      dependencies?.close();
      closeConnections();
      await ownBus?.close();
    },
  };
}
