import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dot, EmbeddingError, LocalEmbedder, MemoisedEmbedder, OpenAiEmbedder, type Embedder } from "../src/embedding.js";

describe("LocalEmbedder", () => {
  const e = new LocalEmbedder(256);
  const sim = (a: string, b: string) => dot(e.embedSync(a), e.embedSync(b));

  it("is deterministic and unit-length", () => {
    const a = e.embedSync("How do I reverse a list in Python?");
    expect([...a]).toEqual([...e.embedSync("How do I reverse a list in Python?")]);
    expect(dot(a, a)).toBeCloseTo(1, 5);
    expect(a.length).toBe(256);
  });

  it("puts rephrasings that keep the wording above the default threshold (0.9)", () => {
    expect(sim("What is the capital of France?", "what's the capital of france")).toBeGreaterThan(0.9);
    expect(sim("How do I reverse a list in Python?", "How can I reverse a list in python")).toBeGreaterThan(0.9);
    expect(sim("Write a haiku about autumn leaves", "write a haiku about autumn leaves please")).toBeGreaterThan(0.9);
  });

  it("keeps questions about something else well below it", () => {
    expect(sim("What is the capital of France?", "What is the capital of Germany?")).toBeLessThan(0.7);
    expect(sim("How do I reverse a list in Python?", "How do I sort a list in Python?")).toBeLessThan(0.8);
    expect(sim("Should I take ibuprofen?", "Should I not take ibuprofen?")).toBeLessThan(0.9);
    expect(sim("dog bites man", "man bites dog")).toBeLessThan(0.9);
  });

  it("does not know synonyms (a documented limit)", () => {
    expect(sim("car", "automobile")).toBeLessThan(0.3);
  });

  it("maps text without words to the zero vector, which matches nothing", () => {
    expect(dot(e.embedSync("?!"), e.embedSync("?!"))).toBe(0);
  });
});

describe("OpenAiEmbedder against a local /v1/embeddings", () => {
  let server: http.Server;
  let baseUrl: string;
  const seen: { auth: string | undefined; body: Record<string, unknown> }[] = [];
  let mode: "ok" | "500" | "slow" | "garbage" = "ok";

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let raw = "";
      req.on("data", (c: Buffer) => (raw += c.toString()));
      req.on("end", () => {
        if (req.url !== "/v1/embeddings" || req.method !== "POST") return res.writeHead(404).end();
        seen.push({ auth: req.headers.authorization, body: JSON.parse(raw) as Record<string, unknown> });
        if (mode === "500") return res.writeHead(500, { "content-type": "application/json" }).end('{"error":{"message":"boom"}}');
        if (mode === "garbage") return res.writeHead(200, { "content-type": "application/json" }).end('{"data":[{"embedding":"nope"}]}');
        const send = () =>
          res.writeHead(200, { "content-type": "application/json" }).end(
            JSON.stringify({ object: "list", data: [{ object: "embedding", index: 0, embedding: [3, 4, 0] }], model: "m", usage: { prompt_tokens: 1, total_tokens: 1 } }),
          );
        if (mode === "slow") setTimeout(send, 500);
        else send();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const make = (timeoutMs = 1_000) => new OpenAiEmbedder({ baseUrl: baseUrl + "/", apiKey: "sk-test", model: "text-embedding-3-small", dimensions: 3, timeoutMs });

  it("posts the documented request and normalises the vector", async () => {
    mode = "ok";
    const v = await make().embed("hello");
    expect([...v].map((x) => Number(x.toFixed(3)))).toEqual([0.6, 0.8, 0]);
    expect(seen.at(-1)).toEqual({
      auth: "Bearer sk-test",
      body: { model: "text-embedding-3-small", input: ["hello"], encoding_format: "float", dimensions: 3 },
    });
    expect(make().id).toBe("openai/text-embedding-3-small/3");
  });

  it("turns an HTTP error, a malformed body and a timeout into EmbeddingError without the URL or key", async () => {
    for (const m of ["500", "garbage", "slow"] as const) {
      mode = m;
      const err = await make(100).embed("hello").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EmbeddingError);
      expect(String((err as Error).message)).not.toMatch(/127\.0\.0\.1|sk-test/);
    }
    mode = "ok";
  });

  it("is called once per text when memoised", async () => {
    mode = "ok";
    const before = seen.length;
    const e: Embedder = new MemoisedEmbedder(make(), 2);
    await e.embed("a");
    await e.embed("a");
    await e.embed("b");
    await e.embed("c");
    await e.embed("a");
    expect(seen.length - before).toBe(4);
  });
});
