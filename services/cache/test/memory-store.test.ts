import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { tenantTag } from "../src/key.js";
import { entryBytes } from "../src/lru.js";
import { MemoryStore } from "../src/memory-store.js";
import { VectorIndex } from "../src/vector-index.js";

const DIMS = 256;

function unitVector(seed: number): Float32Array {
  const v = new Float32Array(DIMS);
  let x = seed * 2654435761;
  for (let d = 0; d < DIMS; d++) {
    x = (x * 1103515245 + 12345) >>> 0;
    v[d] = x / 2 ** 32 - 0.5;
  }
  const norm = Math.hypot(...v);
  return v.map((c) => c / norm);
}

const ref = (i: number) => ({ tenant: "t1", id: `k${i.toString(16).padStart(40, "0")}` });

describe("MemoryStore bytes", () => {
  it("charges a semantic entry its place in the vector index, and gives it back when the entry leaves", async () => {
    const store = new MemoryStore({ maxEntries: 10, maxBytes: 1e9, ttlMs: 60_000, exactScanBelow: 512 });
    await store.put(ref(1), new Uint8Array(300));
    const exact = store.stats().bytes;
    expect(exact).toBe(entryBytes(`${tenantTag("t1")}:${ref(1).id}`, new Uint8Array(300)));
    await store.put(ref(2), new Uint8Array(300), { partition: "p", vector: unitVector(2) });
    expect(store.stats().bytes).toBe(2 * exact + VectorIndex.bytesPerEntry(DIMS));
    for (let i = 3; i < 14; i++) await store.put(ref(i), new Uint8Array(300)); // evicts both
    expect(store.stats()).toMatchObject({ entries: 10, vectors: 0, bytes: 10 * exact });
  });

  it("keeps values and the semantic index together within max_bytes, counted close to the memory they take", async () => {
    const maxBytes = 40 * 1024 * 1024;
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    gc();
    const before = process.memoryUsage();
    const store = new MemoryStore({ maxEntries: 1_000_000, maxBytes, ttlMs: 60_000, exactScanBelow: 512 });
    for (let i = 0; i < 20_000; i++) await store.put(ref(i), new Uint8Array(300), { partition: "p", vector: unitVector(i) });
    const { bytes, entries, vectors } = store.stats();
    expect(bytes).toBeLessThanOrEqual(maxBytes);
    expect(vectors).toBe(entries);
    // ~10,000 entries of about 4 KB each: the 300-byte values are the smaller part.
    expect(entries).toBeGreaterThan(9_000);
    expect(entries).toBeLessThan(12_000);
    gc();
    const after = process.memoryUsage();
    const taken = after.heapUsed - before.heapUsed + (after.arrayBuffers - before.arrayBuffers);
    // What is counted is within a quarter of what the entries take (values, keys, index).
    expect(bytes / taken).toBeGreaterThan(0.75);
    expect(bytes / taken).toBeLessThan(1.33);
    expect(store.stats().entries).toBe(entries); // the store is live up to here
  });
});
