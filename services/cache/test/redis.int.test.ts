import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as net from "node:net";
import { cache as pb } from "@switchyard/proto";
import { createRpcServer, createServiceClient, HealthStatus } from "@switchyard/rpc";
import { createLogger } from "@switchyard/telemetry";
import fc from "fast-check";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { LocalEmbedder } from "../src/embedding.js";
import { CacheHandler } from "../src/handler.js";
import { RedisStore } from "../src/redis-store.js";
import { ResponseCache } from "../src/response-cache.js";
import { answer, keyOf } from "./fixtures.js";

const SHARED_REDIS = "redis://127.0.0.1:6379";
const secret = Buffer.from("shared-secret");
/** Every key this run writes to the shared Redis starts with this; removed at the end. */
const prefix = `switchyard:test:${randomBytes(6).toString("hex")}:`;
const stores: RedisStore[] = [];

function replica(options: { url?: string; ttlMs?: number; keyPrefix?: string; exactScanBelow?: number } = {}) {
  const store = new RedisStore({
    url: options.url ?? SHARED_REDIS,
    keyPrefix: options.keyPrefix ?? prefix,
    ttlMs: options.ttlMs ?? 60_000,
    timeoutMs: 200,
    exactScanBelow: options.exactScanBelow ?? 512,
    maxMirrorVectors: 10_000,
  });
  stores.push(store);
  const cache = new ResponseCache({ store, embedder: new LocalEmbedder(), secret, policy: () => ({ semantic: true, similarityThreshold: 0.9 }) });
  return { store, cache };
}

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  const admin = new Redis(SHARED_REDIS);
  let cursor = "0";
  do {
    const [next, keys] = await admin.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    if (keys.length > 0) await admin.del(...keys);
    cursor = next;
  } while (cursor !== "0");
  admin.disconnect();
});

describe("RedisStore on the shared Redis", () => {
  it("shares exact and semantic entries between replicas", async () => {
    const a = replica();
    const b = replica();
    await until(() => a.store.status().connected && b.store.status().connected);
    const key = keyOf("acme", "Write a haiku about autumn leaves", { system: "Poet." });
    expect(await b.cache.lookup(key)).toEqual({ kind: "miss" });
    expect(await a.cache.store(key, answer("Red leaves drift..."))).toBe(true);
    expect(await b.cache.lookup(key)).toMatchObject({ kind: "exact", completion: { content: "Red leaves drift..." } });
    const near = await b.cache.lookup(keyOf("acme", "write a haiku about autumn leaves please", { system: "Poet." }));
    expect(near.kind).toBe("semantic");
    // A later store through b reaches a's mirror, which was created before it.
    await a.cache.lookup(keyOf("acme", "Explain recursion", { system: "Poet." }));
    await b.cache.store(keyOf("acme", "Explain recursion to a child", { system: "Poet." }), answer("A story in a story."));
    expect((await a.cache.lookup(keyOf("acme", "explain recursion to a child!", { system: "Poet." }))).kind).toBe("semantic");
    expect(await a.cache.lookup(keyOf("acme", "write a haiku about autumn leaves please", { system: "Other." }))).toEqual({ kind: "miss" });
  });

  it("tenant B never hits tenant A's entries, on any replica (property)", async () => {
    const a = replica();
    const b = replica();
    await until(() => a.store.status().connected && b.store.status().connected);
    const word = fc.constantFrom("capital", "france", "python", "reverse", "list", "haiku", "autumn", "weather", "sort", "string");
    const prompt = fc.array(word, { minLength: 1, maxLength: 6 }).map((ws) => ws.join(" "));
    const tenant = fc.oneof(fc.constantFrom("a", "b", "a:b", "a\u0000", "YQ"), fc.string({ minLength: 1, maxLength: 5 }));
    let run = 0;
    await fc.assert(
      fc.asyncProperty(tenant, tenant, prompt, fc.constantFrom("", "!", " please"), async (ta, tb, p, suffix) => {
        fc.pre(ta !== tb);
        // A fresh system prompt per run keeps runs apart in the shared Redis.
        const system = { system: `run ${run++}` };
        await a.cache.store(keyOf(ta, p, system), answer(`for ${ta}`));
        expect(await b.cache.lookup(keyOf(tb, p, system))).toEqual({ kind: "miss" });
        expect(await b.cache.lookup(keyOf(tb, p + suffix, system))).toEqual({ kind: "miss" });
        expect((await b.cache.lookup(keyOf(ta, p + suffix, system))).kind).not.toBe("miss");
      }),
      { numRuns: 60 },
    );
  });

  it("lets Redis expire entries after the TTL, and mirrors follow", async () => {
    const { store, cache } = replica({ ttlMs: 300 });
    await until(() => store.status().connected);
    await cache.store(keyOf("t", "How do I sort a list in Python?"), answer("sorted()"));
    expect((await cache.lookup(keyOf("t", "how do I sort a list in python"))).kind).toBe("semantic");
    await new Promise((r) => setTimeout(r, 400));
    expect(await cache.lookup(keyOf("t", "How do I sort a list in Python?"))).toEqual({ kind: "miss" });
    expect(await cache.lookup(keyOf("t", "how do I sort a list in python"))).toEqual({ kind: "miss" });
    expect(store.stats().vectors).toBe(0);
  });

  it("keeps the LSH mirror in step with the stream beyond the exact-scan size", async () => {
    const { store, cache } = replica({ exactScanBelow: 8 });
    await until(() => store.status().connected);
    const topics = ["python lists", "rust lifetimes", "css grid", "sql joins", "git rebase", "docker volumes", "tcp handshakes", "dns caching", "http caching", "regex lookahead", "bash arrays", "json schema"];
    for (const t of topics) await cache.store(keyOf("t", `Explain ${t} with an example`), answer(t));
    for (const t of topics) {
      const r = await cache.lookup(keyOf("t", `explain ${t} with an example please`));
      expect(r.kind === "semantic" && r.completion.content).toBe(t);
    }
  });
});

