import * as http2 from "node:http2";
import * as net from "node:net";
import * as tls from "node:tls";
import { create, fromBinary, isMessage, toBinary, type DescMessage, type DescMethod, type DescService, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type CallOptions, type Client } from "@connectrpc/connect";
import { codeFromHttpStatus, endStreamFlag, endStreamFromJson, errorFromJsonBytes } from "@connectrpc/connect/protocol-connect";
import { context, SpanKind, SpanStatusCode, trace, type Context, type Span } from "@opentelemetry/api";
import { injectContext, tracer } from "@switchyard/telemetry";
import { asConnectError, LeanContext, type CallInfo, type ProcedureTable } from "./procedures.js";
import { envelope } from "./server.js";

/** How a lean client reaches its service. */
export interface LeanChannel {
  unary(method: DescMethod, request: unknown, options: CallOptions): Promise<unknown>;
  serverStream(method: DescMethod, request: unknown, options: CallOptions): AsyncIterable<unknown>;
}

/**
 * A typed client (the same `Client<T>` shape Connect-ES gives) over a lean channel: unary and
 * server-streaming methods, call options `signal`, `timeoutMs`, `headers`, `onHeader`, `onTrailer`.
 */
export function createLeanClient<T extends DescService>(service: T, channel: LeanChannel): Client<T> {
  const client: Record<string, unknown> = {};
  for (const method of service.methods) {
    const toMessage = (init: unknown) => (isMessage(init, method.input) ? init : create(method.input, init as never));
    if (method.methodKind === "unary") client[method.localName] = (init: unknown, options: CallOptions = {}) => channel.unary(method, toMessage(init), options);
    else if (method.methodKind === "server_streaming") client[method.localName] = (init: unknown, options: CallOptions = {}) => channel.serverStream(method, toMessage(init), options);
    else client[method.localName] = () => Promise.reject(new ConnectError(`${method.name}: only unary and server-streaming calls are supported`, Code.Unimplemented));
  }
  return client as Client<T>;
}

/** TLS settings of a client connection (mutual TLS between services). */
export interface ClientTls {
  ca: string | Buffer;
  /** This caller's certificate and key; without them it calls anonymously (health checks). */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** The name the server's certificate must carry (default: the URL's host). */
  servername?: string;
}

/** Stream-level HTTP/2 settings: roomy windows so a long conversation never waits for a WINDOW_UPDATE. */
const SETTINGS: http2.Settings = { initialWindowSize: 4 << 20, maxConcurrentStreams: 100_000 };
const SESSION_WINDOW = 64 << 20;

/**
 * The Connect protocol with binary Protobuf over one long-lived HTTP/2 connection, re-opened
 * when the peer goes away. Requests are multiplexed; nothing is pooled or queued on our side.
 */
export class H2Channel implements LeanChannel {
  private session: http2.ClientHttp2Session | undefined;
  private readonly target: URL;
  private closed = false;

  constructor(
    baseUrl: string,
    private readonly options: { tls?: ClientTls; label?: string } = {},
  ) {
    this.target = new URL(baseUrl);
  }

  /** Opens the connection now so that the first call pays no handshake. Never throws. */
  async warm(): Promise<void> {
    try {
      const s = this.connect();
      if (s.connecting) {
        await new Promise<void>((resolve) => {
          s.once("connect", () => resolve());
          s.once("close", () => resolve());
          s.once("error", () => resolve());
        });
      }
    } catch {
      // the service is not there yet: the first call will try again
    }
  }

  close(): void {
    this.closed = true;
    this.session?.destroy();
    this.session = undefined;
  }

