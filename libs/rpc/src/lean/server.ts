import * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, endStreamFlag, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import {
  asConnectError,
  decodeRequest,
  encodeResponse,
  failSpan,
  LeanContext,
  startServerSpan,
  within,
  type CallInfo,
  type Procedure,
  type ProcedureTable,
} from "./procedures.js";

const UNARY = "application/proto";
const STREAM = "application/connect+proto";
const GRPC = "application/grpc";
const GRPC_PROTO = "application/grpc+proto";

/**
 * The Connect protocol with binary Protobuf, served straight from HTTP/2 streams: the calls
 * services make to each other. It is the same wire protocol connect-node speaks (a connect-node or
 * Connect-ES client cannot tell the difference), without the per-call layers that cost most of an
 * internal hop's CPU (universal request objects, header maps, abort-signal chains, async
 * iterables around a unary body). Anything else (gRPC, gRPC-Web, JSON, compression, GET) returns
 * false and is served by connect-node.
 */
export class LeanServer {
  constructor(
    private readonly table: ProcedureTable,
    /** Services whose callers' trace context is linked to, not adopted (public APIs). */
    private readonly linkCallerTrace: (service: string) => boolean = () => false,
  ) {}

  /** Serves the request when it is a binary Connect call of a known procedure; false otherwise. */
  handle(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, peer = ""): boolean {
    if (headers[":method"] !== "POST") return false;
    const type = headers["content-type"];
    const grpc = type === GRPC || type === GRPC_PROTO;
    if (!grpc && type !== UNARY && type !== STREAM) return false;
    if (headers["content-encoding"] || headers["connect-content-encoding"]) return false;
    if (grpc && headers["grpc-encoding"] !== undefined && headers["grpc-encoding"] !== "identity") return false;
    const procedure = this.table.get(headers[":path"] ?? "");
    if (!procedure) return false;
    if (!grpc && (procedure.method.methodKind === "unary") !== (type === UNARY)) return false;
    const timeoutMs = grpc ? grpcTimeoutMs(headers["grpc-timeout"]) : connectTimeoutMs(headers["connect-timeout-ms"]);
    const controller = new AbortController();
    const info: CallInfo = {
      header: (name) => {
        const v = headers[name];
        return Array.isArray(v) ? v[0] : v;
      },
      signal: controller.signal,
      timeoutMs,
      peer,
      protocol: grpc ? "grpc" : "connect",
    };
    let timer: NodeJS.Timeout | undefined;
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => controller.abort(new ConnectError("the call's deadline passed", Code.DeadlineExceeded)), timeoutMs);
    }
    // Closed with a reset (the caller cancelled) or before our answer was complete (the caller
    // or its connection went away): the handler must stop.
    stream.once("close", () => {
      if (timer) clearTimeout(timer);
      const completed = stream.rstCode === http2.constants.NGHTTP2_NO_ERROR && stream.writableFinished;
      if (!completed && !controller.signal.aborted) controller.abort(new ConnectError("the caller cancelled the call", Code.Canceled));
    });
    readBody(stream, (body) => {
      if (grpc) void this.grpc(stream, procedure, info, headers, body);
      else if (procedure.method.methodKind === "unary") void this.unary(stream, procedure, info, headers, body);
      else void this.serverStream(stream, procedure, info, headers, body);
    });
    return true;
  }

  private async unary(stream: http2.ServerHttp2Stream, p: Procedure, info: CallInfo, headers: http2.IncomingHttpHeaders, body: Buffer): Promise<void> {
    const traced = startServerSpan(p, info, this.linkCallerTrace(p.service.typeName));
    const ctx = new LeanContext(p, info, () => headerEntries(headers));
    try {
      const request = decodeRequest(p.method.input, body);
      const output = await within(traced?.ctx, () => p.impl(request, ctx));
      const bytes = encodeResponse(p.method.output, output);
      if (stream.destroyed) return;
      const out = responseHeaders(ctx, 200, UNARY);
      ctx.setTrailers?.forEach((v, k) => (out[`trailer-${k}`] = v));
      stream.respond(out);
      stream.end(bytes);
    } catch (err) {
      const ce = asConnectError(err);
      if (traced?.span) failSpan(traced.span, ce);
      if (stream.destroyed || stream.headersSent) return;
      // The handler's response headers (a request id, say) go out with its error too.
      stream.respond(responseHeaders(ctx, codeToHttpStatus(ce.code), "application/json"));
      stream.end(errorToJsonBytes(ce, {}));
    } finally {
      traced?.span?.end();
    }
  }

  private async serverStream(stream: http2.ServerHttp2Stream, p: Procedure, info: CallInfo, headers: http2.IncomingHttpHeaders, body: Buffer): Promise<void> {
    const traced = startServerSpan(p, info, this.linkCallerTrace(p.service.typeName));
    const ctx = new LeanContext(p, info, () => headerEntries(headers));
    const error = await pump(stream, p, traced, ctx, body, () => stream.respond(responseHeaders(ctx, 200, STREAM)));
    if (stream.destroyed) return;
    if (!stream.headersSent) stream.respond(responseHeaders(ctx, 200, STREAM));
    stream.end(envelope(endStreamFlag, endStream(ctx, error)));
  }

  /**
   * The gRPC protocol (what `@grpc/grpc-js` and other gRPC libraries speak), unary and server
   * streaming: enveloped messages, status in the HTTP/2 trailers (or trailers-only for an error
   * before any message).
   */
  private async grpc(stream: http2.ServerHttp2Stream, p: Procedure, info: CallInfo, headers: http2.IncomingHttpHeaders, body: Buffer): Promise<void> {
    const traced = startServerSpan(p, info, this.linkCallerTrace(p.service.typeName));
    const ctx = new LeanContext(p, info, () => headerEntries(headers));
    const error = await pump(stream, p, traced, ctx, body, () => stream.respond(responseHeaders(ctx, 200, GRPC_PROTO), { waitForTrailers: true }));
    if (stream.destroyed) return;
    const status: http2.OutgoingHttpHeaders = { "grpc-status": String(error?.code ?? 0) };
    if (error) status["grpc-message"] = grpcMessage(error.rawMessage);
    ctx.setTrailers?.forEach((v, k) => (status[k] = v));
    if (!stream.headersSent) {
      // Trailers-only: the call failed before its first message.
      stream.respond({ ...responseHeaders(ctx, 200, GRPC_PROTO), ...status }, { endStream: true });
      return;
    }
    // The compat layer (http2's request/response objects, created for every stream) listens for
    // wantTrailers to send its own, empty, trailers: ours carry the status.
    stream.removeAllListeners("wantTrailers");
    stream.once("wantTrailers", () => stream.sendTrailers(status));
    stream.end();
  }
}

