import type * as http from "node:http";
import type { Config } from "@switchyard/config";
import { GatewayError } from "../errors.js";

/** Host names that reach only this machine, always accepted. */
const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "::1"]);

/** Request headers a browser may send cross-origin (besides CORS-safelisted ones). */
const ALLOWED_REQUEST_HEADERS = ["authorization", "content-type", "x-api-key", "anthropic-version", "anthropic-beta", "x-switchyard-cache", "traceparent", "tracestate"];
/** The OpenAI and Anthropic SDKs add these to every request; they carry no authority. */
const SDK_HEADER = /^x-stainless-[a-z0-9-]+$/;
/** Response headers a browser script may read. */
const EXPOSED_HEADERS = "x-switchyard-model, x-switchyard-tier, x-switchyard-cache, x-switchyard-cost-usd, x-switchyard-request-id, traceparent";
const ALLOWED_METHODS = "GET, POST, OPTIONS";

/**
 * Who may talk to the REST API, decided before anything else runs:
 * - `Origin`: a request from a browser page is served only when its origin is listed in
 *   `gateway.cors_origins` (none by default), and then with CORS headers;
 * - `Host`: while no tenant has API keys, only loopback names (and `gateway.allowed_hosts`) are
 *   accepted, so a web page cannot reach a local gateway through DNS rebinding.
 */
export class EdgePolicy {
  private readonly origins: ReadonlySet<string>;
  private readonly hosts: ReadonlySet<string> | undefined;

  constructor(config: Config, authenticates: boolean) {
    this.origins = new Set(config.gateway.cors_origins);
    this.hosts =
      authenticates || config.gateway.allowed_hosts.includes("*") ? undefined : new Set([...LOOPBACK_HOSTS, ...config.gateway.allowed_hosts.map(stripBrackets)]);
  }

  /** The 403 for a request from a host or origin not allowed, else undefined. */
  refusal(req: http.IncomingMessage): GatewayError | undefined {
    return this.check(single(req.headers.host), single(req.headers.origin));
  }

  /**
   * The same decision from the two header values, for callers that are not a plain HTTP request
   * (a Connect interceptor on the same port: `host` or `:authority`, and `origin`).
   */
  check(hostHeader: string | undefined, origin: string | undefined): GatewayError | undefined {
    if (this.hosts) {
      const host = hostName(hostHeader);
      if (host === undefined || !this.hosts.has(host)) {
        return new GatewayError(
          403,
          "permission_error",
          "host_not_allowed",
          `Host ${quote(hostHeader)} is not allowed: with no API keys configured the gateway answers only localhost, 127.0.0.1 and [::1] (more names: gateway.allowed_hosts)`,
        );
      }
    }
    if (origin !== undefined && !this.origins.has(origin.toLowerCase())) {
      return new GatewayError(403, "permission_error", "origin_not_allowed", `requests from the browser origin ${quote(origin)} are not allowed (allowed origins: gateway.cors_origins)`);
    }
    return undefined;
  }

  /** Sets the CORS response headers for an allowed origin (call after `refusal` passed). */
  applyCors(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.origins.size > 0) res.setHeader("vary", "origin");
    const origin = single(req.headers.origin);
    if (origin === undefined) return;
    res.setHeader("access-control-allow-origin", origin);
    res.setHeader("access-control-expose-headers", EXPOSED_HEADERS);
  }

  /**
   * Answers `OPTIONS` on an API path: 204 with what the path allows and, for a CORS preflight
   * from an allowed origin, the methods and headers a browser may use.
   */
  preflight(req: http.IncomingMessage, res: http.ServerResponse, allow: string): void {
    const headers: http.OutgoingHttpHeaders = { allow: `${allow}, OPTIONS` };
    if (req.headers.origin !== undefined) {
      const requested = (single(req.headers["access-control-request-headers"]) ?? "")
        .split(",")
        .map((h) => h.trim().toLowerCase())
        .filter((h) => SDK_HEADER.test(h));
      headers["access-control-allow-methods"] = ALLOWED_METHODS;
      headers["access-control-allow-headers"] = [...ALLOWED_REQUEST_HEADERS, ...new Set(requested)].join(", ");
      headers["access-control-max-age"] = "600";
    }
    res.writeHead(204, headers);
    res.end();
  }
}

/**
 * Whether a `content-type` says JSON: `application/json` or `application/<x>+json`, with no
 * charset or UTF-8 (RFC 8259: JSON on the wire is UTF-8). `text/plain` carrying JSON is refused:
 * browsers send it cross-origin without a CORS preflight.
 */
export function isJsonContentType(value: string | undefined): boolean {
  if (value === undefined) return false;
  const [type = "", ...params] = value.split(";");
  const mime = type.trim().toLowerCase();
  if (mime !== "application/json" && !/^application\/[a-z0-9!#$&^_.-]+\+json$/.test(mime)) return false;
  for (const param of params) {
    const [key = "", raw = ""] = param.split("=", 2);
    if (key.trim().toLowerCase() !== "charset") continue;
    const charset = raw.trim().replace(/^"(.*)"$/, "$1").toLowerCase();
    if (charset !== "utf-8" && charset !== "utf8") return false;
  }
  return true;
}

/** The 415 for a body that is not declared as JSON. */
export function unsupportedMediaType(contentType: string | undefined): GatewayError {
  return new GatewayError(
    415,
    "invalid_request_error",
    "unsupported_media_type",
    contentType === undefined
      ? "the request has no content-type: send the JSON body with content-type: application/json"
      : `content-type ${quote(contentType)} is not accepted: send the JSON body with content-type: application/json (UTF-8)`,
  );
}

/** The host name of a `Host` header, lowercased, without port or IPv6 brackets. */
export function hostName(host: string | undefined): string | undefined {
  if (host === undefined || host === "") return undefined;
  const h = host.trim().toLowerCase();
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    if (end < 0 || (end + 1 < h.length && !/^:\d+$/.test(h.slice(end + 1)))) return undefined;
    return h.slice(1, end);
  }
  const colon = h.indexOf(":");
  if (colon < 0) return h;
  return /^:\d+$/.test(h.slice(colon)) ? h.slice(0, colon) : undefined;
}

function stripBrackets(h: string): string {
  return h.replace(/^\[(.*)\]$/, "$1");
}

function single(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** A client-supplied value in a message: quoted, bounded, never more than the client sent. */
function quote(v: string | undefined): string {
  if (v === undefined) return "(none)";
  return JSON.stringify(v.length > 100 ? `${v.slice(0, 100)}...` : v);
}
