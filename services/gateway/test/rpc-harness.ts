import { stringify as toYaml } from "yaml";
import { parseConfig, type Config } from "@switchyard/config";
import type { provider } from "@switchyard/proto";
import { createRpcServer, HealthStatus, serverTracing } from "@switchyard/rpc";
import { createLogger, Registry } from "@switchyard/telemetry";
import { createGatewayService } from "../src/service.js";
import { fakeMesh } from "./http-harness.js";

/** The whole gateway (REST and RPC, both ports) on real ports over an in-memory mesh of fake services. */
export interface TestGateway {
  config: Config;
  /** http://127.0.0.1:<HTTP/2 port>: gRPC, Connect and gRPC-Web. */
  h2Url: string;
  /** http://127.0.0.1:<HTTP/1.1 port>: REST, Connect and gRPC-Web. */
  h1Url: string;
  /** Every log line the gateway wrote, parsed. */
  readonly logs: Record<string, unknown>[];
  rawLogs: string[];
  /** Requests that reached the (fake) provider. */
  upstreamCalls: provider.StreamGenerateRequest[];
  close(): Promise<void>;
}

/**
 * Starts what `createGatewayService` builds on an RPC server as `serve()` runs it (the server's
 * tracing interceptor, the edge's admit check, the REST API as HTTP fallback), on free ports, with
 * the embedded defaults plus `overrides`. NATS is off unless `overrides` says otherwise.
 */
export async function startTestGateway(overrides: Record<string, unknown> = {}): Promise<TestGateway> {
  const config = parseConfig(toYaml({ nats: { enabled: false }, ...overrides }));
  const { mesh, upstreamCalls } = fakeMesh();
  const rawLogs: string[] = [];
  const logger = createLogger({ service: "gateway", level: "info", write: (line) => rawLogs.push(line) });
  const parts = await createGatewayService(
    { name: "gateway", config, configSource: "test", logger, metrics: new Registry(), tracing: { exporting: false, shutdown: async () => {} } },
    mesh,
  );
  const server = createRpcServer({
    name: "gateway",
    host: "127.0.0.1",
    port: 0,
    httpPort: 0,
    routes: parts.routes,
    health: new HealthStatus(parts.serviceNames),
    logger,
    interceptors: [serverTracing()],
    ...(parts.httpFallback ? { httpFallback: parts.httpFallback } : {}),
    ...(parts.admit ? { admit: parts.admit } : {}),
    ...(parts.linkCallerTrace ? { linkCallerTrace: parts.linkCallerTrace } : {}),
    headersTimeoutMs: config.limits.header_timeout_ms,
  });
  const { port, httpPort } = await server.listen();
  return {
    config,
    h2Url: `http://127.0.0.1:${port}`,
    h1Url: `http://127.0.0.1:${httpPort}`,
    get logs() {
      return rawLogs.map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    rawLogs,
    upstreamCalls,
    close: async () => {
      await server.close(100);
      await parts.onStop?.();
    },
  };
}