  unary(method: DescMethod, request: unknown, options: CallOptions): Promise<unknown> {
    const call = outgoing(method, options);
    return new Promise<unknown>((resolve, reject) => {
      let stream: http2.ClientHttp2Stream;
      try {
        stream = this.connect().request(requestHeaders(method, "application/proto", options, call.headers));
      } catch (err) {
        return reject(call.fail(this.unavailable(err)));
      }
      let status = 0;
      let settled = false;
      const parts: Buffer[] = [];
      const settle = (err: ConnectError | undefined, value?: unknown) => {
        if (settled) return;
        settled = true;
        stop();
        if (err) {
          if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
          reject(call.fail(err));
        } else {
          call.end();
          resolve(value);
        }
      };
      const stop = guard(options, (err) => settle(err));
      stream.on("response", (headers) => {
        status = Number(headers[":status"]);
        options.onHeader?.(toHeaders(headers));
      });
      stream.on("data", (chunk: Buffer) => parts.push(chunk));
      stream.once("end", () => {
        const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
        if (status === 200) {
          try {
            settle(undefined, fromBinary(method.output as DescMessage, body));
          } catch (err) {
            settle(new ConnectError(`cannot decode the response: ${(err as Error).message}`, Code.Internal));
          }
        } else if (status === 0) settle(this.reset(stream));
        else settle(errorBody(body, status));
      });
      stream.once("error", (err) => {
        if (!settled) settle(this.unavailable(err));
      });
      stream.once("close", () => {
        if (!settled) settle(this.reset(stream));
      });
      stream.end(toBinary(method.input as DescMessage, request as MessageShape<DescMessage>));
    });
  }

  serverStream(method: DescMethod, request: unknown, options: CallOptions): AsyncIterable<unknown> {
    return {
      [Symbol.asyncIterator]: () => {
        const call = outgoing(method, options);
        const incoming = new IncomingStream(method.output as DescMessage, options, call);
        try {
          const stream = this.connect().request(requestHeaders(method, "application/connect+proto", options, call.headers));
          incoming.attach(stream, (err) => this.unavailable(err), () => this.reset(stream));
          stream.end(envelope(0, toBinary(method.input as DescMessage, request as MessageShape<DescMessage>)));
        } catch (err) {
          incoming.finish(this.unavailable(err));
        }
        return incoming;
      },
    };
  }

  private connect(): http2.ClientHttp2Session {
    if (this.closed) throw new ConnectError("the client is closed", Code.Unavailable);
    const existing = this.session;
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const t = this.target;
    const host = t.hostname.replace(/^\[|\]$/g, "");
    const port = Number(t.port || (t.protocol === "https:" ? 443 : 80));
    const tlsOptions = this.options.tls;
    const session = http2.connect(tlsOptions ? `https://${t.host}` : t.origin, {
      settings: SETTINGS,
      maxSessionMemory: 256,
      // Small RPC frames must leave at once (no Nagle); TCP keep-alive notices a peer that
      // vanished without a reset instead of leaving calls on a half-open connection.
      createConnection: () => {
        const socket = tlsOptions
          ? tls.connect({
              host,
              port,
              ca: tlsOptions.ca,
              ...(tlsOptions.cert && tlsOptions.key ? { cert: tlsOptions.cert, key: tlsOptions.key } : {}),
              // SNI takes host names only; an IP address is checked against the certificate's IP names.
              ...(net.isIP(tlsOptions.servername ?? host) ? {} : { servername: tlsOptions.servername ?? host }),
              ALPNProtocols: ["h2"],
              minVersion: "TLSv1.3",
            })
          : net.connect({ host, port });
        socket.setNoDelay(true);
        socket.setKeepAlive(true, 10_000);
        return socket;
      },
    });
    session.once("connect", () => session.setLocalWindowSize(SESSION_WINDOW));
    const forget = () => {
      if (this.session === session) this.session = undefined;
    };
    session.on("error", forget);
    session.once("close", forget);
    session.once("goaway", forget);
    this.session = session;
    return session;
  }

  private unavailable(err: unknown): ConnectError {
    if (err instanceof ConnectError) return err;
    const e = err as NodeJS.ErrnoException;
    const what = this.options.label ?? "the service";
    return new ConnectError(`${what} is unavailable (${e.code ?? e.message ?? "connection failed"})`, Code.Unavailable);
  }

  /** A stream that closed before its answer was read: reset by the peer, or its connection dropped. */
  private reset(stream: http2.ClientHttp2Stream): ConnectError {
    const code = stream.rstCode;
    if (code === http2.constants.NGHTTP2_REFUSED_STREAM) return new ConnectError("the call was refused (the service is stopping)", Code.Unavailable);
    return this.unavailable(new Error(code ? `stream reset ${code}` : "connection closed"));
  }
}

