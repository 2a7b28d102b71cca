/**
 * @switchyard/client: a typed client of Switchyard's public API, `switchyard.gateway.v1.GatewayService`
 * (StreamComplete, Complete, RouteExplain), over the official Connect-ES transports for Node.
 *
 * The service descriptor and every message type and schema are the generated Protobuf-ES code
 * (`npm run generate`), re-exported as they are: `create(CompleteRequestSchema, {...})`,
 * `toJson(RouteExplainResponseSchema, res)` and friends from `@bufbuild/protobuf` work with them.
 */
import type { Client, Interceptor, Transport } from "@connectrpc/connect";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { GatewayService } from "@switchyard/proto/gateway";

export * from "@switchyard/proto/gateway";

/** How to reach a Switchyard gateway. */
export interface SwitchyardClientOptions {
  /**
   * The gateway's address, scheme and port included: `http://127.0.0.1:8081` is its HTTP/2 port
   * (gRPC and Connect), `:8080` its HTTP/1.1 port (Connect with `httpVersion: "1.1"`); `https://`
   * behind a TLS proxy such as Envoy.
   */
  baseUrl: string;
  /** Sent on every call as `Authorization: Bearer <apiKey>`; omit for a gateway without keys. */
  apiKey?: string;
  /** `grpc` (HTTP/2 only) or `connect` (HTTP/2 or 1.1). Default `connect`. */
  protocol?: "grpc" | "connect";
  /** Connect only: `2` (default) or `1.1`. */
  httpVersion?: "1.1" | "2";
  /** Connect only: binary Protobuf (default) or JSON on the wire. */
  useBinaryFormat?: boolean;
  /** A deadline for every call that sets none of its own, ms. */
  timeoutMs?: number;
  /** Interceptors run on every call, after the one that sets the API key. */
  interceptors?: Interceptor[];
}

/** A typed client of `switchyard.gateway.v1.GatewayService`. */
export type SwitchyardClient = Client<typeof GatewayService>;

/**
 * Creates a client of a Switchyard gateway on `@connectrpc/connect-node`'s gRPC or Connect
 * transport. Connections open on the first call and are shared by every call of the client; an
 * idle one does not keep the process alive.
 * @throws Error for options that cannot work (a URL that is not http(s), gRPC over HTTP/1.1, a key with spaces)
 */
export function createSwitchyardClient(options: SwitchyardClientOptions): SwitchyardClient {
  return createClient(GatewayService, createSwitchyardTransport(options));
}

/** The transport `createSwitchyardClient` uses, for clients of other services on the same gateway. */
export function createSwitchyardTransport(options: SwitchyardClientOptions): Transport {
  let url: URL;
  try {
    url = new URL(options.baseUrl);
  } catch {
    throw new Error(`baseUrl "${options.baseUrl}" is not a URL (for example http://127.0.0.1:8081)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error(`baseUrl "${options.baseUrl}" must start with http:// or https://`);
  const protocol = options.protocol ?? "connect";
  if (protocol !== "grpc" && protocol !== "connect") throw new Error(`protocol must be "grpc" or "connect", not "${String(protocol)}"`);
  if (protocol === "grpc" && options.httpVersion === "1.1") throw new Error("gRPC needs HTTP/2: use protocol connect for HTTP/1.1");
  const apiKey = options.apiKey;
  if (apiKey !== undefined && !/^\S+$/.test(apiKey)) throw new Error("apiKey must be a single token without spaces");
  const interceptors: Interceptor[] = [...(apiKey ? [bearer(apiKey)] : []), ...(options.interceptors ?? [])];
  const common = {
    baseUrl: url.href.replace(/\/$/, ""),
    interceptors,
    ...(options.timeoutMs === undefined ? {} : { defaultTimeoutMs: options.timeoutMs }),
  };
  return protocol === "grpc"
    ? createGrpcTransport(common)
    : createConnectTransport({ ...common, httpVersion: options.httpVersion ?? "2", useBinaryFormat: options.useBinaryFormat ?? true });
}

/** Sets `Authorization: Bearer <key>` on every call. */
function bearer(apiKey: string): Interceptor {
  const value = `Bearer ${apiKey}`;
  return (next) => (req) => {
    req.header.set("authorization", value);
    return next(req);
  };
}
