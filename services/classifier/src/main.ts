import { loadRuntime, serve } from "@switchyard/rpc";
import { createClassifierService } from "./service.js";

const runtime = loadRuntime("classifier");
let parts;
try {
  parts = await createClassifierService(runtime);
} catch (err) {
  runtime.logger.error("cannot load the router", { path: runtime.config.router.path || "(shipped default)", err });
  process.exit(2);
}
await serve({ runtime, port: runtime.config.ports.classifier, httpPort: runtime.config.ports.classifier_http, ...parts });
