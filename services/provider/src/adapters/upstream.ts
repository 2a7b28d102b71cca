import * as http from "node:http";
import * as https from "node:https";
import type { Socket } from "node:net";
import { ErrorKind, ProviderFailure } from "./types.js";

/** A response whose body has not been read yet. */
export interface UpstreamResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The body; fails with a STREAM_BROKEN ProviderFailure when it goes quiet for `idleTimeoutMs`. */
  body: AsyncIterable<Uint8Array>;
  /** Drops the rest of the body and its connection. */
  discard(): void;
}

export interface UpstreamOptions {
  baseUrl: string;
  /** Most connections kept open to this upstream. */
  maxSockets: number;
  /** Name for error messages ("openai"); never the URL. */
  label: string;
  /** A started response body that sends nothing for this long fails (default 60 s). */
  idleTimeoutMs?: number;
  /** Extra trusted CA certificates (PEM), for upstreams with a private CA. */
  ca?: string | Buffer;
}

/** Open connections of one pool. */
export interface PoolStats {
  /** Carrying a request now. */
  busy: number;
  /** Open and waiting for the next request. */
  idle: number;
}

/**
 * Keep-alive connection pool to one upstream base URL. Connections stay open between requests so
 * a completion does not pay DNS, TCP and TLS setup; `warm` opens some before traffic arrives and
 * `keepWarm` tops them up while traffic is low.
 */
export class Upstream {
  private readonly agent: http.Agent;
  private readonly base: URL;
  private readonly client: typeof http | typeof https;
  private readonly idleTimeoutMs: number;
  private keepWarmTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: UpstreamOptions) {
    this.base = new URL(options.baseUrl.endsWith("/") ? options.baseUrl : `${options.baseUrl}/`);
    const secure = this.base.protocol === "https:";
    this.client = secure ? https : http;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    const agentOptions = {
      keepAlive: true,
      keepAliveMsecs: 15_000,
      maxSockets: options.maxSockets,
      maxFreeSockets: options.maxSockets,
      scheduling: "lifo" as const,
    };
    this.agent = secure ? new https.Agent({ ...agentOptions, ...(options.ca ? { ca: options.ca } : {}) }) : new http.Agent(agentOptions);
  }

  /** Sends a request; resolves when response headers arrive. Throws ProviderFailure. */
  request(path: string, init: { method: string; headers: Record<string, string>; body?: string; signal: AbortSignal }): Promise<UpstreamResponse> {
    const url = new URL(path.replace(/^\//, ""), this.base);
    const headers = init.body === undefined ? init.headers : { ...init.headers, "content-length": String(Buffer.byteLength(init.body)) };
    return new Promise((resolve, reject) => {
      let req: http.ClientRequest;
      try {
        req = this.client.request(url, { method: init.method, headers, agent: this.agent, signal: init.signal }, (res) =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: this.watchIdle(res), discard: () => res.destroy() }),
        );
      } catch (err) {
        // Node validates header values synchronously; its message names the header, not the value.
        reject(new ProviderFailure(ErrorKind.BAD_REQUEST, `${this.options.label}: the request could not be sent (${(err as NodeJS.ErrnoException).code ?? "invalid request"})`));
        return;
      }
      req.on("error", (err: NodeJS.ErrnoException) => reject(this.toFailure(err, init.signal)));
      req.on("socket", (socket: Socket) => socket.setNoDelay(true));
      req.end(init.body);
    });
  }

  /**
   * Makes `target` connections (capped at the pool size) open, counting those busy with requests:
   * sends as many credential-free GET requests to the base URL as are missing (a small 404 or 401
   * from real APIs), which reuse idle connections first (refreshing them against the server's idle
   * timeout) and open the rest. Not HEAD: Node's client drops the connection after a HEAD answer
   * without content-length. Resolves to the connections open afterwards; never throws.
   */
  async warm(target: number): Promise<number> {
    const wanted = Math.max(0, Math.min(target, this.options.maxSockets) - this.stats().busy);
    await Promise.allSettled(
      Array.from({ length: wanted }, async () => {
        const res = await this.request("", { method: "GET", headers: {}, signal: AbortSignal.timeout(5_000) });
        await readLimited(res.body, 0);
      }),
    );
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
    const count = (lists: NodeJS.ReadOnlyDict<Socket[]>) => Object.values(lists).reduce((n, l) => n + (l?.length ?? 0), 0);
    return { busy: count(this.agent.sockets), idle: count(this.agent.freeSockets) };
  }

  close(): void {
    if (this.keepWarmTimer) clearInterval(this.keepWarmTimer);
    this.keepWarmTimer = undefined;
    this.agent.destroy();
  }

  private async *watchIdle(res: http.IncomingMessage): AsyncGenerator<Uint8Array> {
    const label = this.options.label;
    const ms = this.idleTimeoutMs;
    const arm = () =>
      setTimeout(() => res.destroy(new ProviderFailure(ErrorKind.STREAM_BROKEN, `${label}: the provider sent nothing for ${ms} ms mid-response`)), ms);
    let timer = arm();
    try {
      for await (const chunk of res) {
        clearTimeout(timer);
        // Not timed while the consumer holds the chunk: a slow client is not a quiet upstream.
        yield chunk as Buffer;
        timer = arm();
      }
    } finally {
      clearTimeout(timer);
    }
  }

  private toFailure(err: NodeJS.ErrnoException, signal: AbortSignal): ProviderFailure {
    if (signal.aborted) {
      const reason = signal.reason as unknown;
      return reason instanceof ProviderFailure ? reason : new ProviderFailure(ErrorKind.TIMEOUT, `${this.options.label}: request cancelled`);
    }
    const code = err.code ?? "";
    if (code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EHOSTUNREACH" || code === "ENETUNREACH") {
      return new ProviderFailure(ErrorKind.CONNECTION, `${this.options.label}: cannot connect to the provider (${code})`);
    }
    if (code === "ETIMEDOUT") return new ProviderFailure(ErrorKind.TIMEOUT, `${this.options.label}: connection timed out`);
    if (code.startsWith("ERR_TLS") || code.includes("CERT") || code === "EPROTO") {
      return new ProviderFailure(ErrorKind.CONNECTION, `${this.options.label}: TLS handshake with the provider failed (${code})`);
    }
    return new ProviderFailure(ErrorKind.CONNECTION, `${this.options.label}: connection failed (${code || "reset"})`);
  }
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
export function retryAfterMs(headers: http.IncomingHttpHeaders, now = Date.now()): number {
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
