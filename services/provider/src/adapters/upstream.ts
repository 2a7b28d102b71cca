import * as http from "node:http";
import * as https from "node:https";
import { ErrorKind, ProviderFailure } from "./types.js";

/** A response whose body has not been read yet. */
export interface UpstreamResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
}

export interface UpstreamOptions {
  baseUrl: string;
  /** Most connections kept open to this upstream. */
  maxSockets: number;
  /** Name for error messages ("openai"); never the URL. */
  label: string;
}

/**
 * Keep-alive connection pool to one upstream base URL. Connections stay open between requests so
 * a completion does not pay DNS, TCP and TLS setup; `warm` opens some before traffic arrives.
 */
export class Upstream {
  private readonly agent: http.Agent;
  private readonly base: URL;
  private readonly client: typeof http | typeof https;

  constructor(private readonly options: UpstreamOptions) {
    this.base = new URL(options.baseUrl.endsWith("/") ? options.baseUrl : `${options.baseUrl}/`);
    const secure = this.base.protocol === "https:";
    this.client = secure ? https : http;
    const agentOptions = { keepAlive: true, keepAliveMsecs: 15_000, maxSockets: options.maxSockets, maxFreeSockets: options.maxSockets, scheduling: "lifo" as const };
    this.agent = secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
  }

  /** Sends a request; resolves when response headers arrive. Throws ProviderFailure. */
  request(path: string, init: { method: string; headers: Record<string, string>; body?: string; signal: AbortSignal }): Promise<UpstreamResponse> {
    const url = new URL(path.replace(/^\//, ""), this.base);
    return new Promise((resolve, reject) => {
      const req = this.client.request(
        url,
        { method: init.method, headers: init.body === undefined ? init.headers : { ...init.headers, "content-length": Buffer.byteLength(init.body) }, agent: this.agent, signal: init.signal },
        (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res }),
      );
      req.on("error", (err: NodeJS.ErrnoException) => reject(this.toFailure(err, init.signal)));
      req.setNoDelay(true);
      req.end(init.body);
    });
  }

  /** Opens up to `count` idle keep-alive connections by sending cheap HEAD requests. */
  async warm(count: number): Promise<void> {
    await Promise.allSettled(
      Array.from({ length: count }, () =>
        this.request("", { method: "HEAD", headers: {}, signal: AbortSignal.timeout(5_000) }).then((r) => r.body.resume()),
      ),
    );
  }

  close(): void {
    this.agent.destroy();
  }

  private toFailure(err: NodeJS.ErrnoException, signal: AbortSignal): ProviderFailure {
    if (signal.aborted) {
      const reason = signal.reason as unknown;
      return reason instanceof ProviderFailure ? reason : new ProviderFailure(ErrorKind.TIMEOUT, `${this.options.label}: request cancelled`);
    }
    const code = err.code ?? "";
    if (code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EHOSTUNREACH") {
      return new ProviderFailure(ErrorKind.CONNECTION, `${this.options.label}: cannot connect to the provider (${code})`);
    }
    if (code === "ETIMEDOUT") return new ProviderFailure(ErrorKind.TIMEOUT, `${this.options.label}: connection timed out`);
    return new ProviderFailure(ErrorKind.CONNECTION, `${this.options.label}: connection failed (${code || "reset"})`);
  }
}

/** Reads at most `limit` bytes of a body as text (error bodies can be huge HTML pages). */
export async function readLimited(body: AsyncIterable<Uint8Array>, limit = 64 * 1024): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    if (size < limit) parts.push(Buffer.from(chunk).subarray(0, limit - size));
    size += chunk.length;
  }
  return Buffer.concat(parts).toString("utf8");
}

/** Retry-After (seconds or HTTP date) in milliseconds, 0 when absent or unreadable. */
export function retryAfterMs(headers: http.IncomingHttpHeaders, now = Date.now()): number {
  const raw = headers["retry-after-ms"] ?? headers["retry-after"];
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (!value) return 0;
  if (headers["retry-after-ms"] !== undefined) return Math.max(0, Math.round(Number(value)) || 0);
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
