import { describe, expect, it } from "vitest";
import { costMicroUsd, countChatTokens, countTokens, formatUsd } from "../src/index.js";

describe("usage", () => {
  it("counts tokens with the o200k tokenizer", () => {
    expect(countTokens("")).toBe(0);
    expect(countTokens("Hello, world!")).toBe(4);
    // OpenAI reports 8 prompt tokens for [{role: "user", content: "Hello"}]-sized chats of this shape.
    expect(countChatTokens([{ role: "user", content: "Hello" }])).toBe(3 + 3 + 1 + 1);
  });

  it("prices tokens in integer micro-dollars, cached input at its own price", () => {
    const price = { inputMicroUsdPerMtok: 2_500_000n, outputMicroUsdPerMtok: 10_000_000n, cachedInputMicroUsdPerMtok: 1_250_000n };
    // 1000 in (400 cached), 500 out: 600*2.5 + 400*1.25 + 500*10 = 1500 + 500 + 5000 micro-dollars
    expect(costMicroUsd({ inputTokens: 1000n, outputTokens: 500n, cachedInputTokens: 400n }, price)).toBe(7000n);
    // Rounds once, half up: 1 token at $0.15/M is 0.15 micro-dollars -> 0; 4 tokens -> 0.6 -> 1.
    const cheap = { inputMicroUsdPerMtok: 150_000n, outputMicroUsdPerMtok: 150_000n, cachedInputMicroUsdPerMtok: 0n };
    expect(costMicroUsd({ inputTokens: 1n, outputTokens: 0n }, cheap)).toBe(0n);
    expect(costMicroUsd({ inputTokens: 2n, outputTokens: 2n }, cheap)).toBe(1n);
  });

  it("formats micro-dollars as USD", () => {
    expect(formatUsd(0n)).toBe("0.000000");
    expect(formatUsd(1234n)).toBe("0.001234");
    expect(formatUsd(12_345_678n)).toBe("12.345678");
  });
});