/** Status, content type and whatever response headers the handler set. */
function responseHeaders(ctx: LeanContext, status: number, contentType: string): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = { ":status": status, "content-type": contentType };
  ctx.setHeaders?.forEach((v, k) => (out[k] = v));
  return out;
}

/**
 * Runs an enveloped call's handler and writes each message it answers as an envelope, calling
 * `respond` before the first. Unary and server-streaming handlers alike; the caller ends the
 * stream (its protocol decides how). Resolves to the call's error, if it failed.
 */
async function pump(
  stream: http2.ServerHttp2Stream,
  p: Procedure,
  traced: ReturnType<typeof startServerSpan>,
  ctx: LeanContext,
  body: Buffer,
  respond: () => void,
): Promise<ConnectError | undefined> {
  let it: AsyncIterator<unknown> | undefined;
  try {
    const request = decodeRequest(p.method.input, unwrapEnvelope(body));
    if (p.method.methodKind === "unary") {
      const bytes = encodeResponse(p.method.output, await within(traced?.ctx, () => p.impl(request, ctx)));
      if (!stream.destroyed) {
        respond();
        stream.write(envelope(0, bytes));
      }
      return undefined;
    }
    const source = within(traced?.ctx, () => p.impl(request, ctx)) as AsyncIterable<unknown>;
    it = within(traced?.ctx, () => source[Symbol.asyncIterator]());
    for (;;) {
      const r = await within(traced?.ctx, () => it!.next());
      if (r.done || stream.destroyed) break;
      const bytes = encodeResponse(p.method.output, r.value);
      if (!stream.headersSent) respond();
      if (!stream.write(envelope(0, bytes))) await drained(stream);
    }
    return undefined;
  } catch (err) {
    const error = asConnectError(err);
    if (traced?.span) failSpan(traced.span, error);
    return error;
  } finally {
    traced?.span?.end();
    if (stream.destroyed && it?.return) void Promise.resolve(it.return()).catch(() => {});
  }
}

