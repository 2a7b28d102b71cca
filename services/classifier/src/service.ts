import { classifier as pb } from "@switchyard/proto";
import { defaultRouterPath, loadRouter } from "@switchyard/router";
import type { ServiceParts, ServiceRuntime } from "@switchyard/rpc";
import { Counter } from "@switchyard/telemetry";
import { ClassifierHandler } from "./handler.js";

/** The classifier service: the router from `router.path` (or the shipped one), in process. */
export async function createClassifierService(runtime: ServiceRuntime): Promise<ServiceParts> {
  const { config, logger, metrics } = runtime;
  const routerPath = config.router.path || defaultRouterPath();
  const router = await loadRouter(routerPath);
  logger.info("router loaded", { path: routerPath, version: router.version, models: router.models.length });
  const decisions = new Counter({ name: "switchyard_classifier_decisions_total", help: "Classifications, by whether the routing-decision cache answered.", labelNames: ["cached"], registers: [metrics] });
  const tiers = new Counter({ name: "switchyard_classifier_tier_total", help: "Classifications by tier and task type.", labelNames: ["tier", "task_type"], registers: [metrics] });
  // Only the predictions the policy can use: models in the configuration, under the names it
  // looks them up by (router_name, provider/model, model). The router may know many more.
  const routable = new Set(config.providers.flatMap((p) => p.models.flatMap((m) => [m.router_name, `${p.name}/${m.name}`, m.name].filter((n): n is string => n !== undefined))));
  const handler = new ClassifierHandler(
    router,
    config.tiers.map((t) => ({ name: t.name, maxDifficulty: t.max_difficulty })),
    config.router.decision_cache_entries,
    {
      decision: (cached) => decisions.inc({ cached: String(cached) }),
      tier: (tier, taskType) => tiers.inc({ tier, task_type: taskType }),
    },
    routable,
  );
  return {
    serviceNames: [pb.ClassifierService.typeName],
    routes: (r) => r.service(pb.ClassifierService, handler),
    readiness: () => ({ ready: true, checks: { router: router.version } }),
  };
}
