import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { cache as pb, common } from "@switchyard/proto";
import { createRpcServer, createServiceClient, HealthStatus, type RpcServer, type ServiceClient } from "@switchyard/rpc";
import { createLogger } from "@switchyard/telemetry";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalEmbedder } from "../src/embedding.js";
import { CacheHandler } from "../src/handler.js";
import { MemoryStore } from "../src/memory-store.js";
import { ResponseCache } from "../src/response-cache.js";
import { answer, keyOf } from "./fixtures.js";

let server: RpcServer;
let cache: ServiceClient<typeof pb.CacheService>;

beforeAll(async () => {
  const responses = new ResponseCache({
    store: new MemoryStore({ maxEntries: 1_000, maxBytes: 1e7, ttlMs: 60_000, exactScanBelow: 512 }),
    embedder: new LocalEmbedder(),
    secret: Buffer.from("k"),
    policy: () => ({ semantic: true, similarityThreshold: 0.9 }),
  });
  server = createRpcServer({
    name: "cache",
    host: "127.0.0.1",
    port: 0,
    routes: (router) => router.service(pb.CacheService, new CacheHandler(responses, 50)),
    health: new HealthStatus([pb.CacheService.typeName]),
    logger: createLogger({ service: "cache", level: "error" }),
  });
  const { port } = await server.listen();
  cache = createServiceClient(pb.CacheService, `http://127.0.0.1:${port}`);
});

afterAll(async () => {
  cache.close();
  await server.close(100);
});

async function rpcError(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

describe("CacheService over a real Connect server", () => {
  it("stores a complete answer and reports exact and semantic hits with their similarity", async () => {
    const key = keyOf("acme", "How do I reverse a list in Python?", { system: "Answer with code." });
    expect(await cache.client.lookup({ key })).toMatchObject({ hit: false, kind: pb.HitKind.UNSPECIFIED, similarity: 0 });
    expect((await cache.client.store({ key, completion: answer("xs[::-1]", 900n) })).stored).toBe(true);

    const exact = await cache.client.lookup({ key });
    expect(exact).toMatchObject({ hit: true, kind: pb.HitKind.EXACT, similarity: 1 });
    expect(exact.completion).toMatchObject({ content: "xs[::-1]", costMicroUsd: 900n, provider: "sim", finishReason: "stop" });

    const near = await cache.client.lookup({ key: keyOf("acme", "how can I reverse a list in python", { system: "Answer with code." }) });
    expect(near.hit).toBe(true);
    expect(near.kind).toBe(pb.HitKind.SEMANTIC);
    expect(near.similarity).toBeGreaterThan(0.9);
    expect(near.similarity).toBeLessThan(1);

    expect((await cache.client.lookup({ key: keyOf("other", "How do I reverse a list in Python?", { system: "Answer with code." }) })).hit).toBe(false);
  });

  it("refuses partial, failed or anonymous answers with InvalidArgument naming the field, and stores nothing", async () => {
    const key = keyOf("acme", "Tell me a long story");
    const complete = answer("Once upon a time...");
    const broken: [Partial<pb.CachedCompletion>, string][] = [
      [{ finishReason: "" }, "completion.finish_reason"], // the stream was cut before a finish event
      [{ finishReason: "error" }, "completion.finish_reason"],
      [{ finishReason: "content_filter" }, "completion.finish_reason"],
      [{ finishReason: "tool_calls" }, "completion.finish_reason"],
      [{ usage: undefined }, "completion.usage"],
      [{ usage: create(common.UsageSchema, { inputTokens: 5n }) }, "completion.usage.output_tokens"],
      [{ content: "" }, "completion.content"],
      [{ provider: "" }, "completion.provider"],
      [{ model: "" }, "completion.model"],
      [{ costMicroUsd: -1n }, "completion.cost_micro_usd"],
    ];
    for (const [change, field] of broken) {
      const err = await rpcError(cache.client.store({ key, completion: { ...complete, ...change } }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toContain(field);
    }
    expect((await rpcError(cache.client.store({ key }))).rawMessage).toContain("completion is required");
    expect((await cache.client.lookup({ key })).hit).toBe(false);
    expect((await cache.client.lookup({ key: keyOf("acme", "tell me a long story!") })).hit).toBe(false);
  });

  it("rejects bad keys with InvalidArgument naming the field", async () => {
    const cases: [pb.CacheKey | undefined, string][] = [
      [undefined, "key is required"],
      [create(pb.CacheKeySchema, { tenant: "", messages: keyOf("t", "q").messages }), "key.tenant"],
      [create(pb.CacheKeySchema, { tenant: "x".repeat(257), messages: keyOf("t", "q").messages }), "key.tenant"],
      [create(pb.CacheKeySchema, { tenant: "t" }), "key.messages"],
      [create(pb.CacheKeySchema, { tenant: "t", messages: [create(common.ChatMessageSchema, { role: " ", content: "q" })] }), "key.messages[0].role"],
      [{ ...keyOf("t", "q"), sampling: create(common.SamplingParamsSchema, { temperature: Number.NaN }) }, "key.sampling.temperature"],
      [{ ...keyOf("t", "q"), sampling: create(common.SamplingParamsSchema, { topP: 2 }) }, "key.sampling.top_p"],
      [{ ...keyOf("t", "q"), sampling: create(common.SamplingParamsSchema, { maxTokens: -1 }) }, "key.sampling.max_tokens"],
    ];
    for (const [key, field] of cases) {
      for (const call of [cache.client.lookup(key ? { key } : {}), cache.client.store(key ? { key, completion: answer("a") } : { completion: answer("a") })]) {
        const err = await rpcError(call);
        expect(err.code).toBe(Code.InvalidArgument);
        expect(err.rawMessage).toContain(field);
      }
    }
  });
});
