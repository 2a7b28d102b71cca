import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import Anthropic from "@anthropic-ai/sdk";
import { provider } from "@switchyard/proto";
import { JSON_HEADERS, startTestApi, type TestApi, type TestResponse } from "./http-harness.js";
import { SCRIPTED, sseEvents, WEATHER_CALL } from "./fake-answers.js";

const KEY = "sk-test-anthropic-5e6f7a8b9c";
const sha = (k: string) => createHash("sha256").update(k).digest("hex");

const tools: Anthropic.Tool[] = [
  { name: "get_weather", description: "Weather in a city", input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
];

/** The one Anthropic error a response carries, checked for its exact shape. */
function anthropicError(res: TestResponse): { type: string; message: string } {
  const body = res.json() as { type: string; error: { type: string; message: string } };
  expect(Object.keys(body).sort()).toEqual(["error", "type"]);
  expect(body.type).toBe("error");
  expect(Object.keys(body.error).sort()).toEqual(["message", "type"]);
  expect(String(res.headers["content-type"])).toMatch(/^application\/json/);
  return body.error;
}

describe("POST /v1/messages with Anthropic's SDK", () => {
  let api: TestApi;
  let client: Anthropic;
  beforeAll(async () => {
    api = await startTestApi({ tenants: [{ name: "team-a", api_key_sha256: [sha(KEY)] }] }, SCRIPTED);
    // The SDK authenticates with x-api-key.
    client = new Anthropic({ baseURL: `http://127.0.0.1:${api.port}`, apiKey: KEY, maxRetries: 0 });
  });
  afterAll(() => api.close());

  it("answers a message with the upstream's exact text and usage, routed and accounted as the Messages API", async () => {
    const { data: message, response } = await client.messages
      .create({ model: "switchyard/auto", max_tokens: 100, system: "Be brief.", messages: [{ role: "user", content: "Weather?" }] })
      .withResponse();
    expect(message).toMatchObject({
      type: "message",
      role: "assistant",
      model: "sim/a",
      content: [{ type: "text", text: "It is sunny." }],
      stop_reason: "end_turn",
      stop_sequence: null,
      usage: { input_tokens: 31, output_tokens: 4, cache_read_input_tokens: 0 },
    });
    expect(message.id).toMatch(/^msg_/);
    expect(response.headers.get("x-switchyard-model")).toBe("sim/a");
    expect(response.headers.get("x-switchyard-cost-usd")).toMatch(/^\d+\.\d{6}$/);
    // The system prompt leads the conversation the provider got, and max_tokens reached it.
    const upstream = api.upstreamCalls.at(-1)!;
    expect(upstream.messages.map((m) => [m.role, m.content])).toEqual([["system", "Be brief."], ["user", "Weather?"]]);
    expect(upstream.sampling?.maxTokens).toBe(100);
    const requestId = response.headers.get("x-switchyard-request-id")!;
    await expect.poll(() => api.records.find((r) => r.requestId === requestId)).toMatchObject({ api: "anthropic", tenant: "team-a", inputTokens: 31n, outputTokens: 4n, status: 200, streamed: false });
  });

  it("lists the models in Anthropic's shape for Anthropic's SDK", async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) {
      expect(m.type).toBe("model");
      ids.push(m.id);
    }
    expect(ids).toContain("switchyard/auto");
    expect(ids).toContain("sim/a");
    // An OpenAI client, without anthropic-version, still gets OpenAI's list.
    const openai = await api.send({ path: "/v1/models", headers: { authorization: `Bearer ${KEY}` } });
    expect(openai.json().object).toBe("list");
  });

  it("sends nothing of OpenAI's shape", async () => {
    const res = await api.send({ path: "/v1/messages", headers: { ...JSON_HEADERS, "x-api-key": KEY }, body: { max_tokens: 10, messages: [{ role: "user", content: "hi" }] } });
    expect(res.status).toBe(200);
    expect(Object.keys(res.json()).sort()).toEqual(["content", "id", "model", "role", "stop_reason", "stop_sequence", "type", "usage"]);
    expect(Object.keys(res.json().usage).sort()).toEqual(["cache_creation_input_tokens", "cache_read_input_tokens", "input_tokens", "output_tokens"]);
  });

  it("streams Anthropic's exact event sequence, and the SDK assembles the upstream's text and usage", async () => {
    const stream = client.messages.stream({ model: "switchyard/auto", max_tokens: 100, messages: [{ role: "user", content: "Weather?" }] });
    const deltas: string[] = [];
    stream.on("text", (t) => deltas.push(t));
    const message = await stream.finalMessage();
    expect(deltas).toEqual(["It is ", "sunny", "."]);
    expect(message.content).toEqual([expect.objectContaining({ type: "text", text: "It is sunny." })]);
    expect(message.usage).toMatchObject({ input_tokens: 31, output_tokens: 4 });
    expect(message.stop_reason).toBe("end_turn");

    const raw = await api.send({ path: "/v1/messages", headers: { ...JSON_HEADERS, "x-api-key": KEY }, body: { max_tokens: 100, stream: true, messages: [{ role: "user", content: "Weather?" }] } });
    expect(raw.headers["content-type"]).toMatch(/^text\/event-stream/);
    const events = sseEvents(raw.text);
    expect(events.map((e) => e.event)).toEqual([
      "message_start",
      "ping",
      "content_block_start",
      "content_block_delta",
      "content_block_delta",
      "content_block_delta",
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
    for (const e of events) expect(e.data.type).toBe(e.event);
    expect(events[0]!.data.message).toMatchObject({ type: "message", role: "assistant", model: "sim/a", content: [] });
    expect(events[2]!.data).toEqual({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } });
    expect(events[3]!.data).toEqual({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "It is " } });
    expect(events[7]!.data).toEqual({
      type: "message_delta",
      delta: { stop_reason: "end_turn", stop_sequence: null },
      usage: { input_tokens: 31, output_tokens: 4, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
    });
  });

  it("passes tools upstream and answers the call as a tool_use block (not streamed)", async () => {
    const message = await client.messages.create({ model: "switchyard/auto", max_tokens: 100, tools, tool_choice: { type: "any" }, messages: [{ role: "user", content: "Weather in Paris?" }] });
    expect(message.content).toEqual([
      { type: "text", text: "Let me check." },
      { type: "tool_use", id: WEATHER_CALL.id, name: WEATHER_CALL.name, input: WEATHER_CALL.arguments },
    ]);
    expect(message.stop_reason).toBe("tool_use");
    // Anthropic's input_tokens leaves out cache reads; the upstream's 50 included 8 of them.
    expect(message.usage).toMatchObject({ input_tokens: 42, cache_read_input_tokens: 8, output_tokens: 12 });
    const upstream = api.upstreamCalls.at(-1)!;
    expect(upstream.tools.map((t) => [t.name, JSON.parse(t.parametersJson)])).toEqual([["get_weather", tools[0]!.input_schema]]);
    expect(upstream.toolChoice?.mode).toBe(provider.ToolChoiceMode.REQUIRED); // Anthropic's "any"
  });

  it("streams a tool call as a tool_use block with input_json_delta fragments", async () => {
    const stream = client.messages.stream({ model: "switchyard/auto", max_tokens: 100, tools, messages: [{ role: "user", content: "Weather in Paris?" }] });
    const message = await stream.finalMessage();
    expect(message.content).toEqual([
      expect.objectContaining({ type: "text", text: "Let me check." }),
      { type: "tool_use", id: WEATHER_CALL.id, name: WEATHER_CALL.name, input: WEATHER_CALL.arguments },
    ]);
    expect(message.stop_reason).toBe("tool_use");
    expect(message.usage).toMatchObject({ input_tokens: 42, output_tokens: 12 });

    const raw = await api.send({ path: "/v1/messages", headers: { ...JSON_HEADERS, "x-api-key": KEY }, body: { max_tokens: 100, stream: true, tools, messages: [{ role: "user", content: "Weather in Paris?" }] } });
    const events = sseEvents(raw.text).filter((e) => e.event !== "ping");
    expect(events.slice(1, -2).map((e) => [e.event, e.data.index, e.data.delta?.type ?? e.data.content_block?.type ?? null])).toEqual([
      ["content_block_start", 0, "text"],
      ["content_block_delta", 0, "text_delta"],
      ["content_block_stop", 0, null],
      ["content_block_start", 1, "tool_use"],
      ["content_block_delta", 1, "input_json_delta"],
      ["content_block_delta", 1, "input_json_delta"],
      ["content_block_stop", 1, null],
    ]);
    expect(events[4]!.data.content_block).toEqual({ type: "tool_use", id: WEATHER_CALL.id, name: WEATHER_CALL.name, input: {} });
  });

  it("sends a tool result back upstream as the answer to the call, and answers in text", async () => {
    const message = await client.messages.create({
      model: "switchyard/auto",
      max_tokens: 100,
      tools,
      messages: [
        { role: "user", content: "Weather in Paris?" },
        { role: "assistant", content: [{ type: "text", text: "Let me check." }, { type: "tool_use", id: "call_wx1", name: "get_weather", input: { city: "Paris" } }] },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "call_wx1", content: [{ type: "text", text: "18C, sunny" }] }, { type: "text", text: "Thanks" }] },
      ],
    });
    expect(message.content).toEqual([{ type: "text", text: "It is sunny." }]);
    const conversation = api.upstreamCalls.at(-1)!.conversation.map((t) => ({ role: t.role, content: t.content, toolCallId: t.toolCallId, calls: t.toolCalls.map((c) => [c.id, c.name, JSON.parse(c.argumentsJson)]) }));
    expect(conversation).toEqual([
      { role: "user", content: "Weather in Paris?", toolCallId: "", calls: [] },
      { role: "assistant", content: "Let me check.", toolCallId: "", calls: [["call_wx1", "get_weather", { city: "Paris" }]] },
      { role: "tool", content: "18C, sunny", toolCallId: "call_wx1", calls: [] },
      { role: "user", content: "Thanks", toolCallId: "", calls: [] },
    ]);
  });

  it("accepts Authorization: Bearer as well as x-api-key, and refuses a wrong key with 401 in Anthropic's shape", async () => {
    const bearer = await api.send({ path: "/v1/messages", headers: { ...JSON_HEADERS, authorization: `Bearer ${KEY}` }, body: { max_tokens: 10, messages: [{ role: "user", content: "hi" }] } });
    expect(bearer.status).toBe(200);
    const wrong = new Anthropic({ baseURL: `http://127.0.0.1:${api.port}`, apiKey: "sk-wrong", maxRetries: 0 });
    const err = await wrong.messages.create({ model: "switchyard/auto", max_tokens: 10, messages: [{ role: "user", content: "hi" }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((err as InstanceType<typeof Anthropic.AuthenticationError>).error).toEqual({ type: "error", error: { type: "authentication_error", message: "the API key is not valid" } });
    const none = await api.send({ path: "/v1/messages", headers: JSON_HEADERS, body: { max_tokens: 10, messages: [{ role: "user", content: "hi" }] } });
    expect(none.status).toBe(401);
    expect(anthropicError(none).type).toBe("authentication_error");
  });

  it("ends a stream that broke mid-answer with an error event and no message_stop", async () => {
    const raw = await api.send({ path: "/v1/messages", headers: { ...JSON_HEADERS, "x-api-key": KEY }, body: { max_tokens: 100, stream: true, messages: [{ role: "user", content: "please break" }] } });
    const events = sseEvents(raw.text);
    expect(events.map((e) => e.event)).toEqual(["message_start", "ping", "content_block_start", "content_block_delta", "error"]);
    expect(events.at(-1)!.data).toEqual({ type: "error", error: { type: "api_error", message: expect.any(String) } });
    const stream = client.messages.stream({ model: "switchyard/auto", max_tokens: 100, messages: [{ role: "user", content: "please break" }] });
    await expect(stream.finalMessage()).rejects.toBeInstanceOf(Anthropic.APIError);
  });

  it("maps a length cut to stop_reason max_tokens", async () => {
    const message = await client.messages.create({ model: "switchyard/auto", max_tokens: 3, messages: [{ role: "user", content: "a long story" }] });
    expect(message).toMatchObject({ content: [{ type: "text", text: "cut sh" }], stop_reason: "max_tokens", usage: { input_tokens: 20, output_tokens: 3 } });
  });
});

describe("malformed Messages bodies get Anthropic's error format", () => {
  let api: TestApi;
  beforeAll(async () => (api = await startTestApi({}, SCRIPTED)));
  afterAll(() => api.close());

  const post = (body: unknown, headers: Record<string, string> = JSON_HEADERS) => api.send({ path: "/v1/messages", headers, body });
  const ok = { model: "switchyard/auto", max_tokens: 10, messages: [{ role: "user", content: "hi" }] };

  it.each([
    ["no max_tokens", { model: "switchyard/auto", messages: [{ role: "user", content: "hi" }] }, /max_tokens/],
    ["no messages", { max_tokens: 10 }, /messages/],
    ["a system role in messages", { ...ok, messages: [{ role: "system", content: "x" }] }, /messages\[0\]\.role/],
    ["an image block", { ...ok, messages: [{ role: "user", content: [{ type: "image", source: { type: "base64", media_type: "image/png", data: "AA==" } }] }] }, /image/],
    ["a tool_result without its id", { ...ok, messages: [{ role: "user", content: [{ type: "tool_result", content: "x" }] }] }, /tool_use_id/],
    ["a server tool", { ...ok, tools: [{ type: "web_search_20250305", name: "web_search" }] }, /server tools/],
    ["a tool without input_schema", { ...ok, tools: [{ name: "f" }] }, /input_schema/],
    ["tool_choice naming no tool", { ...ok, tool_choice: { type: "tool", name: "nope" } }, /nope/],
    ["temperature over 1", { ...ok, temperature: 1.5 }, /temperature/],
    ["extended thinking", { ...ok, thinking: { type: "enabled", budget_tokens: 1024 } }, /thinking/],
    ["a redirecting field", { ...ok, api_base: "http://elsewhere" }, /api_base/],
  ])("%s: 400 invalid_request_error, and the upstream is never called", async (_name, body, message) => {
    const before = api.upstreamCalls.length;
    const res = await post(body);
    expect(res.status).toBe(400);
    const error = anthropicError(res);
    expect(error.type).toBe("invalid_request_error");
    expect(error.message).toMatch(message);
    expect(api.upstreamCalls.length).toBe(before);
  });

  it("answers invalid JSON, a wrong content type, an unknown model and a wrong method in the same format", async () => {
    const json = await post("{not json");
    expect(json.status).toBe(400);
    expect(anthropicError(json)).toEqual({ type: "invalid_request_error", message: "the request body is not valid JSON" });
    const text = await post(ok, { "content-type": "text/plain" });
    expect(text.status).toBe(415);
    expect(anthropicError(text).type).toBe("invalid_request_error");
    const model = await post({ ...ok, model: "switchyard/auto:nope" });
    expect(model.status).toBe(404);
    expect(anthropicError(model).type).toBe("not_found_error");
    const get = await api.send({ method: "GET", path: "/v1/messages" });
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe("POST, OPTIONS");
    expect(anthropicError(get).type).toBe("invalid_request_error");
    const big = await post({ ...ok, messages: [{ role: "user", content: "x".repeat(api.config.limits.max_body_bytes) }] });
    expect(big.status).toBe(413);
    expect(anthropicError(big).type).toBe("request_too_large");
  });

  it("answers a browser SDK's preflight with Anthropic's headers allowed", async () => {
    const app = "https://app.example.com";
    const cors = await startTestApi({ gateway: { cors_origins: [app] } }, SCRIPTED);
    try {
      const res = await cors.send({
        method: "OPTIONS",
        path: "/v1/messages",
        headers: { origin: app, "access-control-request-method": "POST", "access-control-request-headers": "x-api-key, anthropic-version, content-type, x-stainless-lang" },
      });
      expect(res.status).toBe(204);
      expect(String(res.headers["access-control-allow-headers"]).split(", ")).toEqual(expect.arrayContaining(["x-api-key", "anthropic-version", "content-type", "x-stainless-lang"]));
      expect(res.headers.allow).toBe("POST, OPTIONS");
    } finally {
      await cors.close();
    }
  });

  it("logs the audit line under the Messages API", async () => {
    await post(ok);
    expect(api.logs.filter((l) => l.msg === "request").at(-1)).toMatchObject({ api: "anthropic", path: "/v1/messages", status: 200, model: "sim/a" });
  });
});
