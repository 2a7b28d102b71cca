import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { TLSSocket } from "node:tls";
import type { AddressInfo } from "node:net";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "@switchyard/telemetry";
import { HealthStatus, ServingStatus } from "./health.js";
import { ProcedureTable } from "./lean/procedures.js";
import { LeanServer } from "./lean/server.js";
import { peerIdentity, type MeshIdentity } from "./tls.js";

/** Handles plain HTTP/1.1 requests that are not RPCs (metrics, probes). Return false to 404. */
export type HttpFallback = (req: http.IncomingMessage, res: http.ServerResponse) => boolean | Promise<boolean>;

export interface RpcServerOptions {
  /** Service name for logs. */
  name: string;
  host: string;
  /** HTTP/2 cleartext: gRPC, Connect and gRPC-Web. 0 = any free port. */
  port: number;
  /** HTTP/1.1: Connect protocol, gRPC-Web and `httpFallback` (metrics, probes). Omit for none. */
  httpPort?: number;
  routes: (router: ConnectRouter) => void;
  health: HealthStatus;
  logger: Logger;
  interceptors?: Interceptor[];
  /** Requests over HTTP/1.1 that are not RPCs (for example GET /metrics). */
  httpFallback?: HttpFallback;
  /**
   * Close each HTTP/2 connection gracefully after about this long (default 5 min, ±10 %), as
   * gRPC's MAX_CONNECTION_AGE does: clients keep one long-lived connection per service, so
   * without it a client behind a Kubernetes Service would stay on one replica forever.
   */
  maxConnectionAgeMs?: number;
  /** A client must send its request headers within this long (HTTP/1.1 port; default 10 s). */
  headersTimeoutMs?: number;
  /**
   * TLS on the HTTP/2 port, asking callers for a certificate from this CA: a verified one gives
   * the caller its identity for `authorize`; without one it is anonymous (""). Without `tls` the
   * port is cleartext (h2c) and every caller is anonymous.
   */
  tls?: MeshIdentity;
  /** Whether a caller (its certificate identity, "" when none) may call a service (by type name). */
  authorize?: (peer: string, service: string) => boolean;
  /** Serve RPCs on the HTTP/1.1 port too (default true); false leaves it to probes and metrics. */
  rpcOverHttp1?: boolean;
  /**
   * Checked before every RPC on either port, whatever its protocol (the lean path runs no
   * Connect interceptors): a refusal is answered with its HTTP status and message.
   */
  admit?: AdmitCheck;
  /**
   * Services whose callers' `traceparent` the lean path links to instead of adopting (a public
   * API). Calls through connect-node follow the service's own interceptors.
   */
  linkCallerTrace?: (service: string) => boolean;
}

/** A request-level check of an RPC: its Host (`:authority`) and Origin. */
export type AdmitCheck = (host: string | undefined, origin: string | undefined) => { status: number; message: string } | undefined;

/** A server that does not listen until asked, and stops gracefully. */
export interface RpcServer {
  /** Starts listening; resolves to the ports bound (useful with port 0). */
  listen(): Promise<{ port: number; httpPort?: number }>;
  /** Stops accepting, lets in-flight RPCs and streams finish for up to `graceMs`, then cuts the rest. */
  close(graceMs: number): Promise<void>;
}

/**
 * Serves a Connect router on an HTTP/2 cleartext port (the fast path between services) and,
 * optionally, an HTTP/1.1 port. Node's cleartext HTTP/2 server cannot also speak HTTP/1.1 on
 * Node 20, hence two ports.
 */
