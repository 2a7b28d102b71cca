/**
 * Cache lookup benchmark: p50/p99 of exact and semantic lookups with N entries (default
 * 100,000), in process and through Redis. Prints a table and writes `.bench/cache.json`
 * (relative to the working folder).
 *
 *   node services/cache/dist/bench.js [--entries 100000] [--queries 2000] [--redis redis://127.0.0.1:6379 | --no-redis] [--no-memory]
 *
 * Every entry is in one tenant with one system prompt, so all of them share one semantic
 * partition: the worst case for the semantic index. Redis keys use a fresh prefix, removed at the end.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { create } from "@bufbuild/protobuf";
import { cache as pb, common } from "@switchyard/proto";
import { Redis } from "ioredis";
import { LocalEmbedder } from "./embedding.js";
import { MemoryStore } from "./memory-store.js";
import { RedisStore } from "./redis-store.js";
import { ResponseCache, type LookupResult } from "./response-cache.js";
import type { CacheStore } from "./store.js";

interface Row {
  backend: string;
  case: string;
  lookups: number;
  p50_us: number;
  p99_us: number;
  mean_us: number;
  /** CPU time of this process per lookup: what the lookup costs without waiting for a busy machine. */
  cpu_us: number;
  /** Share of lookups answered as the case expects (hit kind or miss). */
  expected_share: number;
}

const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const entries = Number(flag("--entries") ?? 100_000);
const queries = Number(flag("--queries") ?? 2_000);
const redisUrl = args.includes("--no-redis") ? undefined : (flag("--redis") ?? "redis://127.0.0.1:6379");

/** Deterministic pseudo-random numbers, so every run measures the same prompts. */
let seed = 42;
const random = () => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 4294967296;
};
const syllables = ["ka", "lo", "mi", "ren", "tor", "vus", "shi", "pla", "dre", "gon", "fe", "qua", "bri", "zel", "nu", "sta"];
const vocabulary = Array.from({ length: 5_000 }, () => Array.from({ length: 2 + Math.floor(random() * 3) }, () => syllables[Math.floor(random() * syllables.length)]).join(""));
const openers = ["How do I", "What is the best way to", "Explain how to", "Can you show me how to", "Why does"];
const prompt = () => `${openers[Math.floor(random() * openers.length)]} ${Array.from({ length: 6 + Math.floor(random() * 6) }, () => vocabulary[Math.floor(random() * vocabulary.length)]).join(" ")}?`;

const SYSTEM = create(common.ChatMessageSchema, { role: "system", content: "You are a helpful assistant. Answer briefly." });
const keyOf = (text: string) =>
  create(pb.CacheKeySchema, {
    tenant: "bench",
    requestedModel: "switchyard/auto",
    messages: [SYSTEM, create(common.ChatMessageSchema, { role: "user", content: text })],
    sampling: create(common.SamplingParamsSchema, { temperature: 0 }),
  });
const completion = (i: number) =>
  create(pb.CachedCompletionSchema, {
    provider: "sim",
    model: "sim-small",
    tier: "simple",
    content: `Answer ${i}: ` + "lorem ipsum dolor sit amet ".repeat(12),
    finishReason: "stop",
    usage: create(common.UsageSchema, { inputTokens: 40n, outputTokens: 80n }),
    costMicroUsd: 123n,
  });

const prompts = Array.from({ length: entries }, prompt);
/** A rephrasing that keeps the wording: what the local embedding is meant to catch. */
const rephrase = (p: string) => p.toLowerCase().replace(/\?$/, "") + " please";

async function measure(backend: string, name: string, cache: ResponseCache, texts: string[], expected: LookupResult["kind"]): Promise<Row> {
  const keys = texts.map(keyOf);
  for (const k of keys.slice(0, Math.min(200, keys.length))) await cache.lookup(k); // warm-up (JIT, mirrors)
  const times: number[] = [];
  let matched = 0;
  const cpu = process.cpuUsage();
  for (const k of keys) {
    const t0 = process.hrtime.bigint();
    const r = await cache.lookup(k);
    times.push(Number(process.hrtime.bigint() - t0) / 1_000);
    if (r.kind === expected) matched++;
  }
  const used = process.cpuUsage(cpu);
  times.sort((a, b) => a - b);
  const at = (q: number) => Number(times[Math.min(times.length - 1, Math.floor(q * times.length))]!.toFixed(1));
  return { backend, case: name, lookups: times.length, p50_us: at(0.5), p99_us: at(0.99), mean_us: Number((times.reduce((a, b) => a + b, 0) / times.length).toFixed(1)), cpu_us: Number(((used.user + used.system) / times.length).toFixed(1)), expected_share: Number((matched / times.length).toFixed(4)) };
}

function sample(n: number): string[] {
  return Array.from({ length: n }, () => prompts[Math.floor(random() * prompts.length)]!);
}

