import type * as http from "node:http";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { Config } from "@switchyard/config";
import type { ledger as ledgerPb, policy as policyPb } from "@switchyard/proto";
import type { Readiness } from "@switchyard/rpc";
import type { Logger } from "@switchyard/telemetry";
import { GatewayError, invalidRequest } from "../errors.js";
import type { TenantResolver } from "../tenants.js";
import { loadAssets, type Asset } from "./assets.js";
import { DashboardData, PERIODS, type Period } from "./data.js";

export { DashboardData, PERIODS } from "./data.js";
export type { LiveView, OverviewView, RequestView } from "./data.js";

export interface DashboardDeps {
  config: Config;
  tenants: TenantResolver;
  /** The books; without them the page loads but its data calls answer 503. */
  ledger: Client<typeof ledgerPb.LedgerService> | undefined;
  policy: Client<typeof policyPb.PolicyService>;
  /** The gateway's readiness, as /readyz reports it (NATS, dependencies, usage records, quotas). */
  readiness: () => Readiness;
  logger: Logger;
  /** Where the page's files are (tests). */
  pageDir?: string;
  /** The clock periods end at (tests). */
  now?: () => number;
}

/** Answers a request under `/dashboard`; false for any other path. */
export type DashboardHandler = (req: http.IncomingMessage, res: http.ServerResponse) => Promise<boolean>;

/**
 * What every dashboard response carries. The page runs only its own script and style files (no
 * inline code, nothing from another origin), talks only to this origin, and cannot be framed.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

const DEFAULT_PERIOD: Period = "7d";
const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 1_000;

/**
 * The operator's page at `/dashboard`: its static files (HTML, CSS, one ES module, and Chart.js
 * from node_modules), and the JSON it reads under `/dashboard/api/` (`overview`, `requests`,
 * `live`). The page itself is public; its data needs an admin key whenever the gateway
 * authenticates (`TenantResolver.authorizeAdmin`, as the AdminService), sent by the page as
 * `Authorization: Bearer`. The data calls are GETs, so a same-origin page sends no `Origin` and
 * passes the edge's rules unchanged; the edge (Host, Origin) runs before this handler.
 */
export function createDashboard(deps: DashboardDeps): DashboardHandler {
  const assets = loadAssets(deps.pageDir);
  const jaegerUrl = deps.config.telemetry.jaeger_url.replace(/\/+$/, "");
  const data = deps.ledger
    ? new DashboardData({ ledger: deps.ledger, policy: deps.policy, readiness: deps.readiness, tenants: deps.config.tenants.map((t) => t.name), jaegerUrl, ...(deps.now ? { now: deps.now } : {}) })
    : undefined;

  return async (req, res) => {
    const url = new URL(req.url ?? "/", "http://dashboard.invalid");
    const path = url.pathname;
    if (path !== "/dashboard" && !path.startsWith("/dashboard/")) return false;
    try {
      if (path.startsWith("/dashboard/api/")) {
        if (req.method !== "GET") throw methodNotAllowed("GET");
        sendJson(res, 200, await api(path, url.searchParams, req));
        return true;
      }
      if (req.method !== "GET" && req.method !== "HEAD") throw methodNotAllowed("GET, HEAD");
      const asset = assets.get(path);
      if (!asset) throw new GatewayError(404, "not_found_error", "not_found", `no dashboard file at ${path.length > 64 ? `${path.slice(0, 64)}...` : path}`);
      serveAsset(req, res, asset);
    } catch (err) {
      const error = toHttpError(err, deps.logger, path);
      if (!res.headersSent) sendJson(res, error.status, error.toEnvelope(), error.status === 405 ? { allow: (err as GatewayError & { allow?: string }).allow ?? "GET" } : {});
      else if (!res.writableEnded) res.end();
    }
    return true;
  };

  async function api(path: string, query: URLSearchParams, req: http.IncomingMessage): Promise<unknown> {
    try {
      deps.tenants.authorizeAdmin({ authorization: header(req, "authorization"), xApiKey: header(req, "x-api-key") });
    } catch (err) {
      deps.logger.info("dashboard call refused", { path, reason: (err as GatewayError).code });
      throw err;
    }
    if (!data) throw new GatewayError(503, "api_error", "ledger_unavailable", "the ledger is not part of this gateway's mesh: the dashboard has no data");
    const tenant = tenantParam(query);
    switch (path) {
      case "/dashboard/api/overview":
        return data.overview(tenant, periodParam(query));
      case "/dashboard/api/requests":
        return data.requests(tenant, limitParam(query));
      case "/dashboard/api/live":
        return data.live();
      default:
        throw new GatewayError(404, "not_found_error", "not_found", "no such dashboard data: use overview, requests or live");
    }
  }
}

function serveAsset(req: http.IncomingMessage, res: http.ServerResponse, asset: Asset): void {
  // Paths carry no version, so every load revalidates: a 304 costs a round trip, never a stale page.
  const headers: http.OutgoingHttpHeaders = { ...SECURITY_HEADERS, "content-type": asset.contentType, "cache-control": "no-cache", etag: asset.etag, vary: "accept-encoding" };
  if (header(req, "if-none-match")?.split(",").some((t) => t.trim() === asset.etag)) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  const gzip = /\bgzip\b/.test(header(req, "accept-encoding") ?? "");
  const body = gzip ? asset.gzipped : asset.body;
  res.writeHead(200, { ...headers, ...(gzip ? { "content-encoding": "gzip" } : {}), "content-length": body.length });
  res.end(req.method === "HEAD" ? undefined : body);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...SECURITY_HEADERS, "content-type": "application/json", "cache-control": "no-store", "content-length": Buffer.byteLength(text), ...extra });
  res.end(text);
}

function tenantParam(q: URLSearchParams): string {
  const tenant = q.get("tenant") ?? "";
  if (tenant.length > 128) throw invalidRequest("tenant is longer than 128 characters", "tenant");
  return tenant;
}

function periodParam(q: URLSearchParams): Period {
  const period = q.get("period") ?? DEFAULT_PERIOD;
  if (!Object.hasOwn(PERIODS, period)) throw invalidRequest(`period must be one of ${Object.keys(PERIODS).join(", ")}`, "period");
  return period as Period;
}

function limitParam(q: URLSearchParams): number {
  const raw = q.get("limit");
  if (raw === null) return DEFAULT_LIMIT;
  const limit = Number(raw);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw invalidRequest(`limit must be an integer from 1 to ${MAX_LIMIT}`, "limit");
  return limit;
}

function methodNotAllowed(allow: string): GatewayError {
  return Object.assign(new GatewayError(405, "invalid_request_error", "method_not_allowed", `use ${allow} for this path`), { allow });
}

/** A ledger or policy failure as the page sees it: the ledger's own words, a status that fits. */
function toHttpError(err: unknown, logger: Logger, path: string): GatewayError {
  if (err instanceof GatewayError) return err;
  if (err instanceof ConnectError) {
    if (err.code === Code.InvalidArgument) return invalidRequest(err.rawMessage);
    logger.warn("dashboard data unavailable: the ledger did not answer", { path, error: err.rawMessage });
    const status = err.code === Code.DeadlineExceeded ? 504 : 503;
    return new GatewayError(status, "api_error", "ledger_unavailable", `the ledger is unavailable (${err.rawMessage})`);
  }
  logger.error("unexpected error", { err });
  return new GatewayError(500, "api_error", "internal_error", "internal error in the gateway");
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}
