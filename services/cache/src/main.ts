import { loadRuntime, serve } from "@switchyard/rpc";
import { createCacheService } from "./service.js";

const runtime = loadRuntime("cache");
await serve({ runtime, port: runtime.config.ports.cache, httpPort: runtime.config.ports.cache_http, ...createCacheService(runtime) });
