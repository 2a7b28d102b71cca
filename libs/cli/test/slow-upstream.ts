import * as http from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** One chat completion request the upstream received, and whether its caller gave up on it. */
export interface UpstreamCall {
  model: string;
  receivedAt: number;
  /** When the connection or stream closed before the answer was complete (undefined: it was not). */
  abortedAt?: number;
  /** Chunks written before that. */
  chunksSent: number;
}

/** A local OpenAI-compatible API whose answers take their time, recording who hangs up on them. */
export interface SlowUpstream {
  /** Base URL including /v1, as a provider's `base_url`. */
  baseUrl: string;
  calls: UpstreamCall[];
  /** Resolves with the call once `n` chat completion requests have arrived. */
  nthCall(n: number): Promise<UpstreamCall>;
  close(): Promise<void>;
}

/**
 * Streams every chat completion the way OpenAI's API does (`data:` chunks of
 * `chat.completion.chunk`, a finish chunk, a usage chunk, `data: [DONE]`), one word every
 * `gapMs`, `words` words long: long enough for a client to hang up in the middle.
 */
export async function startSlowUpstream(words = 200, gapMs = 50): Promise<SlowUpstream> {
  const calls: UpstreamCall[] = [];
  const waiters: { n: number; resolve: (c: UpstreamCall) => void }[] = [];
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.method !== "POST" || !req.url?.endsWith("/chat/completions")) {
        res.writeHead(404, { "content-type": "application/json" }).end('{"error":{"message":"Not found","type":"invalid_request_error"}}');
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { model: string };
      const call: UpstreamCall = { model: body.model, receivedAt: performance.now(), chunksSent: 0 };
      calls.push(call);
      for (const w of waiters.filter((w) => w.n === calls.length)) w.resolve(call);
      let done = false;
      res.once("close", () => {
        if (!done) call.abortedAt = performance.now();
      });
      const base = { id: "chatcmpl-slow", object: "chat.completion.chunk", created: 1741570283, model: body.model, system_fingerprint: "fp_slow" };
      const send = (o: unknown) => res.write(`data: ${JSON.stringify(o)}\n\n`);
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      send({ ...base, choices: [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }], usage: null });
      let i = 0;
      const timer = setInterval(() => {
        if (res.destroyed) return clearInterval(timer);
        if (i < words) {
          send({ ...base, choices: [{ index: 0, delta: { content: `word${i} ` }, logprobs: null, finish_reason: null }], usage: null });
          call.chunksSent = ++i;
          return;
        }
        clearInterval(timer);
        send({ ...base, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: "stop" }], usage: null });
        send({ ...base, choices: [], usage: { prompt_tokens: 9, completion_tokens: words, total_tokens: 9 + words } });
        done = true;
        res.end("data: [DONE]\n\n");
      }, gapMs);
    });
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    calls,
    nthCall: (n) => (calls.length >= n ? Promise.resolve(calls[n - 1]!) : new Promise((resolve) => waiters.push({ n, resolve }))),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
