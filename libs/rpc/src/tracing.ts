import { context, SpanKind, SpanStatusCode, trace, type Context, type Span } from "@opentelemetry/api";
import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { extractContext, injectContext, tracer } from "@switchyard/telemetry";

const UNTRACED = new Set(["grpc.health.v1.Health"]);

/**
 * Server side of an RPC as a span, child of the caller's `traceparent`. The handler runs inside
 * the span's context; for a server stream, every pull of the response iterator does too (the
 * handler's body runs lazily as the transport pulls, so wrapping `next(req)` alone would lose it),
 * and the span ends when the stream does.
 */
export function serverTracing(): Interceptor {
  return (next) => async (req) => {
    const service = req.method.parent.typeName;
    if (UNTRACED.has(service)) return next(req);
    const parent = extractContext((k) => req.header.get(k));
    const span = tracer().startSpan(
      `${service}/${req.method.name}`,
      { kind: SpanKind.SERVER, attributes: { "rpc.system": "connect_rpc", "rpc.service": service, "rpc.method": req.method.name } },
      parent,
    );
    return traced(span, trace.setSpan(parent, span), () => next(req), req.signal);
  };
}

/** Client side of an RPC as a span; its context travels in the `traceparent` request header. */
export function clientTracing(): Interceptor {
  return (next) => async (req) => {
    const service = req.method.parent.typeName;
    if (UNTRACED.has(service)) return next(req);
    const parent = context.active();
    const span = tracer().startSpan(
      `${service}/${req.method.name}`,
      { kind: SpanKind.CLIENT, attributes: { "rpc.system": "connect_rpc", "rpc.service": service, "rpc.method": req.method.name } },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    injectContext((k, v) => req.header.set(k, v), ctx);
    return traced(span, ctx, () => next(req), req.signal);
  };
}

async function traced<R extends { stream: boolean; message: unknown }>(span: Span, ctx: Context, call: () => Promise<R>, signal: AbortSignal): Promise<R> {
  let res: R;
  try {
    res = await context.with(ctx, call);
  } catch (err) {
    fail(span, err);
    span.end();
    throw err;
  }
  if (!res.stream) {
    span.end();
    return res;
  }
  return { ...res, message: inContext(res.message as AsyncIterable<unknown>, ctx, span, signal) };
}

/**
 * Runs every step of an async iterable inside `ctx` and ends `span` when it finishes, or when the
 * call is cancelled (a consumer that stops reading early never returns the iterator: Connect
 * cancels the call through its signal instead).
 */
export function inContext<T>(source: AsyncIterable<T>, ctx: Context, span: Span, signal?: AbortSignal): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      const it = context.with(ctx, () => source[Symbol.asyncIterator]());
      let ended = false;
      const onAbort = () => end();
      const end = (err?: unknown) => {
        if (ended) return;
        ended = true;
        signal?.removeEventListener("abort", onAbort);
        if (err !== undefined) fail(span, err);
        span.end();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      return {
        next: (...args: [] | [unknown]) =>
          context.with(ctx, () => it.next(...args)).then(
            (r) => {
              if (r.done) end();
              return r;
            },
            (err: unknown) => {
              end(err);
              throw err;
            },
          ),
        return: (value?: unknown) => {
          end();
          return it.return ? context.with(ctx, () => it.return!(value)) : Promise.resolve({ done: true as const, value: value as T });
        },
        throw: (err?: unknown) => {
          end(err);
          return it.throw ? context.with(ctx, () => it.throw!(err)) : Promise.reject(err);
        },
      };
    },
  };
}

function fail(span: Span, err: unknown): void {
  const ce = ConnectError.from(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message: ce.rawMessage });
  span.setAttribute("rpc.connect_rpc.error_code", ce.code);
}
