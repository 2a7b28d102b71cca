import { describe, it, expect } from "vitest";
import { extractFeatures, normalisePrompt, FEATURE_DIM } from "../src/features.js";

const user = (content: string) => [{ role: "user", content }];

describe("extractFeatures", () => {
  it("detects task types from wording alone", () => {
    expect(extractFeatures(user("Write a Python function that returns the n-th Fibonacci number.")).summary.taskType).toBe("code");
    expect(extractFeatures(user("Which gas do plants absorb?\nA. oxygen\nB. carbon dioxide\nC. helium\nD. argon\nAnswer:")).summary.taskType).toBe("multiple_choice");
    expect(extractFeatures(user("Tom has 3 apples and buys 5 more. How many apples does he have in total?")).summary.taskType).toBe("math");
    expect(extractFeatures(user("Translate 'good morning' into German.")).summary.taskType).toBe("translation");
    expect(extractFeatures(user("Write a poem about the sea.")).summary.taskType).toBe("creative");
    expect(extractFeatures(user("hi, how are you today?")).summary.taskType).toBe("chat");
  });

  it("summarises length, turns, system prompt and language", () => {
    const { summary } = extractFeatures([
      { role: "system", content: "You are terse." },
      { role: "user", content: "What is the capital of France and why is it there?" },
      { role: "assistant", content: "Paris." },
      { role: "user", content: "And of Japan?" },
    ]);
    expect(summary.turns).toBe(4);
    expect(summary.hasSystemPrompt).toBe(true);
    expect(summary.chars).toBe("You are terse.".length + "What is the capital of France and why is it there?".length + "Paris.".length + "And of Japan?".length);
    expect(summary.estimatedTokens).toBe(Math.round(summary.chars / 4));
    expect(summary.language).toBe("en");
    expect(extractFeatures(user("这是一个关于机器学习的问题，请解释梯度下降。")).summary.language).toBe("cjk");
    expect(extractFeatures(user("Объясните, пожалуйста, как работает градиентный спуск.")).summary.language).toBe("cyrillic");
  });

  it("produces the same in-range sparse vector for the same input", () => {
    const a = extractFeatures(user("Explain step by step why 2 + 2 = 4."));
    const b = extractFeatures(user("Explain step by step why 2 + 2 = 4."));
    expect(Array.from(a.vector.indices)).toEqual(Array.from(b.vector.indices));
    expect(Array.from(a.vector.values)).toEqual(Array.from(b.vector.values));
    for (const i of a.vector.indices) expect(i >= 0 && i < FEATURE_DIM).toBe(true);
    expect(a.vector.indices.length).toBe(a.vector.values.length);
  });

  it("handles empty conversations and empty content", () => {
    expect(extractFeatures([]).summary.chars).toBe(0);
    expect(extractFeatures(user("")).vector.indices.length).toBeGreaterThan(0);
  });
});

describe("normalisePrompt", () => {
  it("lowercases, collapses whitespace and keeps digits", () => {
    expect(normalisePrompt(user("  What IS\n\n 2+2 ?  "))).toBe("user: what is 2+2 ?");
    expect(normalisePrompt(user("2+2"))).not.toBe(normalisePrompt(user("2+3")));
    expect(normalisePrompt([{ role: "system", content: "Be  brief" }, ...user("Hi")])).toBe("system: be brief\nuser: hi");
  });
});
