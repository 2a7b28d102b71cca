import { describe, expect, it } from "vitest";
import { measurePropagation } from "../src/propagation.js";

describe("live prices over NATS", () => {
  it("flips routing on every policy replica within a second of a price publish", async () => {
    const samples = await measurePropagation({ natsUrl: "nats://127.0.0.1:4222", replicas: 2, flips: 6 });
    expect(samples).toHaveLength(12);
    expect(new Set(samples.map((s) => s.replica))).toEqual(new Set([0, 1]));
    for (const s of samples) expect(s.ms).toBeLessThan(1_000);
  }, 60_000);
});
