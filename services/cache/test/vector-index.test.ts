import { describe, expect, it } from "vitest";
import { dot } from "../src/embedding.js";
import { VectorIndex } from "../src/vector-index.js";

/** A seeded random unit vector. */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}
function unit(v: Float32Array): Float32Array {
  const n = Math.sqrt(dot(v, v));
  for (let i = 0; i < v.length; i++) v[i]! /= n;
  return v;
}
function randomUnit(dims: number, next: () => number): Float32Array {
  const v = new Float32Array(dims);
  for (let i = 0; i < dims; i++) v[i] = next() - 0.5;
  return unit(v);
}
/** A unit vector at cosine `cos` to `v`. */
function near(v: Float32Array, cos: number, next: () => number): Float32Array {
  const r = randomUnit(v.length, next);
  const along = dot(r, v);
  for (let i = 0; i < r.length; i++) r[i]! -= along * v[i]!;
  unit(r);
  const sin = Math.sqrt(1 - cos * cos);
  return unit(v.map((x, i) => cos * x + sin * r[i]!));
}

describe("VectorIndex", () => {
  it("gives memory back when it shrinks to a quarter, and still finds every entry left (scan and LSH)", () => {
    const next = rng(7);
    const index = new VectorIndex(256, 512);
    const vectors = Array.from({ length: 20_000 }, () => randomUnit(256, next));
    vectors.forEach((v, i) => index.add(`v${i}`, v));
    expect(index.capacity).toBeGreaterThanOrEqual(20_000);
    for (let i = 0; i < 19_000; i++) index.remove(`v${i}`);
    expect(index.capacity).toBeLessThanOrEqual(4 * 1_000);
    expect(index.size).toBe(1_000);
    // Every entry left is found at itself (LSH: 1,000 entries are above exactScanBelow), none removed.
    for (let i = 19_000; i < 20_000; i += 37) expect(index.nearest(vectors[i]!, 0.99)?.id).toBe(`v${i}`);
    expect(index.nearest(vectors[5]!, 0.99)).toBeUndefined();
    // Below exactScanBelow it scans, and keeps taking entries.
    for (let i = 19_000; i < 19_900; i++) index.remove(`v${i}`);
    for (let i = 19_900; i < 20_000; i += 7) expect(index.nearest(vectors[i]!, 0.99)?.id).toBe(`v${i}`);
    index.add("again", vectors[3]!);
    expect(index.nearest(vectors[3]!, 0.99)?.id).toBe("again");
  });

  it("finds the best match above the threshold by exact scan, and nothing below it", () => {
    const next = rng(1);
    const index = new VectorIndex(64, 1_000);
    const a = randomUnit(64, next);
    index.add("a", a);
    index.add("b", randomUnit(64, next));
    expect(index.nearest(near(a, 0.95, next), 0.9)).toMatchObject({ id: "a" });
    expect(index.nearest(near(a, 0.95, next), 0.9)!.similarity).toBeCloseTo(0.95, 2);
    expect(index.nearest(near(a, 0.8, next), 0.9)).toBeUndefined();
  });

  it("forgets removed and replaced vectors", () => {
    const next = rng(2);
    const index = new VectorIndex(32, 0);
    const a = randomUnit(32, next);
    index.add("a", a);
    index.add("a", randomUnit(32, next));
    expect(index.size).toBe(1);
    expect(index.nearest(a, 0.9)).toBeUndefined();
    expect(index.remove("a")).toBe(true);
    expect(index.remove("a")).toBe(false);
    expect(index.size).toBe(0);
  });

  it("with LSH, finds neighbours at cosine >= 0.9 nearly always among 20,000 vectors", () => {
    const next = rng(3);
    const dims = 128;
    const index = new VectorIndex(dims, 100);
    const stored: Float32Array[] = [];
    for (let i = 0; i < 20_000; i++) {
      const v = randomUnit(dims, next);
      stored.push(v);
      index.add(`v${i}`, v);
    }
    let found = 0;
    const queries = 500;
    for (let q = 0; q < queries; q++) {
      const target = (q * 37) % stored.length;
      const hit = index.nearest(near(stored[target]!, 0.9, next), 0.88);
      if (hit?.id === `v${target}`) found++;
    }
    expect(found / queries).toBeGreaterThanOrEqual(0.98);
  });

  it("with LSH, never returns a vector below the threshold and keeps working through removals", () => {
    const next = rng(4);
    const index = new VectorIndex(64, 10);
    const vs = Array.from({ length: 500 }, () => randomUnit(64, next));
    vs.forEach((v, i) => index.add(`v${i}`, v));
    for (let i = 0; i < 500; i += 2) index.remove(`v${i}`);
    expect(index.size).toBe(250);
    for (let i = 0; i < 500; i++) {
      const hit = index.nearest(vs[i]!, 0.99);
      if (i % 2 === 0) expect(hit).toBeUndefined();
      else expect(hit).toEqual({ id: `v${i}`, similarity: expect.closeTo(1, 5) as unknown as number });
    }
    expect(index.nearest(randomUnit(64, next), 0.9)).toBeUndefined();
  });

  it("rejects vectors of another dimension", () => {
    const index = new VectorIndex(8);
    expect(() => index.add("x", new Float32Array(9))).toThrow(RangeError);
    expect(() => index.nearest(new Float32Array(7), 0.5)).toThrow(RangeError);
  });
});
