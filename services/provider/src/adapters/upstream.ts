import type { TLSSocket } from "node:tls";
import { Client, Pool, type buildConnector, type Dispatcher } from "undici";
import { ErrorKind, ProviderFailure } from "./types.js";

/** Response headers by lower-case name (a repeated header is an array). */
export type UpstreamHeaders = Record<string, string | string[] | undefined>;

/** A response whose body has not been read yet. */
export interface UpstreamResponse {
  status: number;
  headers: UpstreamHeaders;
  /**
   * The body, readable once; fails with a STREAM_BROKEN ProviderFailure when it goes quiet for
   * `idleTimeoutMs`, and with the abort reason's ProviderFailure when the request's signal aborts.
   * Leaving it early (`break`, `return()`) drops the rest, like `discard`.
   */
  body: AsyncIterable<Uint8Array>;
  /** Drops the rest of the body (over HTTP/1.1 its connection too; over HTTP/2 only its stream). */
  discard(): void;
}

export interface UpstreamOptions {
  baseUrl: string;
  /** Most connections to this upstream; undefined = as many as in-flight requests need. */
  maxConnections?: number;
  /** Offer HTTP/2 in the TLS handshake of an https upstream (default true); http upstreams speak HTTP/1.1. */
  http2?: boolean;
  /** Name for error messages ("openai"); never the URL. */
  label: string;
  /** A started response body that sends nothing for this long fails (default 60 s). */
  idleTimeoutMs?: number;
  /** An unused connection is closed after this long, or sooner when the server's `Keep-Alive` says so (default 60 s). */
  keepAliveTimeoutMs?: number;
  /** Trusted CA certificates (PEM) in place of the default roots, for upstreams with a private CA. */
  ca?: string | Buffer;
}

/** Open connections of one pool. */
export interface PoolStats {
  /** Carrying at least one request now. */
  busy: number;
  /** Open and waiting for the next request. */
  idle: number;
}

/**
 * Streams one HTTP/2 connection carries at once before the pool opens another: the
 * SETTINGS_MAX_CONCURRENT_STREAMS that Cloudflare, Google's front end and Node servers advertise.
 */
const H2_STREAMS_PER_CONNECTION = 100;

/** Body bytes buffered for a consumer that holds a chunk before the connection is paused. */
const MAX_BUFFERED_BYTES = 64 * 1024;

/**
 * Keep-alive connection pool to one upstream base URL (an undici `Pool` for its origin). A
 * completion does not pay DNS, TCP and TLS setup on a reused connection; `warm` opens some before
 * traffic arrives and `keepWarm` tops them up while traffic is low. By default the pool opens as
 * many connections as requests in flight need (one per HTTP/1.1 stream, up to 100 streams per
 * HTTP/2 connection), so the caller's concurrency limit is the only one.
 */
export class Upstream {
  private readonly pool: Pool;
  private readonly base: URL;
  private readonly idleTimeoutMs: number;
  /** Every connection (undici Client) the pool made that has not failed to connect. */
  private readonly connections = new Set<Client>();
  private keepWarmTimer: NodeJS.Timeout | undefined;
  private readonly allowH2: boolean;
  /** The protocol the last handshake chose; undefined before the first. */
  private protocol: "h2" | "http/1.1" | undefined;
  /** Connections being opened now, and what resolves when one of them is done. */
  private handshakes = 0;
  private handshakeDone: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(private readonly options: UpstreamOptions) {
    this.base = new URL(options.baseUrl.endsWith("/") ? options.baseUrl : `${options.baseUrl}/`);
    const secure = this.base.protocol === "https:";
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    this.allowH2 = secure && (options.http2 ?? true);
    this.pool = new Pool(this.base.origin, {
      connections: options.maxConnections ?? null,
      allowH2: this.allowH2,
      keepAliveTimeout: options.keepAliveTimeoutMs ?? 60_000,
      // The caller's signal bounds the wait for headers, and the body's own idle clock the gaps in it.
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: { noDelay: true, ...(secure && options.ca ? { ca: options.ca } : {}) },
      factory: (origin, opts) => this.newConnection(origin, opts as Pool.Options),
    });
  }

  /** Sends a request; resolves when response headers arrive. Throws ProviderFailure. */
  request(path: string, init: UpstreamRequestInit): Promise<UpstreamResponse> {
    // While a connection that may speak HTTP/2 is being opened, a request that would open one more
    // waits for it instead: every cold request opening its own session would leave one HTTP/2
    // connection per request of a burst.
    if (this.handshakeDone && this.protocol !== "http/1.1") return this.sendAfterHandshakes(path, init);
    return this.send(path, init);
  }

