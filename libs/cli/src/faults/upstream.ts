import * as http from "node:http";
import { createFakeUpstream, type FakeUpstreamOptions } from "../bench/fake-upstream.js";

/** How a switchable upstream answers chat completions right now. */
export type UpstreamBehaviour =
  /** As the bench's fake upstream: the whole answer, then [DONE]. */
  | { mode: "ok" }
  /** An error status before any byte of an answer (429 with `retry-after`, 500, 503, ...). */
  | { mode: "status"; status: number; retryAfterS?: number }
  /** The first `afterChunks` content chunks, then nothing: the connection stays open, silent. */
  | { mode: "stall"; afterChunks: number };

/** What a switchable upstream has seen since its counters were last reset. */
export interface UpstreamStats {
  /** Chat completion requests received. */
  requests: number;
  /** Requests per behaviour mode at the time they arrived. */
  byMode: Record<string, number>;
  /** Arrival times (Unix ms) of requests answered with an error status (the first 100,000). */
  errorArrivals: number[];
}

/** Path prefix of the control endpoint: `POST /_fault` sets the behaviour, `GET /_fault` reads the stats, `DELETE /_fault` resets them. */
export const CONTROL_PATH = "/_fault";

/**
 * An OpenAI-compatible upstream whose behaviour a fault suite switches at run time over HTTP
 * (`POST /_fault` with an UpstreamBehaviour). In "ok" mode it is the bench's fake upstream (the
 * same handler, composed, not copied), so an answer is byte for byte what the benchmarks see.
 */
export function createSwitchableUpstream(options: FakeUpstreamOptions): http.Server {
  const fake = createFakeUpstream(options);
  const answer = fake.listeners("request")[0] as http.RequestListener;
  let behaviour: UpstreamBehaviour = { mode: "ok" };
  let stats: UpstreamStats = { requests: 0, byMode: {}, errorArrivals: [] };
  const words = Array.from({ length: options.chunks }, (_, i) => `tok${i} `);

  return http.createServer({ keepAlive: true, keepAliveTimeout: 60_000 }, (req, res) => {
    if (req.url?.startsWith(CONTROL_PATH)) return control(req, res);
    if (req.method !== "POST") return answer(req, res);
    stats.requests++;
    const mode = behaviour.mode === "status" ? String(behaviour.status) : behaviour.mode;
    stats.byMode[mode] = (stats.byMode[mode] ?? 0) + 1;
    const now = behaviour;
    if (now.mode === "ok") return answer(req, res);
    if (now.mode === "status") {
      if (stats.errorArrivals.length < 100_000) stats.errorArrivals.push(Date.now());
      req.resume();
      req.on("end", () => {
        const body = JSON.stringify({
          error: now.status === 429 ? { message: "Rate limit reached. Please try again later.", type: "requests", code: "rate_limit_exceeded" } : { message: "The server had an error while processing your request.", type: "server_error", code: null },
        });
        res.writeHead(now.status, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          ...(now.retryAfterS === undefined ? {} : { "retry-after": String(now.retryAfterS) }),
        });
        res.end(body);
      });
      return;
    }
    // Stall: a started answer that goes silent, as an upstream whose backend froze mid-generation.
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      let sent = 0;
      const next = () => {
        if (res.destroyed || sent >= Math.min(now.afterChunks, words.length)) return;
        res.write(`data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"fixed","choices":[{"index":0,"delta":{"content":${JSON.stringify(words[sent])}},"finish_reason":null}]}\n\n`);
        sent++;
        setTimeout(next, options.chunkIntervalMs);
      };
      setTimeout(next, options.ttftMs);
    });
  });

  function control(req: http.IncomingMessage, res: http.ServerResponse): void {
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => {
      if (req.method === "POST") {
        try {
          behaviour = parseBehaviour(JSON.parse(Buffer.concat(parts).toString("utf8")));
        } catch (err) {
          res.writeHead(400, { "content-type": "text/plain" });
          res.end(String((err as Error).message));
          return;
        }
        res.writeHead(204).end();
      } else if (req.method === "DELETE") {
        stats = { requests: 0, byMode: {}, errorArrivals: [] };
        res.writeHead(204).end();
      } else {
        const body = JSON.stringify({ behaviour, ...stats });
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
        res.end(body);
      }
    });
  }
}

function parseBehaviour(v: unknown): UpstreamBehaviour {
  const b = v as Partial<Record<string, unknown>>;
  if (b?.mode === "ok") return { mode: "ok" };
  if (b?.mode === "status" && typeof b.status === "number" && b.status >= 400) {
    return { mode: "status", status: b.status, ...(typeof b.retryAfterS === "number" ? { retryAfterS: b.retryAfterS } : {}) };
  }
  if (b?.mode === "stall" && typeof b.afterChunks === "number") return { mode: "stall", afterChunks: b.afterChunks };
  throw new Error('expected {"mode":"ok"}, {"mode":"status","status":N,"retryAfterS"?:S} or {"mode":"stall","afterChunks":N}');
}

/** Client side of the control endpoint. */
export class UpstreamControl {
  constructor(readonly baseUrl: string) {}

  async set(behaviour: UpstreamBehaviour): Promise<void> {
    const res = await fetch(`${this.baseUrl}${CONTROL_PATH}`, { method: "POST", body: JSON.stringify(behaviour) });
    if (res.status !== 204) throw new Error(`upstream control: HTTP ${res.status} ${await res.text()}`);
  }

  async stats(): Promise<UpstreamStats & { behaviour: UpstreamBehaviour }> {
    return (await (await fetch(`${this.baseUrl}${CONTROL_PATH}`)).json()) as UpstreamStats & { behaviour: UpstreamBehaviour };
  }

  async reset(): Promise<void> {
    await fetch(`${this.baseUrl}${CONTROL_PATH}`, { method: "DELETE" });
  }
}
