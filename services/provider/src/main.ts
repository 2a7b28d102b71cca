import { startBus } from "@switchyard/bus";
import { loadRuntime, serve } from "@switchyard/rpc";
import { createProviderService } from "./service.js";

const runtime = loadRuntime("provider");
// The provider publishes health and never touches prices.
const bus = startBus(runtime.config, "provider", runtime.logger, { prices: false });
const parts = await createProviderService(runtime, bus);
await serve({
  runtime,
  port: runtime.config.ports.provider,
  httpPort: runtime.config.ports.provider_http,
  ...parts,
  onStop: async () => {
    await parts.onStop?.();
    await bus?.close();
  },
});