async function fill(cache: ResponseCache, concurrency: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < prompts.length; i += concurrency) {
    const batch = prompts.slice(i, i + concurrency).map((p, j) => cache.store(keyOf(p), completion(i + j)));
    const stored = await Promise.all(batch);
    if (stored.includes(false)) throw new Error("an entry was not stored; is the backend reachable and large enough?");
  }
  return (performance.now() - t0) / 1000;
}

async function run(backend: string, store: CacheStore, concurrency: number): Promise<{ rows: Row[]; fillSeconds: number; coldSyncMs?: number }> {
  const embedder = new LocalEmbedder();
  const semantic = new ResponseCache({ store, embedder, secret: Buffer.from("bench"), policy: () => ({ semantic: true, similarityThreshold: 0.9 }) });
  const exactOnly = new ResponseCache({ store, embedder, secret: Buffer.from("bench"), policy: () => ({ semantic: false, similarityThreshold: 1 }) });
  const fillSeconds = await fill(semantic, concurrency);
  let coldSyncMs: number | undefined;
  if (store instanceof RedisStore) {
    // The first semantic lookup of a replica copies the partition's vectors from Redis.
    const t0 = performance.now();
    await semantic.lookup(keyOf(rephrase(prompts[0]!)));
    coldSyncMs = performance.now() - t0;
  }
  const rows = [
    await measure(backend, "exact hit", exactOnly, sample(queries), "exact"),
    await measure(backend, "exact miss", exactOnly, Array.from({ length: queries }, prompt), "miss"),
    await measure(backend, "semantic hit (rephrased)", semantic, sample(queries).map(rephrase), "semantic"),
    await measure(backend, "semantic miss (exact + semantic)", semantic, Array.from({ length: queries }, prompt), "miss"),
  ];
  return { rows, fillSeconds, ...(coldSyncMs === undefined ? {} : { coldSyncMs }) };
}

const results: { rows: Row[]; fill: Record<string, number>; coldSyncMs?: number } = { rows: [], fill: {} };

if (!args.includes("--no-memory")) {
  const memory = await run("memory", new MemoryStore({ maxEntries: entries, maxBytes: 4 * 1024 ** 3, ttlMs: 3_600_000, exactScanBelow: 512 }), 1);
  results.rows.push(...memory.rows);
  results.fill.memory_seconds = Number(memory.fillSeconds.toFixed(2));
}

if (redisUrl) {
  const prefix = `switchyard:bench:${randomBytes(4).toString("hex")}:`;
  const store = new RedisStore({ url: redisUrl, keyPrefix: prefix, ttlMs: 3_600_000, timeoutMs: 5_000, exactScanBelow: 512, maxMirrorVectors: entries * 2 });
  const deadline = Date.now() + 5_000;
  while (!store.status().connected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (!store.status().connected) {
    process.stderr.write(`redis at ${redisUrl} is not reachable; skipping the Redis rows (--no-redis to skip quietly)\n`);
  } else {
    try {
      const r = await run("redis", store, 256);
      results.rows.push(...r.rows);
      results.fill.redis_seconds = Number(r.fillSeconds.toFixed(2));
      if (r.coldSyncMs !== undefined) results.coldSyncMs = Number(r.coldSyncMs.toFixed(0));
    } finally {
      await store.close();
      const admin = new Redis(redisUrl);
      let cursor = "0";
      do {
        const [next, keys] = await admin.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 5_000);
        if (keys.length > 0) await admin.unlink(...keys);
        cursor = next;
      } while (cursor !== "0");
      admin.disconnect();
    }
  }
}

const machine = { cpu: cpus()[0]?.model ?? "unknown", cpus: cpus().length, memory_gb: Math.round(totalmem() / 1024 ** 3), node: process.version, loadavg_1m: Number(loadavg()[0]!.toFixed(2)) };
const report = { benchmark: "cache lookup", entries, queries, date: new Date().toISOString(), machine, ...results };

console.log(`cache lookups with ${entries.toLocaleString("en-US")} entries in one semantic partition (${machine.cpu}, ${machine.cpus} CPUs, Node ${machine.node}, load ${machine.loadavg_1m})`);
console.log("backend  case                              p50 µs    p99 µs   mean µs  cpu µs  as expected");
for (const r of results.rows) {
  console.log(`${r.backend.padEnd(8)} ${r.case.padEnd(33)} ${String(r.p50_us).padStart(7)} ${String(r.p99_us).padStart(9)} ${String(r.mean_us).padStart(9)} ${String(r.cpu_us).padStart(7)}  ${(r.expected_share * 100).toFixed(1)}%`);
}
console.log(`fill: ${JSON.stringify(results.fill)}${results.coldSyncMs === undefined ? "" : `; first semantic lookup on a cold Redis replica (mirror sync of ${entries} vectors): ${results.coldSyncMs} ms`}`);
mkdirSync(".bench", { recursive: true });
writeFileSync(".bench/cache.json", JSON.stringify(report, null, 2) + "\n");
console.log("wrote .bench/cache.json");
