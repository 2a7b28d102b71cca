import { describe, expect, it } from "vitest";
import { entryBytes, LruCache, type RemovalReason } from "../src/lru.js";

const bytes = (n: number) => new Uint8Array(n);

describe("LruCache", () => {
  it("evicts the least recently used entry beyond max_entries", () => {
    const removed: [string, RemovalReason][] = [];
    const lru = new LruCache({ maxEntries: 2, maxBytes: 1e9, onRemove: (k, r) => removed.push([k, r]) });
    lru.set("a", bytes(1), 1_000);
    lru.set("b", bytes(1), 1_000);
    lru.get("a");
    lru.set("c", bytes(1), 1_000);
    expect(lru.get("b")).toBeUndefined();
    expect(lru.get("a")).toBeDefined();
    expect(removed).toEqual([["b", "evicted"]]);
    expect(lru.stats()).toMatchObject({ entries: 2, evictions: 1 });
  });

  it("stays within max_bytes and refuses a value larger than the whole cache", () => {
    const max = entryBytes("k0", bytes(100)) * 3;
    const lru = new LruCache({ maxEntries: 100, maxBytes: max });
    for (let i = 0; i < 10; i++) lru.set(`k${i}`, bytes(100), 1_000);
    expect(lru.stats().bytes).toBeLessThanOrEqual(max);
    expect(lru.stats().entries).toBe(3);
    expect(lru.set("huge", bytes(max), 1_000)).toBe(false);
    expect(lru.stats().entries).toBe(3);
  });

  it("expires entries after their TTL, lazily and by sweep", () => {
    let now = 0;
    const removed: string[] = [];
    const lru = new LruCache({ maxEntries: 10, maxBytes: 1e9, now: () => now, onRemove: (k, r) => removed.push(`${k}:${r}`) });
    lru.set("a", bytes(1), 100);
    lru.set("b", bytes(1), 100);
    lru.set("c", bytes(1), 1_000);
    now = 99;
    expect(lru.get("a")).toBeDefined();
    now = 100;
    expect(lru.get("a")).toBeUndefined();
    expect(lru.sweepExpired()).toBe(1);
    expect(removed).toEqual(["a:expired", "b:expired"]);
    expect(lru.stats()).toMatchObject({ entries: 1, evictions: 0 });
  });

  it("replacing an entry keeps the byte count exact", () => {
    const lru = new LruCache({ maxEntries: 10, maxBytes: 1e9 });
    lru.set("a", bytes(10), 1_000);
    lru.set("a", bytes(20), 1_000);
    expect(lru.stats()).toEqual({ entries: 1, bytes: entryBytes("a", bytes(20)), evictions: 0 });
  });
});
