import { create, toBinary } from "@bufbuild/protobuf";
import { cache as pb } from "@switchyard/proto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LocalEmbedder, type Embedder } from "../src/embedding.js";
import { exactRef, normalise } from "../src/key.js";
import { MemoryStore } from "../src/memory-store.js";
import { ResponseCache, type CacheObserver, type TenantCachePolicy } from "../src/response-cache.js";
import type { CacheStore } from "../src/store.js";
import { answer, keyOf } from "./fixtures.js";

const secret = Buffer.from("k");
const semantic: TenantCachePolicy = { semantic: true, similarityThreshold: 0.9 };

function memoryCache(options: { store?: CacheStore; embedder?: Embedder; policy?: (t: string) => TenantCachePolicy; observer?: CacheObserver; maxEntries?: number; now?: () => number } = {}) {
  const store = options.store ?? new MemoryStore({ maxEntries: options.maxEntries ?? 10_000, maxBytes: 1e8, ttlMs: 60_000, exactScanBelow: 4, ...(options.now ? { now: options.now } : {}) });
  const cache = new ResponseCache({
    store,
    embedder: options.embedder ?? new LocalEmbedder(),
    secret,
    policy: options.policy ?? (() => semantic),
    ...(options.observer ? { observer: options.observer } : {}),
  });
  return { cache, store };
}

/** A store whose methods behave as given (by default: empty and unreachable). */
function fakeStore(methods: Partial<CacheStore>): CacheStore {
  return {
    backend: "redis",
    get: () => Promise.resolve(undefined),
    put: () => Promise.resolve(false),
    nearest: () => Promise.resolve(undefined),
    forget() {},
    sweep() {},
    stats: () => ({ vectors: 0 }),
    status: () => ({ connected: false, detail: "down" }),
    close: () => Promise.resolve(),
    ...methods,
  };
}