/** gRPC's percent-encoding of grpc-message: every byte outside printable ASCII, and "%" itself. */
function grpcMessage(message: string): string {
  let out = "";
  for (const b of Buffer.from(message, "utf8")) out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  return out;
}

function connectTimeoutMs(v: string | string[] | undefined): number | undefined {
  return typeof v === "string" && /^\d{1,10}$/.test(v) ? Number(v) : undefined;
}

const GRPC_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000001 };

/** `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n), in milliseconds. */
function grpcTimeoutMs(v: string | string[] | undefined): number | undefined {
  if (typeof v !== "string") return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(v);
  return m ? Math.max(1, Math.ceil(Number(m[1]) * GRPC_UNITS[m[2]!]!)) : undefined;
}

/** Reads a whole request body (internal requests are small: no limit beyond HTTP/2's own). */
function readBody(stream: http2.ServerHttp2Stream, done: (body: Buffer) => void): void {
  const parts: Buffer[] = [];
  stream.on("data", (chunk: Buffer) => parts.push(chunk));
  stream.once("end", () => done(parts.length === 1 ? parts[0]! : Buffer.concat(parts)));
}

/** One message of a stream: a flags byte, a 32-bit big-endian length, the bytes. */
export function envelope(flags: number, bytes: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + bytes.length);
  out[0] = flags;
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, 5);
  return out;
}

/** The single message of a server-streaming request. */
function unwrapEnvelope(body: Buffer): Buffer {
  if (body.length < 5) throw new ConnectError("the request has no message", Code.InvalidArgument);
  if (body[0] !== 0) throw new ConnectError("compressed or flagged request messages are not accepted here", Code.InvalidArgument);
  const length = body.readUInt32BE(1);
  if (body.length !== 5 + length) throw new ConnectError("the request message is truncated or followed by more data", Code.InvalidArgument);
  return body.subarray(5);
}

/** The Connect end-of-stream message: trailers as metadata, and the error if the call failed. */
function endStream(ctx: LeanContext, error: ConnectError | undefined): Buffer {
  const json: Record<string, unknown> = {};
  const trailers = ctx.setTrailers;
  if (trailers) {
    const metadata: Record<string, string[]> = {};
    trailers.forEach((v, k) => (metadata[k] = [v]));
    json.metadata = metadata;
  }
  if (error) json.error = JSON.parse(Buffer.from(errorToJsonBytes(error, {})).toString("utf8"));
  return Buffer.from(JSON.stringify(json));
}

function drained(stream: http2.ServerHttp2Stream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", done);
      resolve();
    };
    stream.on("drain", done);
    stream.on("close", done);
  });
}

function* headerEntries(headers: http2.IncomingHttpHeaders): Iterable<[string, string]> {
  for (const [k, v] of Object.entries(headers)) {
    if (k.startsWith(":") || v === undefined) continue;
    yield [k, Array.isArray(v) ? v.join(", ") : v];
  }
}
