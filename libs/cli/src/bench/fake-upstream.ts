import * as http from "node:http";
import type { AddressInfo } from "node:net";

/** How the fake upstream answers: every request alike. */
export interface FakeUpstreamOptions {
  /** Time to the first answer chunk. */
  ttftMs: number;
  /** Content chunks after the first token. */
  chunks: number;
  /** Gap between two content chunks. */
  chunkIntervalMs: number;
}

export const DEFAULT_FAKE_UPSTREAM: FakeUpstreamOptions = { ttftMs: 50, chunks: 8, chunkIntervalMs: 1.6 };

/**
 * An OpenAI-compatible Chat Completions server with a fixed time to first token, used as the
 * upstream of every benchmark target. Streamed answers are written the way real servers write
 * them: each SSE event in small pieces (the `data: ` prefix, the JSON, the blank line), usage in a
 * final chunk when `stream_options.include_usage` asks for it, then `data: [DONE]`. Non-streamed
 * requests get the same answer as one JSON body after the same total time.
 */
export function createFakeUpstream(o: FakeUpstreamOptions): http.Server {
  return http.createServer({ keepAlive: true, keepAliveTimeout: 60_000 }, (req, res) => {
    if (req.method !== "POST") {
      // Warm-up probes (GET on the base URL) and anything else: a small 404, as real APIs answer.
      req.resume();
      res.writeHead(404, { "content-type": "application/json" });
      res.end('{"error":{"message":"not found"}}');
      return;
    }
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => {
      let body: { stream?: boolean; model?: string; stream_options?: { include_usage?: boolean } } = {};
      try {
        body = JSON.parse(Buffer.concat(parts).toString("utf8")) as typeof body;
      } catch {
        res.writeHead(400, { "content-type": "application/json" });
        res.end('{"error":{"message":"invalid JSON"}}');
        return;
      }
      const model = body.model ?? "fixed";
      const words = Array.from({ length: o.chunks }, (_, i) => `tok${i} `);
      const usage = { prompt_tokens: 20, completion_tokens: o.chunks, total_tokens: 20 + o.chunks };
      if (!body.stream) {
        setTimeout(() => {
          const text = JSON.stringify({
            id: "chatcmpl-bench",
            object: "chat.completion",
            created: 0,
            model,
            choices: [{ index: 0, message: { role: "assistant", content: words.join("") }, finish_reason: "stop" }],
            usage,
          });
          res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
          res.end(text);
        }, o.ttftMs + o.chunks * o.chunkIntervalMs);
        return;
      }
      const base = `"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":${JSON.stringify(model)}`;
      const event = (json: string) => {
        if (res.destroyed) return;
        res.write("data: ");
        res.write(json);
        res.write("\n\n");
      };
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      let sent = 0;
      const next = () => {
        if (res.destroyed) return;
        if (sent < o.chunks) {
          event(`{${base},"choices":[{"index":0,"delta":{"content":${JSON.stringify(words[sent])}},"finish_reason":null}]}`);
          sent++;
          setTimeout(next, o.chunkIntervalMs);
          return;
        }
        event(`{${base},"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`);
        if (body.stream_options?.include_usage) event(`{${base},"choices":[],"usage":${JSON.stringify(usage)}}`);
        res.end("data: [DONE]\n\n");
      };
      setTimeout(next, o.ttftMs);
    });
  });
}

/** Listens on a free loopback port; resolves to the port. */
export async function listenFakeUpstream(server: http.Server, port = 0): Promise<number> {
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}
