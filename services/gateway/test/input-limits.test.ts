import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REDIRECTING_FIELDS } from "../src/openai/validate.js";
import { CHAT, envelope, JSON_HEADERS, startTestApi, type TestApi } from "./http-harness.js";

let api: TestApi;
beforeAll(async () => (api = await startTestApi()));
afterAll(() => api.close());

const post = (body: unknown) => api.send({ body, headers: JSON_HEADERS });

/** Sends a body and expects a 400 naming `param`; the upstream is never called. */
async function refused(body: unknown, param: string, code?: string): Promise<string> {
  const before = api.upstreamCalls.length;
  const res = await post(body);
  expect(res.status, res.text).toBe(400);
  const error = envelope(res);
  expect(error.type).toBe("invalid_request_error");
  expect(error.param).toBe(param);
  if (code) expect(error.code).toBe(code);
  expect(api.upstreamCalls.length).toBe(before);
  return error.message;
}

describe("fields other gateways honour to redirect or authenticate the upstream call", () => {
  it("refuses api_base with 400 naming it, instead of ignoring it", async () => {
    const message = await refused({ ...CHAT, api_base: "https://attacker.example/v1" }, "api_base", "unsupported_parameter");
    expect(message).toMatch(/'api_base' is not supported/);
    expect(message).not.toContain("attacker.example");
  });

  it("refuses each of them, by name", async () => {
    for (const field of ["base_url", "api_key", "api_version", "extra_headers", "extra_body", "custom_llm_provider", "organization", "headers"]) {
      expect(REDIRECTING_FIELDS).toContain(field);
      await refused({ ...CHAT, [field]: field === "extra_headers" || field === "headers" || field === "extra_body" ? { "x-a": "b" } : "value" }, field, "unsupported_parameter");
    }
  });

  it("lets a null pass (a client serialising an unset option asks for nothing)", async () => {
    expect((await post({ ...CHAT, api_base: null })).status).toBe(200);
  });
});

describe("limits, each a 400 naming the field", () => {
  it("user: a 200,000-character user is refused, 256 is fine", async () => {
    const message = await refused({ ...CHAT, user: "u".repeat(200_000) }, "user", "string_above_max_length");
    expect(message).toContain("maximum length 256");
    expect((await post({ ...CHAT, user: "u".repeat(256) })).status).toBe(200);
    await refused({ ...CHAT, user: 42 }, "user");
  });

  it("metadata: at most 16 keys, keys up to 64, string values up to 512", async () => {
    const keys = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));
    expect((await post({ ...CHAT, metadata: keys(16) })).status).toBe(200);
    await refused({ ...CHAT, metadata: keys(17) }, "metadata", "object_above_max_properties");
    await refused({ ...CHAT, metadata: { ["k".repeat(65)]: "v" } }, "metadata", "string_above_max_length");
    await refused({ ...CHAT, metadata: { note: "v".repeat(513) } }, "metadata.note", "string_above_max_length");
    await refused({ ...CHAT, metadata: { note: { nested: "x" } } }, "metadata.note");
    await refused({ ...CHAT, metadata: ["a"] }, "metadata");
  });

  it("nesting: metadata nested 5,000 deep is a 400, not a crash", async () => {
    const deep = `{"model":"switchyard/auto","messages":[{"role":"user","content":"hi"}],"metadata":${'{"a":'.repeat(5_000)}"x"${"}".repeat(5_000)}}`;
    const message = await refused(deep, "metadata", "nesting_too_deep");
    expect(message).toContain("32 levels");
  });

  it("nesting: 100,000 deep in any field is a 400 too (the check is iterative), and the gateway still answers after", async () => {
    const deep = `{"messages":[{"role":"user","content":"hi"}],"x":${"[".repeat(100_000)}${"]".repeat(100_000)}}`;
    await refused(deep, "x", "nesting_too_deep");
    const tools = { ...CHAT, tools: [{ type: "function", function: { name: "f", parameters: nest(40) } }] };
    await refused(tools, "tools", "nesting_too_deep");
    expect((await post(CHAT)).status).toBe(200);
  });

  it("messages: more than limits.max_messages is refused", async () => {
    const many = Array.from({ length: api.config.limits.max_messages + 1 }, () => ({ role: "user", content: "x" }));
    await refused({ ...CHAT, messages: many }, "messages", "array_above_max_length");
  });

  it("tools: at most 128; stop: at most 4", async () => {
    const tool = (i: number) => ({ type: "function", function: { name: `f${i}`, parameters: { type: "object" } } });
    await refused({ ...CHAT, tools: Array.from({ length: 129 }, (_, i) => tool(i)) }, "tools", "array_above_max_length");
    await refused({ ...CHAT, stop: ["a", "b", "c", "d", "e"] }, "stop", "array_above_max_length");
    expect((await post({ ...CHAT, stop: ["a", "b", "c", "d"] })).status).toBe(200);
  });

  it("takes its limits from the configuration", async () => {
    const strict = await startTestApi({ limits: { max_user_chars: 8, max_stop_sequences: 1, max_json_depth: 4, max_tools: 0 } });
    try {
      const send = (body: unknown) => strict.send({ body, headers: JSON_HEADERS });
      expect(envelope(await send({ ...CHAT, user: "123456789" })).param).toBe("user");
      expect(envelope(await send({ ...CHAT, stop: ["a", "b"] })).param).toBe("stop");
      expect(envelope(await send({ ...CHAT, metadata: { a: "b" }, x: { y: { z: [{}] } } })).param).toBe("x");
      expect((await send({ ...CHAT, user: "12345678", stop: ["a"] })).status).toBe(200);
    } finally {
      await strict.close();
    }
  });
});

function nest(depth: number): Record<string, unknown> {
  let schema: Record<string, unknown> = { type: "string" };
  for (let i = 0; i < depth; i++) schema = { type: "object", properties: { a: schema } };
  return schema;
}
