import type * as http from "node:http";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { ConfigError, loadConfig, type Config, type ServiceName } from "@switchyard/config";
import { createLogger, createMetricsRegistry, initTracing, type Logger, type Registry, type TracingHandle } from "@switchyard/telemetry";
import { HealthStatus } from "./health.js";
import { createRpcServer, type AdmitCheck, type HttpFallback } from "./server.js";
import { onShutdown } from "./shutdown.js";
import { loadMeshIdentity, meshMayCall } from "./tls.js";
import { serverTracing } from "./tracing.js";

/** What every service's composition root starts from. */
export interface ServiceRuntime {
  name: ServiceName;
  config: Config;
  /** The file the configuration came from. */
  configSource: string;
  logger: Logger;
  metrics: Registry;
  tracing: TracingHandle;
}

/**
 * Loads and validates the configuration and sets up logging and metrics. A bad configuration
 * prints every problem (naming the key) and exits 2: no stack trace.
 */
export function loadRuntime(name: ServiceName): ServiceRuntime {
  try {
    const { config, source } = loadConfig();
    const logger = createLogger({ service: name, level: config.telemetry.log_level });
    return { name, config, configSource: source, logger, metrics: createMetricsRegistry(name), tracing: initTracing(name, logger) };
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`switchyard ${name}: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

/** Readiness of one service: what it depends on and whether it can serve. */
export interface Readiness {
  /** false = take this replica out of rotation. */
  ready: boolean;
  /** One line per dependency, e.g. { nats: "connected" }. "degraded" values still serve. */
  checks: Record<string, string>;
}

/**
 * A service as its factory builds it: what it serves and how it stops. The same parts run as
 * their own process (`serve`) or beside the others in one process (`switchyard start --single-process`).
 */
export interface ServiceParts {
  /** Fully-qualified Protobuf service names served, for grpc.health.v1. */
  serviceNames: string[];
  routes: (router: ConnectRouter) => void;
  readiness?: () => Readiness;
  /** Extra plain-HTTP routes, tried before /metrics, /healthz and /readyz. */
  httpFallback?: HttpFallback;
  /** Runs after the server stopped taking requests and drained (close clients, flush). */
  onStop?: () => Promise<void>;
  /** Checked before every RPC (Host and Origin), whatever its protocol. */
  admit?: AdmitCheck;
  /** Services whose callers' trace context is linked to, not adopted (see RpcServerOptions). */
  linkCallerTrace?: (service: string) => boolean;
}

export interface ServeOptions extends ServiceParts {
  runtime: ServiceRuntime;
  port: number;
  httpPort?: number;
  interceptors?: Interceptor[];
}

/** Serves a service until SIGTERM/SIGINT, then drains within the configured grace period. */
export async function serve(options: ServeOptions): Promise<{ port: number; httpPort?: number }> {
  const { runtime } = options;
  const health = new HealthStatus(options.serviceNames);
  // The gateway's ports are public (API keys authenticate its callers); every other service
  // is internal: mutual TLS when it has a mesh certificate, RPCs only on its HTTP/2 port.
  const internal = runtime.name !== "gateway";
  let identity;
  try {
    identity = internal ? loadMeshIdentity(runtime.config, runtime.name) : undefined;
  } catch (err) {
    runtime.logger.error((err as Error).message);
    process.exit(2);
  }
  if (internal && !identity) {
    runtime.logger.warn("no mesh certificate: this service accepts calls from anyone who can reach its port (set mesh.tls, or start with `switchyard start`)");
  }
  const own = options.readiness ?? (() => ({ ready: true, checks: {} }));
  const meshCheck = !internal ? undefined : identity ? "mutual TLS (callers: gateway)" : "unauthenticated (no mesh certificate)";
  const readiness = meshCheck === undefined ? own : () => {
    const r = own();
    return { ...r, checks: { ...r.checks, mesh: meshCheck } };
  };
  const server = createRpcServer({
    name: runtime.name,
    host: runtime.config.listen_host,
    port: options.port,
    ...(options.httpPort === undefined ? {} : { httpPort: options.httpPort }),
    routes: options.routes,
    health,
    logger: runtime.logger,
    interceptors: [serverTracing(), ...(options.interceptors ?? [])],
    ...(identity ? { tls: identity, authorize: meshMayCall } : {}),
    rpcOverHttp1: !internal,
    ...(options.admit ? { admit: options.admit } : {}),
    ...(options.linkCallerTrace ? { linkCallerTrace: options.linkCallerTrace } : {}),
    headersTimeoutMs: runtime.config.limits.header_timeout_ms,
    httpFallback: async (req, res) => {
      if (options.httpFallback && (await options.httpFallback(req, res))) return true;
      return serveOpsEndpoint(req, res, runtime.metrics, readiness);
    },
  });
  let bound: { port: number; httpPort?: number };
  try {
    bound = await server.listen();
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { port?: number };
    if (e.code === "EADDRINUSE" || e.code === "EACCES") {
      runtime.logger.error(`cannot listen on ${runtime.config.listen_host}:${e.port ?? "?"}: ${e.code === "EADDRINUSE" ? "the port is in use" : "permission denied"}; change ports in the configuration or with SWITCHYARD_*_PORT`, { code: e.code });
      process.exit(1);
    }
    throw err;
  }
  const stop = async () => {
    await server.close(runtime.config.limits.shutdown_grace_ms);
    await options.onStop?.();
    await runtime.tracing.shutdown();
  };
  onShutdown(runtime.logger, stop);
  // Started by `switchyard start` with an IPC channel: if the supervisor dies (even by SIGKILL),
  // the channel closes and this service stops too instead of lingering on its port.
  if (process.send) {
    if (!process.connected) process.kill(process.pid, "SIGTERM");
    else process.once("disconnect", () => process.kill(process.pid, "SIGTERM"));
  }
  return bound;
}

/** GET /metrics, /healthz and /readyz; false for anything else. */
export async function serveOpsEndpoint(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  metrics: Registry,
  readiness: () => Readiness,
): Promise<boolean> {
  const path = (req.url ?? "").split("?")[0];
  if (req.method !== "GET" && req.method !== "HEAD") return false;
  if (path === "/metrics") {
    const body = await metrics.metrics();
    res.writeHead(200, { "content-type": metrics.contentType });
    res.end(body);
    return true;
  }
  if (path === "/healthz") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"status":"ok"}\n');
    return true;
  }
  if (path === "/readyz") {
    const r = readiness();
    res.writeHead(r.ready ? 200 : 503, { "content-type": "application/json" });
    res.end(JSON.stringify({ status: r.ready ? "ready" : "not ready", checks: r.checks }) + "\n");
    return true;
  }
  return false;
}
