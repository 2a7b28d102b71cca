import { describe, it, expect } from "vitest";
import { trainRouter } from "../src/train.js";
import { RouterModel } from "../src/model.js";
import { extractFeatures } from "../src/features.js";
import { syntheticRows } from "./fixtures.js";

const user = (content: string) => ({ role: "user", content });
const assistant = (content: string) => ({ role: "assistant", content });

describe("multi-turn conversations (feature version 2)", () => {
  const router = RouterModel.fromJSON(trainRouter(syntheticRows(400), { epochs: 6, featureVersion: 2 }));
  const gap = (messages: { role: string; content: string }[]) => {
    const p = router.predict(messages);
    return { gap: p.predicted["strong"]! - p.predicted["weak"]!, weak: p.predicted["weak"]! };
  };
  const followUp = user("Thanks. Can you say that again, more briefly?");

  it("scores a follow-up turn by its thread: after a hard question it stays hard, after an easy one easy", () => {
    const hardThread = gap([user("Question 5001: tell me something interesting about quantum and how it relates to music."), assistant("Here is an overview of the topic."), followUp]);
    const easyThread = gap([user("Question 5002: tell me something interesting about travel and how it relates to music."), assistant("Here is an overview of the topic."), followUp]);
    const alone = gap([followUp]);
    const hardAlone = gap([user("Question 5001: tell me something interesting about quantum and how it relates to music.")]);
    expect(hardThread.gap - easyThread.gap).toBeGreaterThan(0.15);
    expect(hardThread.weak).toBeLessThan(easyThread.weak - 0.1);
    // The follow-up inherits a good part of its thread's gap (earlier user turns weigh half), which the same words alone do not have.
    expect(hardThread.gap - alone.gap).toBeGreaterThan(0.35 * (hardAlone.gap - alone.gap));
  });

  it("weighs the last user turn most", () => {
    const hardLast = gap([user("Question 5003: tell me something interesting about travel and how it relates to music."), assistant("Sure."), user("Question 5004: tell me something interesting about topology and how it relates to music.")]);
    const hardFirst = gap([user("Question 5004: tell me something interesting about topology and how it relates to music."), assistant("Sure."), user("Question 5003: tell me something interesting about travel and how it relates to music.")]);
    expect(hardLast.gap).toBeGreaterThan(hardFirst.gap + 0.1);
  });

  it("gives a single-turn prompt the same features as version 1, apart from the chat cues", () => {
    const messages = [user("Write a Python function that returns the n-th Fibonacci number, without recursion.")];
    const v1 = extractFeatures(messages, "full", undefined, 1);
    const v2 = extractFeatures(messages, "full", undefined, 2);
    expect(v1.summary).toEqual(v2.summary);
    const one = new Map<number, number>();
    v1.vector.indices.forEach((i, k) => one.set(i, (one.get(i) ?? 0) + v1.vector.values[k]!));
    const extra = Array.from(v2.vector.indices).filter((i, k) => one.get(i) !== v2.vector.values[k]);
    expect(extra.length).toBeGreaterThan(0);
    expect(extra.length).toBeLessThanOrEqual(11);
    expect(v2.vector.indices.length - v1.vector.indices.length).toBe(extra.length);
  });
});