export function createRpcServer(options: RpcServerOptions): RpcServer {
  // Plain HTTP requests that are not RPCs: ops endpoints, else a 404 in the JSON error envelope.
  const fallback = (req: http.IncomingMessage, res: http.ServerResponse) => {
    void (async () => {
      const handled = options.httpFallback ? await options.httpFallback(req as never, res as never) : false;
      if (!handled && !res.headersSent) {
        const body = JSON.stringify({ error: { message: `no route for ${req.method} ${(req.url ?? "").split("?")[0]}`, type: "invalid_request_error", param: null, code: "not_found" } });
        res.writeHead(404, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
        res.end(body);
      }
    })();
  };
  let procedures = new ProcedureTable();
  const adapter = connectNodeAdapter({
    routes: (router) => {
      procedures = ProcedureTable.capture((r) => {
        options.health.register(r);
        options.routes(r);
      }, router);
    },
    interceptors: options.interceptors ?? [],
    fallback: fallback as never,
  });
  // Binary Connect calls between services take the lean path; every other protocol and
  // encoding goes to connect-node.
  const lean = new LeanServer(procedures, options.linkCallerTrace);
  const peers = new WeakMap<object, string>();
  const onRequest = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    const session = req.stream.session;
    let peer = "";
    if (options.tls && session) {
      peer = peers.get(session) ?? peerIdentity(session.socket as TLSSocket);
      peers.set(session, peer);
    }
    if (options.authorize && !options.authorize(peer, serviceOf(req.url))) {
      // An audit trace of every refused caller: who it said it was and where it came from.
      options.logger.warn("refused a call from a caller the mesh does not admit", {
        peer: peer || "(no certificate)",
        path: (req.url ?? "").slice(0, 200),
        remote: req.socket?.remoteAddress ?? "",
      });
      denied(res, peer);
      return;
    }
    if (options.admit && refused(options.admit, req.headers[":authority"] ?? req.headers.host, req.headers.origin, res)) return;
    if (!lean.handle(req.stream, req.headers, peer)) adapter(req, res);
  };
  const h2 = options.tls
    ? http2.createSecureServer(
        { settings: H2_SETTINGS, maxSessionMemory: 256, ca: options.tls.ca, cert: options.tls.cert, key: options.tls.key, requestCert: true, rejectUnauthorized: false, minVersion: "TLSv1.3" },
        onRequest,
      )
    : http2.createServer({ settings: H2_SETTINGS, maxSessionMemory: 256 }, onRequest);
  h2.on(options.tls ? "secureConnection" : "connection", (socket: net.Socket) => socket.setNoDelay(true));
  let h1InFlight = 0;
  const headersTimeout = options.headersTimeoutMs ?? 10_000;
  const rpcOverHttp1 = options.rpcOverHttp1 ?? true;
  const h1 = http.createServer({ keepAlive: true, headersTimeout, requestTimeout: 0, connectionsCheckingInterval: Math.min(1_000, headersTimeout) }, (req, res) => {
    h1InFlight++;
    res.once("close", () => h1InFlight--);
    // REST and ops paths go straight to their handlers; only RPC paths pass through connect-node.
    if (!rpcOverHttp1 || !isRpcPath(req.url)) fallback(req, res);
    else if (options.admit && refused(options.admit, req.headers.host, req.headers.origin, res)) return;
    else adapter(req, res);
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  const maxAge = options.maxConnectionAgeMs ?? 5 * 60_000;
  h2.on("session", (s) => {
    sessions.add(s);
    const aged = setTimeout(() => s.close(), maxAge * (0.9 + 0.2 * Math.random()));
    aged.unref();
    s.once("close", () => {
      clearTimeout(aged);
      sessions.delete(s);
    });
  });
  let closing: Promise<void> | undefined;

  return {
    listen: async () => {
      const port = await listen(h2, options.port, options.host);
      const httpPort = options.httpPort === undefined ? undefined : await listen(h1, options.httpPort, options.host);
      options.health.set(ServingStatus.SERVING);
      options.logger.info("listening", { host: options.host, port, httpPort });
      return httpPort === undefined ? { port } : { port, httpPort };
    },
    close: (graceMs) =>
      (closing ??= (async () => {
        options.health.set(ServingStatus.NOT_SERVING);
        const stopped = Promise.all([stop(h2), options.httpPort === undefined ? undefined : stop(h1)]);
        for (const s of sessions) s.close(); // GOAWAY: no new streams, in-flight ones finish
        h1.closeIdleConnections();
        const drained = (async () => {
          while (sessions.size > 0 || h1InFlight > 0) {
            h1.closeIdleConnections();
            await new Promise((r) => setTimeout(r, 25));
          }
        })();
        const timedOut = await Promise.race([
          drained.then(() => false),
          new Promise<boolean>((r) => setTimeout(() => r(true), graceMs).unref()),
        ]);
        if (timedOut) options.logger.warn("grace period over, closing remaining connections", { graceMs });
        for (const s of sessions) s.destroy();
        h1.closeAllConnections();
        await stopped;
      })()),
  };
}

/** "/package.Service/Method": an RPC (any protocol); other paths on the HTTP/1.1 port are REST and ops. */
function isRpcPath(url: string | undefined): boolean {
  return /^\/[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)+\/[A-Za-z0-9_]+(\?|$)/.test(url ?? "");
}

function refused(admit: AdmitCheck, host: string | undefined, origin: string | string[] | undefined, res: http.ServerResponse | http2.Http2ServerResponse): boolean {
  const no = admit(host, Array.isArray(origin) ? origin[0] : origin);
  if (!no) return false;
  const body = JSON.stringify({ code: "permission_denied", message: no.message });
  res.writeHead(no.status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
  return true;
}

/** "/package.Service/Method" -> "package.Service". */
function serviceOf(path: string): string {
  const end = path.indexOf("/", 1);
  return end > 1 ? path.slice(1, end) : "";
}

/** A caller the mesh does not admit: 403 with a Connect error body (gRPC clients read 403 as PERMISSION_DENIED). */
function denied(res: http2.Http2ServerResponse, peer: string): void {
  const body = JSON.stringify({ code: "permission_denied", message: peer ? `caller "${peer}" may not call this service` : "this service requires a mesh client certificate" });
  res.writeHead(403, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/** Roomy flow-control windows and no practical stream limit: callers multiplex everything on one connection. */
const H2_SETTINGS: http2.Settings = { initialWindowSize: 4 << 20, maxConcurrentStreams: 100_000 };

function listen(server: net.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function stop(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
