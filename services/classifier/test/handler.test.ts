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

  it("reads out the prompt's features only when asked, cached decision or not, and decides the same", async () => {
    const { client: c } = client();
    const messages = [
      { role: "system", content: "You are terse." },
      { role: "user", content: "Prove that 17 + 25 = 42, step by step." },
    ];
    const plain = await c.classify({ messages });
    expect(plain.features).toBeUndefined();
    const explained = await c.classify({ messages, includeFeatures: true });
    expect(explained.decisionCached).toBe(true);
    expect(explained.tier).toBe(plain.tier);
    expect(explained.predictedQuality).toEqual(plain.predictedQuality);
    expect(explained.features).toMatchObject({ turns: 2, hasSystemPrompt: true, language: "en" });
    expect(explained.features!.digits).toBeGreaterThanOrEqual(6);
    expect(explained.features!.mathOperators).toBeGreaterThanOrEqual(2);
    // The cached decision itself was not changed: a later plain request still gets no features.
    expect((await c.classify({ messages })).features).toBeUndefined();
  });

  it("keeps the decision cache within its size", async () => {
    const { client: c, seen } = client(2);
    for (const q of ["a?", "b?", "c?", "a?"]) await c.classify({ messages: [{ role: "user", content: q }] });
    expect(seen).toEqual([false, false, false, false]);
  });

  // A classifier that always answered one tier would pass every check of "a tier is one of the
  // names": these prompts sit far apart in difficulty and must land in their own tiers.
  it.each([
    ["hi", "simple"],
    ["What is the capital of France?", "simple"],
    ["Thanks!", "simple"],
    ["Write a Python function that merges two sorted lists.", "standard"],
    ["Prove that there are infinitely many primes p such that p ≡ 3 (mod 4). Give a rigorous proof with every step justified.", "complex"],
    ["Implement a lock-free concurrent hash map in C++ with linearizable resize, prove its correctness, and analyse its amortized complexity under contention.", "complex"],
  ])("classifies %j as %s", async (content, tier) => {
    const { client: c } = client(0);
    const res = await c.classify({ messages: [{ role: "user", content }] });
    expect(res.tier).toBe(tier);
    const bounds = { simple: [0, 0.35], standard: [0.35, 0.7], complex: [0.7, 1] }[tier]!;
    expect(res.difficulty).toBeGreaterThanOrEqual(bounds[0]!);
    expect(res.difficulty).toBeLessThanOrEqual(bounds[1]!);
  });

  it("keeps each tenant's decisions to itself: another tenant's prompt is never reported as cached", async () => {
    const { client: c, seen } = client();
    const ask = (tenant: string, content: string) => c.classify({ tenant, messages: [{ role: "user", content }] });
    const secret = "Draft the press release for our acquisition of Initech.";
    expect((await ask("team-a", secret)).decisionCached).toBe(false);
    expect((await ask("team-a", secret)).decisionCached).toBe(true);
    // team-b sends the same prompt (and a normalised variant): a fresh decision, not a cache hit.
    expect((await ask("team-b", secret)).decisionCached).toBe(false);
    expect((await ask("", secret)).decisionCached).toBe(false);
    // team-b now has its own entry, and team-a still has its.
    expect((await ask("team-b", `  ${secret.toUpperCase()} `)).decisionCached).toBe(true);
    expect((await ask("team-a", secret)).decisionCached).toBe(true);
    expect(seen).toEqual([false, true, false, false, true, true]);
  });

  it("rejects an empty conversation", async () => {
    const { client: c } = client();
    await expect(c.classify({ messages: [] })).rejects.toThrow(/messages must not be empty/);
  });
});