  private async sendAfterHandshakes(path: string, init: UpstreamRequestInit): Promise<UpstreamResponse> {
    // Again after each handshake: the requests released by one may fill its connection and start the next.
    while (this.handshakeDone && this.protocol !== "http/1.1") await this.afterHandshake(init.signal);
    return this.send(path, init);
  }

  private send(path: string, init: UpstreamRequestInit): Promise<UpstreamResponse> {
    const url = new URL(path.replace(/^\//, ""), this.base);
    return new Promise((resolve, reject) => {
      const exchange = new Exchange(this.options.label, this.idleTimeoutMs, init.signal, resolve, reject);
      if (exchange.settled) return;
      this.pool.dispatch(
        {
          path: url.pathname + url.search,
          method: init.method,
          headers: init.headers,
          body: init.body ?? null,
          // undici 7 reads this flag only to decide whether a request may share a connection with
          // others in flight: without it, POSTs queue one at a time on an HTTP/2 session. Nothing
          // here retries a request (that takes a retry interceptor), and over HTTP/1.1 a connection
          // carries one request at a time either way.
          idempotent: true,
        },
        exchange,
      );
    });
  }

  /**
   * Makes `target` connections (capped at `maxConnections`) open, counting those busy with
   * requests: sends as many credential-free GET requests to the base URL as are missing (a small
   * 404 or 401 from real APIs), which reuse idle connections first (refreshing them against the
   * server's idle timeout) and open the rest. Over HTTP/2 the GETs share one connection once it is
   * open. Resolves to the connections open afterwards; never throws.
   */
  async warm(target: number): Promise<number> {
    const wanted = Math.max(0, Math.min(target, this.options.maxConnections ?? Infinity) - this.stats().busy);
    await Promise.allSettled(
      Array.from({ length: wanted }, async () => {
        const res = await this.request("", { method: "GET", headers: {}, signal: AbortSignal.timeout(5_000) });
        await readLimited(res.body, 0);
      }),
    );
    // undici marks a connection free again a moment after its response ends; until then a request
    // would open a new one instead.
    await new Promise((resolve) => setImmediate(resolve));
    const { busy, idle } = this.stats();
    return busy + idle;
  }

  /**
   * Re-runs `warm(target)` every `intervalMs` (0 = never), so a quiet provider still has warm
   * connections when traffic returns. Sends nothing while real traffic keeps `target` busy.
   */
  keepWarm(target: number, intervalMs: number): void {
    if (this.keepWarmTimer) clearInterval(this.keepWarmTimer);
    this.keepWarmTimer = undefined;
    if (intervalMs <= 0 || target <= 0) return;
    this.keepWarmTimer = setInterval(() => void this.warm(target), intervalMs);
    this.keepWarmTimer.unref();
  }

  /** Connections open now, busy and idle. */
  stats(): PoolStats {
    let busy = 0;
    let idle = 0;
    for (const connection of this.connections) {
      const { connected, size } = connection.stats;
      if (!connected) continue;
      if (size > 0) busy++;
      else idle++;
    }
    return { busy, idle };
  }

  /** Stops keeping connections warm and closes them all; requests in flight fail with CONNECTION. */
  close(): void {
    if (this.keepWarmTimer) clearInterval(this.keepWarmTimer);
    this.keepWarmTimer = undefined;
    this.connections.clear();
    this.pool.destroy().catch(() => undefined);
  }

  /**
   * One connection of the pool. undici 7 lets a connection carry `pipelining` requests at once,
   * HTTP/2 sessions included, and the factor is fixed before ALPN picks the protocol: set it once
   * the handshake is done, so an HTTP/2 session multiplexes while HTTP/1.1 keeps one request per
   * connection (an event stream holds its connection to the end; pipelining behind it would wait).
   */
  private newConnection(origin: URL, opts: Pool.Options): Client {
    // Pool hands every connection the connector it built from `connect`.
    const connect = opts.connect as buildConnector.connector;
    const connection: Client = new Client(origin, {
      ...opts,
      connect: (connectOptions, callback) => {
        let open = true;
        const ended = () => {
          if (open) this.handshakeEnded();
          open = false;
        };
        this.handshakeStarted();
        try {
          connect(connectOptions, (...args) => {
            const socket = args[1];
            if (socket) {
              this.protocol = (socket as TLSSocket).alpnProtocol === "h2" ? "h2" : "http/1.1";
              connection.pipelining = this.protocol === "h2" ? H2_STREAMS_PER_CONNECTION : 1;
            }
            // Requests waiting on the handshake go on in a later microtask, after undici set the connection up.
            ended();
            callback(...args);
          });
        } catch (err) {
          ended();
          throw err;
        }
      },
    });
    this.connections.add(connection);
    // The pool drops a connection that failed to connect and makes a new one when needed.
    connection.on("connectionError", () => this.connections.delete(connection));
    return connection;
  }

  private handshakeStarted(): void {
    this.handshakes++;
    if (!this.allowH2 || this.handshakeDone) return;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.handshakeDone = { promise, resolve };
  }

  private handshakeEnded(): void {
    this.handshakes--;
    if (this.handshakes > 0 || !this.handshakeDone) return;
    this.handshakeDone.resolve();
    this.handshakeDone = undefined;
  }

  /** Resolves when the connections being opened now are open (or failed); rejects when `signal` aborts first. */
  private afterHandshake(signal: AbortSignal): Promise<void> {
    const done = this.handshakeDone?.promise ?? Promise.resolve();
    if (signal.aborted) return Promise.reject(abortFailure(signal, this.options.label));
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(abortFailure(signal, this.options.label));
      signal.addEventListener("abort", onAbort, { once: true });
      void done.then(() => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      });
    });
  }
}