describe("Redis going away mid-run", () => {
  let redis: ChildProcess | undefined;
  afterAll(() => {
    redis?.kill("SIGKILL");
  });

  it("degrades to fast misses through the service, says so, and recovers when Redis is back", async () => {
    const port = await freePort();
    const start = () => spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
    redis = start();
    const { store, cache } = replica({ url: `redis://127.0.0.1:${port}`, keyPrefix: "t:" });
    await until(() => store.status().connected);

    const server = createRpcServer({
      name: "cache",
      host: "127.0.0.1",
      port: 0,
      routes: (router) => router.service(pb.CacheService, new CacheHandler(cache, 50)),
      health: new HealthStatus([pb.CacheService.typeName]),
      logger: createLogger({ service: "cache", level: "error" }),
    });
    const { port: rpcPort } = await server.listen();
    const client = createServiceClient(pb.CacheService, `http://127.0.0.1:${rpcPort}`).client;
    try {
      const key = keyOf("acme", "What is the capital of France?");
      expect((await client.store({ key, completion: answer("Paris.") })).stored).toBe(true);
      expect((await client.lookup({ key })).hit).toBe(true);

      redis.kill("SIGKILL");
      await new Promise((r) => redis!.once("exit", r));
      for (let i = 0; i < 20; i++) {
        const started = performance.now();
        const res = await client.lookup({ key: i % 2 ? key : keyOf("acme", "what's the capital of france") }, { timeoutMs: 1_000 });
        expect(res.hit).toBe(false);
        expect(performance.now() - started).toBeLessThan(100);
      }
      expect((await client.store({ key, completion: answer("Paris.") })).stored).toBe(false);
      expect(store.status()).toMatchObject({ connected: false });
      expect(store.status().detail).toMatch(/lookups miss/);

      redis = start();
      await until(() => store.status().connected);
      expect((await client.lookup({ key })).hit).toBe(false); // the new Redis is empty
      expect((await client.store({ key, completion: answer("Paris.") })).stored).toBe(true);
      expect((await client.lookup({ key: keyOf("acme", "what's the capital of france") })).kind).toBe(pb.HitKind.SEMANTIC);
    } finally {
      await server.close(100);
    }
  });

  it("answers within the budget when Redis hangs instead of going away", async () => {
    const port = await freePort();
    const r = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
    try {
      const { store, cache } = replica({ url: `redis://127.0.0.1:${port}`, keyPrefix: "t:" });
      await until(() => store.status().connected);
      r.kill("SIGSTOP");
      const started = performance.now();
      expect(await cache.lookup(keyOf("acme", "q"), AbortSignal.timeout(50))).toEqual({ kind: "miss" });
      expect(performance.now() - started).toBeLessThan(150);
    } finally {
      r.kill("SIGKILL");
    }
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
