import { startBus } from "@switchyard/bus";
import { loadRuntime, serve } from "@switchyard/rpc";
import { createPolicyService } from "./service.js";

const runtime = loadRuntime("policy");
const bus = startBus(runtime.config, "policy", runtime.logger);
await serve({
  runtime,
  port: runtime.config.ports.policy,
  httpPort: runtime.config.ports.policy_http,
  ...createPolicyService(runtime, bus),
  onStop: async () => {
    await bus?.close();
  },
});
