import { createContextKey, type ConnectRouter, type Interceptor, type ServiceImpl } from "@connectrpc/connect";
import { isSpanContextValid, ROOT_CONTEXT, trace, type SpanContext } from "@opentelemetry/api";
import type { Config } from "@switchyard/config";
import { admin, gateway as pb } from "@switchyard/proto";
import { serverTracing } from "@switchyard/rpc";
import { extractContext } from "@switchyard/telemetry";

/** The client's own trace context, taken off a call before its server span is made. */
const CLIENT_TRACE = createContextKey<SpanContext | undefined>(undefined, { description: "client traceparent" });

/**
 * The interceptors of the public RPC APIs (gRPC, Connect and gRPC-Web on both gateway ports): the
 * call's server span links to a client's `traceparent` instead of adopting it, unless
 * `telemetry.trust_client_traceparent` is set, as on the REST API. (Host and Origin are checked
 * before any RPC by the server itself: `admit`.) The whole chain of the gateway service,
 * `serverTracing` included: interceptors given to one service replace the server's own for it.
 */
export function gatewayInterceptors(config: Config): Interceptor[] {
  if (config.telemetry.trust_client_traceparent) return [serverTracing()];
  return [clientTraceparentAsLink(), serverTracing(), linkClientTrace()];
}

/**
 * Registers `GatewayService` so that every call, on every protocol and port, follows the trace
 * rule: connect-node (gRPC-Web, Connect JSON, compressed calls) runs `interceptors`; the lean path
 * (binary Connect and gRPC, straight from the HTTP/2 stream) runs no interceptors and links the
 * caller's trace itself when the server is told to (`linkCallerTrace`, see `publicTrace`).
 */
export function registerGatewayService(router: ConnectRouter, handler: ServiceImpl<typeof pb.GatewayService>, interceptors: Interceptor[]): void {
  router.service(pb.GatewayService, handler, { interceptors });
}

/** For the RPC server's lean path: link, not adopt, a caller's trace on the public API (unless trusted). */
export function publicTrace(config: Config): ((service: string) => boolean) | undefined {
  if (config.telemetry.trust_client_traceparent) return undefined;
  return (service) => service === pb.GatewayService.typeName || service === admin.AdminService.typeName;
}

/**
 * Takes the client's `traceparent` and `tracestate` off the call, so the server span that
 * `serverTracing` makes next starts a trace of our own, and keeps the client's context for
 * `linkClientTrace`.
 */
function clientTraceparentAsLink(): Interceptor {
  return (next) => async (req) => {
    if (req.header.has("traceparent")) {
      const client = trace.getSpanContext(extractContext((k) => req.header.get(k), ROOT_CONTEXT));
      req.header.delete("traceparent");
      req.header.delete("tracestate");
      if (client && isSpanContextValid(client)) req.contextValues.set(CLIENT_TRACE, client);
    }
    return next(req);
  };
}

/** Links the call's server span (active by now) to the client's trace, so each can be found from the other. */
function linkClientTrace(): Interceptor {
  return (next) => async (req) => {
    const client = req.contextValues.get(CLIENT_TRACE);
    if (client) trace.getActiveSpan()?.addLink({ context: client, attributes: { "switchyard.link": "client traceparent" } });
    return next(req);
  };
}
