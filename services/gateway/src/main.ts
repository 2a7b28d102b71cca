import { loadRuntime, serve } from "@switchyard/rpc";
import { createGatewayService } from "./service.js";

const runtime = loadRuntime("gateway");
await serve({ runtime, port: runtime.config.ports.gateway_grpc, httpPort: runtime.config.ports.gateway_http, ...(await createGatewayService(runtime)) });
