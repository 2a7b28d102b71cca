import { describe, expect, it } from "vitest";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { classifier } from "@switchyard/proto";
import { defaultRouterPath, loadRouter } from "@switchyard/router";
import { ClassifierHandler } from "../src/handler.js";

const router = await loadRouter(defaultRouterPath());
const tiers = [
  { name: "simple", maxDifficulty: 0.35 },
  { name: "standard", maxDifficulty: 0.7 },
  { name: "complex", maxDifficulty: 1 },
];

function client(decisionCacheEntries = 100) {
  const seen: boolean[] = [];
  const handler = new ClassifierHandler(router, tiers, decisionCacheEntries, { decision: (c) => seen.push(c), tier: () => {} });
  const transport = createRouterTransport(({ service }) => service(classifier.ClassifierService, handler));
  return { client: createClient(classifier.ClassifierService, transport), seen };
}

describe("classifier", () => {
  it("gives a tier, a task type and a predicted quality in [0, 1] for every model the router knows", async () => {
    const { client: c } = client();
    const res = await c.classify({ messages: [{ role: "user", content: "Write a Python function that merges two sorted lists." }] });
    expect(tiers.map((t) => t.name)).toContain(res.tier);
    expect(res.taskType).toBe("code");
    expect(Object.keys(res.predictedQuality).sort()).toEqual([...router.models].sort());
    for (const q of Object.values(res.predictedQuality)) expect(q).toBeGreaterThanOrEqual(0), expect(q).toBeLessThanOrEqual(1);
    expect(res.estimatedInputTokens).toBeGreaterThan(5n);
    expect(res.routerVersion).toBe(router.version);
  });

  it("answers repeats of a prompt from the routing-decision cache, with the same decision", async () => {
    const { client: c, seen } = client();
    const ask = (content: string) => c.classify({ messages: [{ role: "user", content }] });
    const first = await ask("What is the capital of France?");
    const again = await ask("  what is the CAPITAL of france?  ");
    expect(seen).toEqual([false, true]);
    expect(again.decisionCached).toBe(true);
    expect(again.tier).toBe(first.tier);
    expect(again.predictedQuality).toEqual(first.predictedQuality);
  });

  it("keeps the decision cache within its size", async () => {
    const { client: c, seen } = client(2);
    for (const q of ["a?", "b?", "c?", "a?"]) await c.classify({ messages: [{ role: "user", content: q }] });
    expect(seen).toEqual([false, false, false, false]);
  });

  it("rejects an empty conversation", async () => {
    const { client: c } = client();
    await expect(c.classify({ messages: [] })).rejects.toThrow(/messages must not be empty/);
  });
});