/** What `Upstream.request` sends. */
export interface UpstreamRequestInit {
  method: string;
  headers: Record<string, string>;
  body?: string;
  signal: AbortSignal;
}

/**
 * One request in flight: undici's handler for it, and the iterator over its response body.
 * Chunks go straight to a waiting reader, or into a short queue while the reader holds the
 * previous one (the connection is paused when the queue grows past MAX_BUFFERED_BYTES).
 */
class Exchange implements Dispatcher.DispatchHandler, AsyncIterableIterator<Uint8Array> {
  /** True once the request has resolved, rejected or been dropped: later upstream events are ignored. */
  settled = false;
  private headersSeen = false;
  private controller: Dispatcher.DispatchController | undefined;
  private readonly queue: Buffer[] = [];
  private queueHead = 0;
  private queuedBytes = 0;
  private ended = false;
  private failure: ProviderFailure | undefined;
  private reader: { resolve: (r: IteratorResult<Uint8Array>) => void; reject: (e: unknown) => void } | undefined;
  /** performance.now() when the reader started waiting on an empty queue; -1 while it is not waiting. */
  private waitingSince = -1;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly label: string,
    private readonly idleTimeoutMs: number,
    private readonly signal: AbortSignal,
    private readonly resolveResponse: (res: UpstreamResponse) => void,
    private readonly rejectResponse: (err: ProviderFailure) => void,
  ) {
    if (signal.aborted) this.onAbort();
    else signal.addEventListener("abort", this.onAbort, { once: true });
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // Aborted or dropped while it waited for a connection.
    if (this.settled) controller.abort(this.failure ?? abortFailure(this.signal, this.label));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: UpstreamHeaders): void {
    if (statusCode < 200 || this.headersSeen || this.settled) return;
    this.headersSeen = true;
    this.resolveResponse({ status: statusCode, headers, body: this, discard: this.discard });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.settled) return;
    const reader = this.reader;
    if (reader) {
      this.reader = undefined;
      this.waitingSince = -1;
      reader.resolve({ value: chunk, done: false });
      return;
    }
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    if (this.queuedBytes > MAX_BUFFERED_BYTES) controller.pause();
  }

  onResponseEnd(): void {
    if (this.settled) return;
    this.ended = true;
    this.finish();
    const reader = this.reader;
    this.reader = undefined;
    reader?.resolve({ value: undefined, done: true });
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    if (this.settled) return;
    if (err instanceof ProviderFailure) this.fail(err);
    else if (this.signal.aborted) this.fail(abortFailure(this.signal, this.label));
    else if (this.headersSeen) this.fail(new ProviderFailure(ErrorKind.STREAM_BROKEN, `${this.label}: the connection broke mid-stream`));
    else this.fail(connectionFailure(err as NodeJS.ErrnoException, this.label));
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    if (this.queueHead < this.queue.length) {
      const chunk = this.queue[this.queueHead] as Buffer;
      this.queue[this.queueHead++] = undefined as unknown as Buffer;
      this.queuedBytes -= chunk.length;
      if (this.queueHead === this.queue.length) {
        this.queue.length = 0;
        this.queueHead = 0;
        if (this.controller?.paused) this.controller.resume();
      }
      return Promise.resolve({ value: chunk, done: false });
    }
    if (this.failure) return Promise.reject(this.failure);
    if (this.ended || this.settled) return Promise.resolve({ value: undefined, done: true });
    // Timed only while the reader waits: a slow consumer is not a quiet upstream.
    this.waitingSince = performance.now();
    this.idleTimer ??= setTimeout(this.checkIdle, this.idleTimeoutMs);
    return new Promise((resolve, reject) => (this.reader = { resolve, reject }));
  }

  return(): Promise<IteratorResult<Uint8Array>> {
    this.discard();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  readonly discard = (): void => {
    if (this.ended || this.settled) return;
    this.fail(new ProviderFailure(ErrorKind.STREAM_BROKEN, `${this.label}: the response was dropped before its end`));
  };

  private readonly onAbort = (): void => {
    // What the upstream sent before the caller gave up is of no use to it any more.
    this.queue.length = 0;
    this.queueHead = 0;
    this.fail(abortFailure(this.signal, this.label));
  };

  /** One timer per response, re-armed for what is left instead of on every chunk. */
  private readonly checkIdle = (): void => {
    this.idleTimer = undefined;
    if (this.waitingSince < 0 || this.settled) return;
    const left = this.idleTimeoutMs - (performance.now() - this.waitingSince);
    if (left > 1) {
      this.idleTimer = setTimeout(this.checkIdle, left);
      return;
    }
    this.fail(new ProviderFailure(ErrorKind.STREAM_BROKEN, `${this.label}: the provider sent nothing for ${this.idleTimeoutMs} ms mid-response`));
  };

  /** Ends the exchange with `failure`: the caller sees it, and the request stops upstream. */
  private fail(failure: ProviderFailure): void {
    if (this.settled) return;
    this.failure = failure;
    this.finish();
    if (!this.headersSeen) this.rejectResponse(failure);
    const reader = this.reader;
    this.reader = undefined;
    reader?.reject(failure);
    // Before onRequestStart there is no controller yet; onRequestStart aborts then.
    if (this.controller && !this.controller.aborted) this.controller.abort(failure);
  }

  private finish(): void {
    this.settled = true;
    this.waitingSince = -1;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.signal.removeEventListener("abort", this.onAbort);
  }
}