/** A call leaving this process: its span (when tracing records) and its request headers. */
interface Outgoing {
  headers: Record<string, string>;
  fail(err: ConnectError): ConnectError;
  end(): void;
  context: Context;
}

function outgoing(method: DescMethod, options: CallOptions): Outgoing {
  const headers: Record<string, string> = {};
  if (options.headers) new Headers(options.headers).forEach((v, k) => (headers[k] = v));
  const active = context.active();
  let span: Span | undefined;
  let ctx = active;
  if (trace.getSpan(active)?.isRecording()) {
    span = tracer().startSpan(
      `${method.parent.typeName}/${method.name}`,
      { kind: SpanKind.CLIENT, attributes: { "rpc.system": "connect_rpc", "rpc.service": method.parent.typeName, "rpc.method": method.name } },
      active,
    );
    ctx = trace.setSpan(active, span);
  }
  // Not recording: the caller's own context travels (its trace id and span id), no child span.
  injectContext((k, v) => (headers[k] = v), ctx);
  return {
    headers,
    context: ctx,
    fail: (err) => {
      if (span) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: err.rawMessage });
        span.setAttribute("rpc.connect_rpc.error_code", err.code);
        span.end();
      }
      return err;
    },
    end: () => span?.end(),
  };
}

function requestHeaders(method: DescMethod, contentType: string, options: CallOptions, extra: Record<string, string>): http2.OutgoingHttpHeaders {
  const h: http2.OutgoingHttpHeaders = {
    ...extra,
    ":method": "POST",
    ":path": `/${method.parent.typeName}/${method.name}`,
    "content-type": contentType,
    "connect-protocol-version": "1",
  };
  if (options.timeoutMs !== undefined && options.timeoutMs > 0) h["connect-timeout-ms"] = String(Math.ceil(options.timeoutMs));
  return h;
}

/** Arms the call's deadline and cancellation; returns the function that disarms them. */
function guard(options: CallOptions, fail: (err: ConnectError) => void): () => void {
  const signal = options.signal;
  let timer: NodeJS.Timeout | undefined;
  if (options.timeoutMs !== undefined && options.timeoutMs > 0) {
    timer = setTimeout(() => fail(new ConnectError(`the call took longer than ${options.timeoutMs} ms`, Code.DeadlineExceeded)), options.timeoutMs);
  }
  const onAbort = () => fail(ConnectError.from(signal!.reason, Code.Canceled));
  if (signal) {
    if (signal.aborted) queueMicrotask(onAbort);
    else signal.addEventListener("abort", onAbort, { once: true });
  }
  return () => {
    if (timer) clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  };
}

/** The Connect error in a non-200 response body (JSON), or one made from the HTTP status. */
function errorBody(body: Uint8Array, status: number): ConnectError {
  const fallback = new ConnectError(`the service answered HTTP ${status}`, codeFromHttpStatus(status));
  try {
    return errorFromJsonBytes(body, undefined, fallback);
  } catch {
    // not a Connect error body (a proxy's page, say)
    return fallback;
  }
}

function toHeaders(h: http2.IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const [k, v] of Object.entries(h)) if (!k.startsWith(":") && v !== undefined) out.set(k, Array.isArray(v) ? v.join(", ") : v);
  return out;
}

/**
 * The response side of a server-streaming call as an async iterator, without generator layers:
 * envelopes are parsed as bytes arrive and decoded messages queue until read. A reader that falls
 * behind pauses the HTTP/2 stream (flow control then holds the sender back).
 */
class IncomingStream implements AsyncIterator<unknown> {
  private readonly queue: unknown[] = [];
  private waiter: { resolve: (r: IteratorResult<unknown>) => void; reject: (e: unknown) => void } | undefined;
  private buffered: Buffer | undefined;
  private stream: http2.ClientHttp2Stream | undefined;
  private finished = false;
  private error: ConnectError | undefined;
  private status = 0;
  private sawEnd = false;
  private stop: () => void = () => {};

