import { classifier as pb } from "@switchyard/proto";
import { defaultRouterPath, loadRouter } from "@switchyard/router";
import { loadRuntime, serve } from "@switchyard/rpc";
import { Counter } from "@switchyard/telemetry";
import { ClassifierHandler } from "./handler.js";

const runtime = loadRuntime("classifier");
const { config, logger, metrics } = runtime;
const routerPath = config.router.path || defaultRouterPath();
let router;
try {
  router = await loadRouter(routerPath);
} catch (err) {
  logger.error("cannot load the router", { path: routerPath, err });
  process.exit(2);
}
logger.info("router loaded", { path: routerPath, version: router.version, models: router.models.length });

const decisions = new Counter({ name: "switchyard_classifier_decisions_total", help: "Classifications, by whether the routing-decision cache answered.", labelNames: ["cached"], registers: [metrics] });
const tiers = new Counter({ name: "switchyard_classifier_tier_total", help: "Classifications by tier and task type.", labelNames: ["tier", "task_type"], registers: [metrics] });
const handler = new ClassifierHandler(
  router,
  config.tiers.map((t) => ({ name: t.name, maxDifficulty: t.max_difficulty })),
  config.router.decision_cache_entries,
  {
    decision: (cached) => decisions.inc({ cached: String(cached) }),
    tier: (tier, taskType) => tiers.inc({ tier, task_type: taskType }),
  },
);

await serve({
  runtime,
  port: config.ports.classifier,
  httpPort: config.ports.classifier_http,
  serviceNames: [pb.ClassifierService.typeName],
  routes: (router) => router.service(pb.ClassifierService, handler),
  readiness: () => ({ ready: true, checks: { router: router.version } }),
});
