import { create } from "@bufbuild/protobuf";
import { cache as pb, common } from "@switchyard/proto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { exactRef, MAX_SEMANTIC_CHARS, normalise, semanticQuery, tenantTag } from "../src/key.js";
import { keyOf } from "./fixtures.js";

const secret = Buffer.from("test-secret");
const id = (k: pb.CacheKey) => exactRef(secret, normalise(k)).id;
const partition = (k: pb.CacheKey) => semanticQuery(secret, normalise(k), "local/v1/256")?.partition;

describe("exact ids", () => {
  it("are the same for requests that differ only in whitespace, line endings, Unicode composition and stop order", () => {
    const a = keyOf("t", "Caf\u00e9 opening hours?\r\nThanks", { system: "Be brief." });
    const b = keyOf("t", "  Cafe\u0301 opening hours?\nThanks \n", { system: " Be brief.\r\n" });
    a.sampling!.stop = ["x", "y"];
    b.sampling!.stop = ["y", "x", "y"];
    expect(id(a)).toBe(id(b));
  });

  it("treat an empty model as switchyard/auto", () => {
    expect(id(keyOf("t", "q", { model: "" }))).toBe(id(keyOf("t", "q", { model: "switchyard/auto" })));
  });

  it("differ when anything that changes the answer differs", () => {
    const base = keyOf("t", "What is the capital of France?", { system: "s" });
    const variants = [
      keyOf("u", "What is the capital of France?", { system: "s" }),
      keyOf("t", "What is the capital of France?", { system: "s2" }),
      keyOf("t", "What is the capital of France?", { system: "s", model: "openai/gpt-4.1" }),
      keyOf("t", "What is the capital of France?", { system: "s", temperature: 0.5 }),
      keyOf("t", "What is the capital of france?", { system: "s" }),
      keyOf("t", "What is the capital of France?", { system: "s", earlier: [["user", "hi"], ["assistant", "hello"]] }),
    ];
    const withSeed = keyOf("t", "What is the capital of France?", { system: "s" });
    withSeed.sampling!.seed = 7n;
    const withMaxTokens = keyOf("t", "What is the capital of France?", { system: "s" });
    withMaxTokens.sampling!.maxTokens = 10;
    const named = keyOf("t", "What is the capital of France?", { system: "s" });
    named.messages[1]!.name = "alice";
    const ids = new Set([base, ...variants, withSeed, withMaxTokens, named].map(id));
    expect(ids.size).toBe(1 + variants.length + 3);
  });

  it("depend on the secret: without it nobody can compute them", () => {
    const k = keyOf("t", "q");
    expect(exactRef(Buffer.from("other"), normalise(k)).id).not.toBe(id(k));
  });

  it("never collide across tenants, whatever separators tenant names contain", () => {
    const tenant = fc.oneof(fc.string({ minLength: 1 }), fc.constantFrom("a", "a:b", "a\u0000", "a\u0000b", ":", "a\"", "YQ", "a,b"));
    fc.assert(
      fc.property(tenant, tenant, fc.string(), fc.string(), (ta, tb, pa, pb_) => {
        fc.pre(ta !== tb);
        const a = keyOf(ta, pa);
        const b = keyOf(tb, pb_);
        expect(id(a)).not.toBe(id(b));
        expect(partition(a) === undefined || partition(a) !== partition(b)).toBe(true);
        expect(tenantTag(ta)).not.toBe(tenantTag(tb));
        expect(tenantTag(ta)).toMatch(/^[A-Za-z0-9_-]+$/);
      }),
      { numRuns: 500 },
    );
  });
});

describe("semantic partitions", () => {
  it("ignore the wording of the last user turn but not the numbers in it", () => {
    expect(partition(keyOf("t", "What is the capital of France?"))).toBe(partition(keyOf("t", "whats the capital of france")));
    expect(partition(keyOf("t", "What is 2 + 2?"))).toBe(partition(keyOf("t", "what's 2+2")));
    expect(partition(keyOf("t", "What is 2 + 2?"))).not.toBe(partition(keyOf("t", "What is 2 + 3?")));
    expect(partition(keyOf("t", "Summarise chapter 3"))).not.toBe(partition(keyOf("t", "Summarise chapter 4")));
  });

  it("include the system prompt, every earlier turn, the model, sampling, tenant and embedding model", () => {
    const base = keyOf("t", "q", { system: "You are a pirate.", earlier: [["user", "a"], ["assistant", "b"]] });
    const others = [
      keyOf("t", "q", { system: "You are a lawyer.", earlier: [["user", "a"], ["assistant", "b"]] }),
      keyOf("t", "q", { system: "You are a pirate.", earlier: [["user", "a"], ["assistant", "c"]] }),
      keyOf("t", "q", { system: "You are a pirate." }),
      keyOf("t", "q", { system: "You are a pirate.", earlier: [["user", "a"], ["assistant", "b"]], model: "sim/sim-large" }),
      keyOf("t", "q", { system: "You are a pirate.", earlier: [["user", "a"], ["assistant", "b"]], temperature: 1 }),
      keyOf("t2", "q", { system: "You are a pirate.", earlier: [["user", "a"], ["assistant", "b"]] }),
    ];
    for (const o of others) expect(partition(o)).not.toBe(partition(base));
    expect(semanticQuery(secret, normalise(base), "openai/x/default")!.partition).not.toBe(partition(base));
  });

  it("exist only when the conversation ends with a user turn of bounded length", () => {
    const endsWithAssistant = create(pb.CacheKeySchema, {
      tenant: "t",
      messages: [create(common.ChatMessageSchema, { role: "user", content: "q" }), create(common.ChatMessageSchema, { role: "assistant", content: "a" })],
    });
    expect(partition(endsWithAssistant)).toBeUndefined();
    expect(partition(keyOf("t", "x".repeat(MAX_SEMANTIC_CHARS + 1)))).toBeUndefined();
    expect(partition(keyOf("t", "   "))).toBeUndefined();
    expect(semanticQuery(secret, normalise(keyOf("t", " Hello \r\n")), "e")!.text).toBe("Hello");
  });
});
