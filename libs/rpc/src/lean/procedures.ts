import { create, fromBinary, isMessage, toBinary, type DescMessage, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { context, isSpanContextValid, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Context, type Span } from "@opentelemetry/api";
import { extractContext, tracer } from "@switchyard/telemetry";

/** A unary or server-streaming method with the function that implements it. */
export interface Procedure {
  service: DescService;
  method: DescMethod & { methodKind: "unary" | "server_streaming" };
  /** The handler method, bound to its service implementation. */
  impl: (request: unknown, ctx: HandlerContext) => unknown;
  /** Spans for this procedure (health checks have none). */
  traced: boolean;
}

/** What a call needs from its transport: its request headers, a signal, a deadline. */
export interface CallInfo {
  header: (name: string) => string | undefined;
  /** Aborted when the caller goes away or the deadline passes. */
  signal: AbortSignal;
  timeoutMs: number | undefined;
  /** Who called, as the transport authenticated them ("" when the transport does not). */
  peer: string;
  /** The wire protocol of the call ("connect" or "grpc"). */
  protocol?: "connect" | "grpc";
}

const UNTRACED = new Set(["grpc.health.v1.Health"]);

/**
 * Every unary and server-streaming procedure registered on a router, by request path
 * ("/package.Service/Method"). Routes are registered on `router` as usual (so connect-node keeps
 * serving every protocol) and recorded here for the lean Connect path.
 */
export class ProcedureTable {
  private readonly byPath = new Map<string, Procedure>();

  /** Calls `routes` on a router that records each service before passing it to `router`. */
  static capture(routes: (router: ConnectRouter) => void, router?: ConnectRouter): ProcedureTable {
    const table = new ProcedureTable();
    const recording = {
      service(service: DescService, impl: Record<string, unknown>, options?: unknown) {
        table.add(service, impl);
        return router ? router.service(service as never, impl as never, options as never) : recording;
      },
      rpc(...args: unknown[]) {
        if (!router) throw new Error("rpc() registration needs a connect router");
        return (router.rpc as (...a: unknown[]) => ConnectRouter)(...args);
      },
      handlers: router?.handlers ?? [],
    };
    routes(recording as unknown as ConnectRouter);
    return table;
  }

  add(service: DescService, impl: Record<string, unknown>): void {
    for (const method of service.methods) {
      if (method.methodKind !== "unary" && method.methodKind !== "server_streaming") continue;
      const fn = impl[method.localName];
      if (typeof fn !== "function") continue;
      this.byPath.set(`/${service.typeName}/${method.name}`, {
        service,
        method: method as Procedure["method"],
        impl: (fn as (...a: unknown[]) => unknown).bind(impl),
        traced: !UNTRACED.has(service.typeName),
      });
    }
  }

  get(path: string): Procedure | undefined {
    return this.byPath.get(path);
  }
}

/** A handler context without Connect's per-call machinery; header maps are made only when used. */
export class LeanContext implements HandlerContext {
  readonly requestMethod = "POST";
  readonly values = { get: () => undefined, set: () => this.values, delete: () => this.values } as unknown as HandlerContext["values"];
  private resHeader?: Headers;
  private resTrailer?: Headers;
  private reqHeader?: Headers;

  constructor(
    readonly procedure: Procedure,
    readonly info: CallInfo,
    private readonly headerNames: () => Iterable<[string, string]>,
  ) {}

  get protocolName(): string {
    return this.info.protocol ?? "connect";
  }
  get service(): DescService {
    return this.procedure.service;
  }
  get method(): DescMethod {
    return this.procedure.method;
  }
  get signal(): AbortSignal {
    return this.info.signal;
  }
  get url(): string {
    return `/${this.procedure.service.typeName}/${this.procedure.method.name}`;
  }
  get requestHeader(): Headers {
    return (this.reqHeader ??= new Headers([...this.headerNames()]));
  }
  get responseHeader(): Headers {
    return (this.resHeader ??= new Headers());
  }
  get responseTrailer(): Headers {
    return (this.resTrailer ??= new Headers());
  }
  /** Response headers set by the handler, if any. */
  get setHeaders(): Headers | undefined {
    return this.resHeader;
  }
  get setTrailers(): Headers | undefined {
    return this.resTrailer;
  }
  timeoutMs(): number | undefined {
    return this.info.timeoutMs;
  }
}

/** Decodes a request, or a ConnectError saying why it could not be. */
export function decodeRequest(schema: DescMessage, bytes: Uint8Array): unknown {
  try {
    return fromBinary(schema, bytes);
  } catch (err) {
    throw new ConnectError(`cannot decode request: ${(err as Error).message}`, Code.InvalidArgument);
  }
}

/** Encodes what a handler returned (a message or its init shape). */
export function encodeResponse(schema: DescMessage, value: unknown): Uint8Array {
  const message = isMessage(value, schema) ? value : create(schema, value as never);
  return toBinary(schema, message);
}

/** The server side of a call as a span (when tracing records), child of the caller's traceparent. */
export function startServerSpan(p: Procedure, info: CallInfo, linkCaller = false): { ctx: Context; span?: Span } | undefined {
  if (!p.traced) return undefined;
  if (linkCaller) {
    // A public API: the caller's trace context is not ours to join. The call starts a trace of
    // its own and links to the caller's, so each can be found from the other.
    const caller = trace.getSpanContext(extractContext(info.header, ROOT_CONTEXT));
    const span = tracer().startSpan(
      `${p.service.typeName}/${p.method.name}`,
      {
        kind: SpanKind.SERVER,
        attributes: { "rpc.system": "connect_rpc", "rpc.service": p.service.typeName, "rpc.method": p.method.name },
        ...(caller && isSpanContextValid(caller) ? { links: [{ context: caller, attributes: { "switchyard.link": "client traceparent" } }] } : {}),
      },
      ROOT_CONTEXT,
    );
    return { ctx: trace.setSpan(ROOT_CONTEXT, span), span };
  }
  const parent = extractContext(info.header);
  // The caller's trace is not sampled: a span here would be dropped too (parent-based sampling).
  // Its context still flows to whatever this handler calls.
  const remote = trace.getSpanContext(parent);
  if (remote && (remote.traceFlags & TraceFlags.SAMPLED) === 0) return { ctx: parent };
  const span = tracer().startSpan(
    `${p.service.typeName}/${p.method.name}`,
    { kind: SpanKind.SERVER, attributes: { "rpc.system": "connect_rpc", "rpc.service": p.service.typeName, "rpc.method": p.method.name } },
    parent,
  );
  return { ctx: trace.setSpan(parent, span), span };
}

/** Marks a span failed with the Connect code of `err`. */
export function failSpan(span: Span, err: ConnectError): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message: err.rawMessage });
  span.setAttribute("rpc.connect_rpc.error_code", err.code);
}

/** Runs `fn` in `ctx` when there is one. */
export function within<T>(ctx: Context | undefined, fn: () => T): T {
  return ctx ? context.with(ctx, fn) : fn();
}

/** Anything a handler threw, as the ConnectError the caller gets. */
export function asConnectError(err: unknown): ConnectError {
  return ConnectError.from(err, Code.Internal);
}
