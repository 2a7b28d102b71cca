import { describe, expect, it } from "vitest";
import { Batcher, BatchTimeout } from "../src/batch.js";

describe("Batcher", () => {
  it("sends the calls of one turn in one batch and gives each caller its own result", async () => {
    const sent: number[][] = [];
    const b = new Batcher<number, string>(async (items) => (sent.push(items), items.map((i) => `r${i}`)), 1_000);
    const signal = new AbortController().signal;
    const results = await Promise.all([1, 2, 3].map((i) => b.call(i, signal)));
    expect(results).toEqual(["r1", "r2", "r3"]);
    expect(sent).toEqual([[1, 2, 3]]);
    expect(await b.call(4, signal)).toBe("r4");
    expect(sent).toHaveLength(2);
  });

  it("starts a new batch at its size limit", async () => {
    const sent: number[][] = [];
    const b = new Batcher<number, number>(async (items) => (sent.push(items), items), 1_000, 2);
    const signal = new AbortController().signal;
    await Promise.all([1, 2, 3].map((i) => b.call(i, signal)));
    expect(sent).toEqual([[1, 2], [3]]);
  });

  it("ends one caller at its own deadline or cancellation while the batch goes on for the others", async () => {
    let release!: () => void;
    const b = new Batcher<number, number>((items) => new Promise((r) => (release = () => r(items))), 1_000);
    const gone = new AbortController();
    const slow = b.call(1, new AbortController().signal, 20);
    const cancelled = b.call(2, gone.signal);
    const patient = b.call(3, new AbortController().signal);
    gone.abort(new Error("client left"));
    await expect(cancelled).rejects.toThrow("client left");
    await expect(slow).rejects.toBeInstanceOf(BatchTimeout);
    release();
    expect(await patient).toBe(3);
  });

  it("fails every caller of a failed batch", async () => {
    const b = new Batcher<number, number>(async () => {
      throw new Error("service down");
    }, 1_000);
    const signal = new AbortController().signal;
    const calls = [1, 2].map((i) => b.call(i, signal));
    for (const c of calls) await expect(c).rejects.toThrow("service down");
  });
});