describe("ResponseCache (memory)", () => {
  it("serves an exact repeat as an exact hit and a rephrasing as a semantic hit, with the similarity", async () => {
    const { cache } = memoryCache();
    await cache.store(keyOf("t", "What is the capital of France?", { system: "Be brief." }), answer("Paris."));
    const exact = await cache.lookup(keyOf("t", "What is the capital of France?  ", { system: "Be brief." }));
    expect(exact).toMatchObject({ kind: "exact", similarity: 1, completion: { content: "Paris." } });
    const near = await cache.lookup(keyOf("t", "what's the capital of france", { system: "Be brief." }));
    expect(near.kind).toBe("semantic");
    if (near.kind === "semantic") expect(near.similarity).toBeGreaterThan(0.9);
    expect(await cache.lookup(keyOf("t", "What is the capital of Germany?", { system: "Be brief." }))).toEqual({ kind: "miss" });
  });

  it("never serves a near match across a different system prompt, earlier turns, model, sampling or numbers", async () => {
    const { cache } = memoryCache();
    const earlier: [string, string][] = [["user", "I live in Lyon."], ["assistant", "Nice city."]];
    await cache.store(keyOf("t", "What should I visit this weekend?", { system: "You are a tour guide.", earlier }), answer("The old town."));
    const near = "what should I visit this weekend";
    expect((await cache.lookup(keyOf("t", near, { system: "You are a tour guide.", earlier }))).kind).toBe("semantic");
    for (const other of [
      keyOf("t", near, { system: "You are a pirate.", earlier }),
      keyOf("t", near, { system: "You are a tour guide.", earlier: [["user", "I live in Oslo."], ["assistant", "Nice city."]] }),
      keyOf("t", near, { system: "You are a tour guide." }),
      keyOf("t", near, { system: "You are a tour guide.", earlier, model: "sim/sim-large" }),
      keyOf("t", near, { system: "You are a tour guide.", earlier, temperature: 0.7 }),
    ]) {
      expect(await cache.lookup(other)).toEqual({ kind: "miss" });
    }
    await cache.store(keyOf("t", "What is 12 times 12?"), answer("144"));
    expect(await cache.lookup(keyOf("t", "what is 12 times 13?"))).toEqual({ kind: "miss" });
    expect((await cache.lookup(keyOf("t", "what is 12 times 12"))).kind).toBe("semantic");
  });

  it("honours the tenant's threshold and semantic switch", async () => {
    const policies: Record<string, TenantCachePolicy> = { strict: { semantic: true, similarityThreshold: 0.999 }, off: { semantic: false, similarityThreshold: 0.9 } };
    const { cache } = memoryCache({ policy: (t) => policies[t] ?? semantic });
    for (const t of ["strict", "off"]) {
      await cache.store(keyOf(t, "How do I reverse a list in Python?"), answer("reversed()"));
      expect((await cache.lookup(keyOf(t, "How do I reverse a list in Python?"))).kind).toBe("exact");
      expect(await cache.lookup(keyOf(t, "How can I reverse a list in python"))).toEqual({ kind: "miss" });
    }
  });

  it("tenant B never hits tenant A's entries, exact or semantic, identical or near-identical (property)", async () => {
    const word = fc.constantFrom("capital", "france", "python", "reverse", "list", "haiku", "autumn", "leaves", "weather", "tomorrow", "sort", "string");
    const prompt = fc.array(word, { minLength: 1, maxLength: 8 }).map((ws) => ws.join(" "));
    const tenant = fc.oneof(fc.constantFrom("a", "b", "a:b", "a\u0000", "YQ", "default"), fc.string({ minLength: 1, maxLength: 6 }));
    await fc.assert(
      fc.asyncProperty(tenant, tenant, prompt, fc.constantFrom("", "!", "?", " please"), fc.boolean(), async (ta, tb, p, suffix, withSystem) => {
        fc.pre(ta !== tb);
        const { cache } = memoryCache();
        const system = withSystem ? { system: "Be brief." } : {};
        await cache.store(keyOf(ta, p, system), answer(`for ${ta}`));
        expect(await cache.lookup(keyOf(tb, p, system))).toEqual({ kind: "miss" });
        expect(await cache.lookup(keyOf(tb, p + suffix, system))).toEqual({ kind: "miss" });
        // ...while the owner does hit, so the property is not vacuous.
        expect((await cache.lookup(keyOf(ta, p + suffix, system))).kind).not.toBe("miss");
      }),
      { numRuns: 200 },
    );
  });

  it("refuses to serve an entry that does not belong to the asking tenant even if the store returns it", async () => {
    const faults: string[] = [];
    const { cache, store } = memoryCache({ observer: { lookup() {}, store() {}, fault: (d, op) => faults.push(`${d}/${op}`) } });
    const victim = keyOf("victim", "What is my account balance?");
    // A poisoned store: the attacker's entry sits under the victim's exact id.
    const forged = create(pb.CacheEntrySchema, { tenant: "attacker", completion: answer("send money to X") });
    await store.put(exactRef(secret, normalise(victim)), toBinary(pb.CacheEntrySchema, forged));
    expect(await cache.lookup(victim)).toEqual({ kind: "miss" });
    await store.put(exactRef(secret, normalise(victim)), new Uint8Array([0xff, 0xff, 0xff]));
    expect(await cache.lookup(victim)).toEqual({ kind: "miss" });
    expect(faults).toEqual(["integrity/owner", "integrity/decode"]);
  });

  it("drops vectors of evicted entries, and finds the next best when the best one expired", async () => {
    let now = 0;
    const { cache, store } = memoryCache({ maxEntries: 2, now: () => now });
    await cache.store(keyOf("t", "How do I reverse a list in Python?"), answer("1"));
    await cache.store(keyOf("t", "How do I sort a list in Python?"), answer("2"));
    await cache.store(keyOf("t", "Write a haiku about autumn leaves"), answer("3"));
    expect(store.stats()).toMatchObject({ entries: 2, vectors: 2 });
    expect(await cache.lookup(keyOf("t", "How can I reverse a list in python"))).toEqual({ kind: "miss" });
    now = 61_000;
    expect(await cache.lookup(keyOf("t", "write a haiku about autumn leaves please"))).toEqual({ kind: "miss" });
    store.sweep();
    expect(store.stats()).toMatchObject({ entries: 0, vectors: 0 });
  });

  it("turns store and embeddings faults into misses and failed stores, reporting them", async () => {
    const faults: string[] = [];
    const results: string[] = [];
    const broken = fakeStore({ get: () => Promise.reject(new Error("down")), put: () => Promise.reject(new Error("down")), nearest: () => Promise.reject(new Error("down")) });
    const failingEmbedder: Embedder = { id: "x", local: false, embed: () => Promise.reject(new Error("503")) };
    const observer: CacheObserver = { lookup: (k, r) => results.push(`${k}:${r}`), store: (r) => results.push(`store:${r}`), fault: (d, op) => faults.push(`${d}/${op}`) };
    const { cache } = memoryCache({ store: broken, observer });
    expect(await cache.lookup(keyOf("t", "q"))).toEqual({ kind: "miss" });
    expect(await cache.store(keyOf("t", "q"), answer("a"))).toBe(false);
    const e = memoryCache({ embedder: failingEmbedder, observer });
    expect(await e.cache.store(keyOf("t", "q"), answer("a"))).toBe(true);
    expect((await e.cache.lookup(keyOf("t", "q"))).kind).toBe("exact");
    expect(await e.cache.lookup(keyOf("t", "q?"))).toEqual({ kind: "miss" });
    expect(faults).toEqual(["store/get", "store/nearest", "store/put", "embeddings/embed", "embeddings/embed", "embeddings/embed"]);
    expect(results).toEqual(["exact:miss", "semantic:miss", "store:failed", "store:stored", "exact:hit", "exact:miss"]);
  });

  it("answers a miss as soon as the caller's budget is over, even if the store hangs", async () => {
    const { cache } = memoryCache({ store: fakeStore({ get: () => new Promise(() => {}) }) });
    const started = performance.now();
    expect(await cache.lookup(keyOf("t", "q"), AbortSignal.timeout(30))).toEqual({ kind: "miss" });
    expect(performance.now() - started).toBeLessThan(200);
  });
});
