import { describe, it, expect } from "vitest";
import { defaultRouterPath, loadRouter, tierFor } from "../src/index.js";
import { priorDifficulty } from "../src/model.js";
import { extractFeatures } from "../src/features.js";

const SIMPLE = ["hi", "thanks!", "Hello, how are you?", "good morning :)", "ok, cool", "What's the capital of France?"];
const COMPLEX = [
  "Prove that there are infinitely many prime numbers. Give a rigorous proof, step by step.",
  "Prove by induction that the sum of the first n odd numbers is n^2, then derive a closed form for the sum of the first n squares and prove it too.",
  "Implement a thread-safe LRU cache in Rust with O(1) get and put, per-entry TTL expiry and a background eviction thread. Explain the locking strategy, analyse the complexity of each operation and write unit tests that exercise concurrent access from many threads.",
  "Design and implement a distributed rate limiter in Go that stays correct under network partitions: write the code for the token-bucket service, the consensus between replicas, and explain step by step why it is correct.",
];

describe("default tiers on real-traffic prompts", async () => {
  const router = await loadRouter(defaultRouterPath());
  const tier = (text: string): string => tierFor(router.predict([{ role: "user", content: text }]).difficulty, router.tiers);

  it("puts short chit-chat in the simplest tier", () => {
    for (const text of SIMPLE) expect(`${text} → ${tier(text)}`).toBe(`${text} → ${router.tiers[0]!.name}`);
  });

  it("puts multi-step proofs and complex code in the top tier", () => {
    for (const text of COMPLEX) expect(`${text.slice(0, 40)} → ${tier(text)}`).toBe(`${text.slice(0, 40)} → ${router.tiers[router.tiers.length - 1]!.name}`);
  });

  it("has a prior that orders the obvious cases", () => {
    const prior = (text: string): number => priorDifficulty(extractFeatures([{ role: "user", content: text }]).summary);
    expect(prior("hi")).toBeLessThan(0.1);
    for (const text of COMPLEX) expect(prior(text)).toBeGreaterThan(0.85);
  });
});
