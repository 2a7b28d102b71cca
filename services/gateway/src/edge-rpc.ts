import { createContextKey, type ConnectRouter, type Interceptor, type ServiceImpl } from "@connectrpc/connect";
import { isSpanContextValid, ROOT_CONTEXT, trace, type SpanContext } from "@opentelemetry/api";
import type { Config } from "@switchyard/config";
import { gateway as pb } from "@switchyard/proto";
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
 * Registers `GatewayService` so that every call, on every protocol and port, passes through
 * `interceptors`. Method by method (`rpc`, not `service`): the RPC server's lean path (binary
 * Connect and gRPC straight from the HTTP/2 stream) serves only what is registered with
 * `service()`, runs no interceptors and adopts the caller's trace, which suits calls between
 * services but not a public API. connect-node serves these methods on every protocol, with the
 * interceptors (at connect-node's cost per call, until the lean path can link a client's trace).
 */
export function registerGatewayService(router: ConnectRouter, handler: ServiceImpl<typeof pb.GatewayService>, interceptors: Interceptor[]): void {
  const { complete, streamComplete } = pb.GatewayService.method;
  router.rpc(complete, handler.complete.bind(handler), { interceptors });
  router.rpc(streamComplete, handler.streamComplete.bind(handler), { interceptors });
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