  constructor(
    private readonly output: DescMessage,
    private readonly options: CallOptions,
    private readonly call: Outgoing,
  ) {}

  attach(stream: http2.ClientHttp2Stream, unavailable: (err: unknown) => ConnectError, reset: () => ConnectError): void {
    this.stream = stream;
    this.stop = guard(this.options, (err) => this.finish(err, true));
    stream.on("response", (headers) => {
      this.status = Number(headers[":status"]);
      this.options.onHeader?.(toHeaders(headers));
      // Node emits "response" on the next tick, so data read in the same batch can come first
      // (it was kept aside as if it were an error body): parse it now that the status is known.
      if (this.status === 200 && this.buffered) {
        const early = this.buffered;
        this.buffered = undefined;
        this.onData(early);
      }
    });
    stream.on("data", (chunk: Buffer) => this.onData(chunk));
    stream.once("end", () => {
      if (this.status === 0) this.finish(reset(), true);
      else if (this.status !== 200) this.finish(errorBody(this.buffered ?? Buffer.alloc(0), this.status)); else if (!this.sawEnd) this.finish(new ConnectError("the stream ended without its end-of-stream message", Code.Internal));
      else this.finish(undefined);
    });
    stream.once("error", (err) => {
      if (!this.finished) this.finish(unavailable(err), true);
    });
    stream.once("close", () => {
      if (!this.finished) this.finish(reset(), true);
    });
  }

  next(): Promise<IteratorResult<unknown>> {
    if (this.queue.length > 0) {
      const value = this.queue.shift();
      if (this.queue.length < 8 && this.stream?.isPaused()) this.stream.resume();
      return Promise.resolve({ done: false, value });
    }
    if (this.finished) return this.error ? Promise.reject(this.error) : Promise.resolve({ done: true, value: undefined });
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** The reader stopped early: cancel the call. */
  return(): Promise<IteratorResult<unknown>> {
    if (!this.finished) this.finish(new ConnectError("the call was cancelled", Code.Canceled), true);
    this.queue.length = 0;
    this.error = undefined;
    return Promise.resolve({ done: true, value: undefined });
  }

  /** Ends the call; `cancel` resets the HTTP/2 stream if it is still open. */
  finish(err: ConnectError | undefined, cancel = false): void {
    if (this.finished) return;
    this.finished = true;
    this.stop();
    if (cancel && this.stream && !this.stream.closed) this.stream.close(http2.constants.NGHTTP2_CANCEL);
    this.error = err;
    if (err) this.call.fail(err);
    else this.call.end();
    const w = this.waiter;
    if (w && this.queue.length === 0) {
      this.waiter = undefined;
      if (err) w.reject(err);
      else w.resolve({ done: true, value: undefined });
    }
  }

  private onData(chunk: Buffer): void {
    let buf = this.buffered ? Buffer.concat([this.buffered, chunk]) : chunk;
    if (this.status !== 200) {
      this.buffered = buf;
      return;
    }
    let offset = 0;
    while (buf.length - offset >= 5) {
      const flags = buf[offset]!;
      const length = buf.readUInt32BE(offset + 1);
      if (buf.length - offset - 5 < length) break;
      const bytes = buf.subarray(offset + 5, offset + 5 + length);
      offset += 5 + length;
      if ((flags & endStreamFlag) === endStreamFlag) {
        this.sawEnd = true;
        // The common end, "{}" (no error, no trailers), needs no parsing.
        if (length <= 2 && !this.options.onTrailer) continue;
        try {
          const end = endStreamFromJson(bytes);
          this.options.onTrailer?.(end.metadata);
          if (end.error) return this.finish(end.error);
        } catch (err) {
          return this.finish(asConnectError(err));
        }
        continue;
      }
      let message: unknown;
      try {
        message = fromBinary(this.output, bytes);
      } catch (err) {
        return this.finish(new ConnectError(`cannot decode a streamed message: ${(err as Error).message}`, Code.Internal), true);
      }
      this.push(message);
    }
    buf = buf.subarray(offset);
    this.buffered = buf.length > 0 ? buf : undefined;
    if (this.queue.length > 32 && !this.stream!.isPaused()) this.stream!.pause();
  }

  private push(message: unknown): void {
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      w.resolve({ done: false, value: message });
    } else this.queue.push(message);
  }
}