/** What an aborted request means to the caller: the abort reason when it is ours, else a cancellation. */
function abortFailure(signal: AbortSignal, label: string): ProviderFailure {
  const reason = signal.reason as unknown;
  return reason instanceof ProviderFailure ? reason : new ProviderFailure(ErrorKind.TIMEOUT, `${label}: request cancelled`);
}

/** A failure before the response started; names the error code, never the address or URL. */
function connectionFailure(err: NodeJS.ErrnoException & { errors?: unknown[] }, label: string): ProviderFailure {
  // Happy eyeballs (autoSelectFamily) reports an AggregateError of one error per address tried.
  const first = Array.isArray(err.errors) ? (err.errors[0] as NodeJS.ErrnoException | undefined) : undefined;
  const code = err.code ?? first?.code ?? "";
  if (code === "UND_ERR_INVALID_ARG") {
    // undici validates header values before sending; the value (an API key) is not quoted.
    return new ProviderFailure(ErrorKind.BAD_REQUEST, `${label}: the request could not be sent (invalid request)`);
  }
  if (code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EHOSTUNREACH" || code === "ENETUNREACH") {
    return new ProviderFailure(ErrorKind.CONNECTION, `${label}: cannot connect to the provider (${code})`);
  }
  if (code === "ETIMEDOUT" || code === "UND_ERR_CONNECT_TIMEOUT") return new ProviderFailure(ErrorKind.TIMEOUT, `${label}: connection timed out`);
  if (code.startsWith("ERR_TLS") || code.includes("CERT") || code === "EPROTO") {
    return new ProviderFailure(ErrorKind.CONNECTION, `${label}: TLS handshake with the provider failed (${code})`);
  }
  return new ProviderFailure(ErrorKind.CONNECTION, `${label}: connection failed (${code || "reset"})`);
}

/** Reads at most `limit` bytes of a body as text (error bodies can be huge HTML pages); the rest is drained. */
export async function readLimited(body: AsyncIterable<Uint8Array>, limit = 64 * 1024): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    if (size < limit) parts.push(Buffer.from(chunk).subarray(0, limit - size));
    size += chunk.length;
  }
  return Buffer.concat(parts).toString("utf8");
}

/** `retry-after-ms` (OpenAI, Azure) or `Retry-After` (seconds or HTTP date) in milliseconds, 0 when absent or unreadable. */
export function retryAfterMs(headers: UpstreamHeaders, now = Date.now()): number {
  const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
  const ms = Number(first(headers["retry-after-ms"]));
  if (first(headers["retry-after-ms"]) && Number.isFinite(ms)) return Math.max(0, Math.round(ms));
  const value = first(headers["retry-after"]);
  if (!value) return 0;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, Math.round(seconds * 1000));
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, date - now) : 0;
}

/** Maps an upstream HTTP error status to a typed failure kind. */
export function kindForStatus(status: number): ErrorKind {
  if (status === 401 || status === 403) return ErrorKind.AUTH;
  if (status === 404) return ErrorKind.UNKNOWN_MODEL;
  if (status === 408 || status === 504) return ErrorKind.TIMEOUT;
  if (status === 429) return ErrorKind.RATE_LIMITED;
  if (status >= 500) return ErrorKind.OVERLOADED;
  return ErrorKind.BAD_REQUEST;
}