/**
 * Calls handlers in this process, as `switchyard start --single-process` does: no sockets and no
 * serialisation. Messages are shared, not copied: handlers and callers never modify a message
 * after it was sent or returned (nothing in Switchyard does). Deadlines, cancellation and spans
 * behave as over the network.
 */
export class LocalChannel implements LeanChannel {
  constructor(private readonly table: ProcedureTable) {}

  async unary(method: DescMethod, request: unknown, options: CallOptions): Promise<unknown> {
    const { procedure, info, ctx, span, done } = this.begin(method, options);
    try {
      // A handler that ignores its signal must not keep the caller past its deadline.
      const aborted = new Promise<never>((_, reject) => {
        if (info.signal.aborted) reject(info.signal.reason);
        else info.signal.addEventListener("abort", () => reject(info.signal.reason), { once: true });
      });
      aborted.catch(() => {});
      const out = await Promise.race([context.with(ctx, () => procedure.impl(request, new LeanContext(procedure, info, () => []))), aborted]);
      return isMessage(out, method.output) ? out : create(method.output as DescMessage, out as never);
    } catch (err) {
      const ce = asConnectError(err);
      if (span) span.setStatus({ code: SpanStatusCode.ERROR, message: ce.rawMessage });
      throw info.signal.aborted ? asConnectError(info.signal.reason) : ce;
    } finally {
      done();
    }
  }

  serverStream(method: DescMethod, request: unknown, options: CallOptions): AsyncIterable<unknown> {
    return {
      [Symbol.asyncIterator]: () => {
        const { procedure, info, ctx, span, done, cancel } = this.begin(method, options);
        const source = context.with(ctx, () => procedure.impl(request, new LeanContext(procedure, info, () => [])) as AsyncIterable<unknown>);
        const it = context.with(ctx, () => source[Symbol.asyncIterator]());
        let ended = false;
        const end = (err?: unknown) => {
          if (ended) return;
          ended = true;
          if (err !== undefined && span) span.setStatus({ code: SpanStatusCode.ERROR, message: asConnectError(err).rawMessage });
          done();
        };
        return {
          next: () =>
            context.with(ctx, () => it.next()).then(
              (r) => {
                if (r.done) end();
                return r;
              },
              (err: unknown) => {
                end(err);
                throw info.signal.aborted ? asConnectError(info.signal.reason) : asConnectError(err);
              },
            ),
          return: () => {
            // The caller stopped reading before the end: the handler's signal says so, as a
            // reset stream does over the network.
            if (!ended) cancel();
            end();
            return Promise.resolve(it.return?.()).then(() => ({ done: true as const, value: undefined }));
          },
        };
      },
    };
  }

  private begin(method: DescMethod, options: CallOptions) {
    const path = `/${method.parent.typeName}/${method.name}`;
    const procedure = this.table.get(path);
    if (!procedure) throw new ConnectError(`${path} is not served in this process`, Code.Unimplemented);
    const controller = new AbortController();
    const stop = guard(options, (err) => controller.abort(err));
    const active = context.active();
    let span: Span | undefined;
    let ctx = active;
    if (procedure.traced && trace.getSpan(active)?.isRecording()) {
      span = tracer().startSpan(`${method.parent.typeName}/${method.name}`, { kind: SpanKind.SERVER, attributes: { "rpc.system": "connect_rpc", "rpc.service": method.parent.typeName, "rpc.method": method.name } }, active);
      ctx = trace.setSpan(active, span);
    }
    const info: CallInfo = { header: () => undefined, signal: controller.signal, timeoutMs: options.timeoutMs, peer: "in-process" };
    return {
      procedure,
      info,
      ctx,
      span,
      cancel: () => controller.abort(new ConnectError("the caller cancelled the call", Code.Canceled)),
      done: () => {
        stop();
        span?.end();
      },
    };
  }
}
