import { afterAll, beforeAll, describe, expect, it } from "vitest";
import OpenAI from "openai";
import { envelope, JSON_HEADERS, startTestApi, type TestApi } from "./http-harness.js";
import { SCRIPTED, sseEvents, WEATHER_CALL } from "./fake-answers.js";

const chatTools: OpenAI.ChatCompletionTool[] = [
  { type: "function", function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } },
];
const responseTools: OpenAI.Responses.FunctionTool[] = [
  { type: "function", name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }, strict: false },
];

let api: TestApi;
let client: OpenAI;
beforeAll(async () => {
  api = await startTestApi({}, SCRIPTED);
  client = new OpenAI({ baseURL: `http://127.0.0.1:${api.port}/v1`, apiKey: "unused", maxRetries: 0 });
});
afterAll(() => api.close());

describe("POST /v1/responses with OpenAI's SDK", () => {
  it("answers with the upstream's exact text and usage, instructions as the system turn, accounted as the Responses API", async () => {
    const { data: response, response: raw } = await client.responses.create({ model: "switchyard/auto", instructions: "Be brief.", input: "Weather?", max_output_tokens: 100 }).withResponse();
    expect(response.output_text).toBe("It is sunny.");
    expect(response).toMatchObject({
      object: "response",
      status: "completed",
      model: "sim/a",
      store: false,
      instructions: "Be brief.",
      max_output_tokens: 100,
      usage: { input_tokens: 31, output_tokens: 4, total_tokens: 35, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 0 } },
    });
    expect(response.id).toMatch(/^resp_/);
    expect(response.output).toEqual([{ type: "message", id: expect.stringMatching(/^msg_/), status: "completed", role: "assistant", content: [{ type: "output_text", text: "It is sunny.", annotations: [] }] }]);
    expect(raw.headers.get("x-switchyard-model")).toBe("sim/a");
    const upstream = api.upstreamCalls.at(-1)!;
    expect(upstream.messages.map((m) => [m.role, m.content])).toEqual([["system", "Be brief."], ["user", "Weather?"]]);
    expect(upstream.sampling?.maxTokens).toBe(100);
    const requestId = raw.headers.get("x-switchyard-request-id")!;
    await expect.poll(() => api.records.find((r) => r.requestId === requestId)).toMatchObject({ api: "responses", inputTokens: 31n, outputTokens: 4n, status: 200 });
  });

  it("carries nothing of Chat Completions", async () => {
    const res = await api.send({ path: "/v1/responses", headers: JSON_HEADERS, body: { input: "hi" } });
    const body = res.json();
    for (const field of ["choices", "switchyard", "system_fingerprint"]) expect(body).not.toHaveProperty(field);
    expect(body.usage).not.toHaveProperty("prompt_tokens");
  });

  it("streams OpenAI's event sequence, numbered, ending in response.completed with the usage", async () => {
    const stream = await client.responses.create({ model: "switchyard/auto", input: [{ role: "user", content: "Weather?" }], stream: true });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    expect(events.map((e) => e.type)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    const deltas = events.filter((e): e is OpenAI.Responses.ResponseTextDeltaEvent => e.type === "response.output_text.delta").map((e) => e.delta);
    expect(deltas).toEqual(["It is ", "sunny", "."]);
    const completed = events.at(-1) as OpenAI.Responses.ResponseCompletedEvent;
    expect(completed.response.usage).toMatchObject({ input_tokens: 31, output_tokens: 4, total_tokens: 35 });
    expect(completed.response.output).toEqual([{ type: "message", id: expect.any(String), status: "completed", role: "assistant", content: [{ type: "output_text", text: "It is sunny.", annotations: [] }] }]);
    expect((events[0] as OpenAI.Responses.ResponseCreatedEvent).response).toMatchObject({ status: "in_progress", output: [], usage: null });

    // The SDK's stream helper assembles the same response.
    const helper = client.responses.stream({ model: "switchyard/auto", input: "Weather?" });
    const final = await helper.finalResponse();
    expect(final.output_text).toBe("It is sunny.");
    expect(final.usage?.total_tokens).toBe(35);
  });

  it("answers a function call as a function_call item (not streamed), and takes its output back", async () => {
    const first = await client.responses.create({ model: "switchyard/auto", tools: responseTools, tool_choice: "required", input: "Weather in Paris?" });
    expect(first.output).toEqual([
      { type: "message", id: expect.any(String), status: "completed", role: "assistant", content: [{ type: "output_text", text: "Let me check.", annotations: [] }] },
      { type: "function_call", id: expect.stringMatching(/^fc_/), call_id: WEATHER_CALL.id, name: WEATHER_CALL.name, arguments: JSON.stringify(WEATHER_CALL.arguments), status: "completed" },
    ]);
    expect(first.usage).toMatchObject({ input_tokens: 50, output_tokens: 12, input_tokens_details: { cached_tokens: 8 } });
    expect(api.upstreamCalls.at(-1)!.tools.map((t) => t.name)).toEqual(["get_weather"]);

    const call = first.output[1] as OpenAI.Responses.ResponseFunctionToolCall;
    const second = await client.responses.create({
      model: "switchyard/auto",
      tools: responseTools,
      input: [{ role: "user", content: "Weather in Paris?" }, call, { type: "function_call_output", call_id: call.call_id, output: "18C, sunny" }],
    });
    expect(second.output_text).toBe("It is sunny.");
    const conversation = api.upstreamCalls.at(-1)!.conversation.map((t) => [t.role, t.content, t.toolCallId, t.toolCalls.map((c) => c.id)]);
    expect(conversation).toEqual([
      ["user", "Weather in Paris?", "", []],
      ["assistant", "", "", [WEATHER_CALL.id]],
      ["tool", "18C, sunny", WEATHER_CALL.id, []],
    ]);
  });

  it("streams a function call with its argument deltas", async () => {
    const stream = await client.responses.create({ model: "switchyard/auto", tools: responseTools, input: "Weather in Paris?", stream: true });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    const types = events.map((e) => e.type);
    expect(types.slice(types.indexOf("response.output_item.done") + 1)).toEqual([
      "response.output_item.added",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.completed",
    ]);
    const done = events.find((e) => e.type === "response.function_call_arguments.done") as OpenAI.Responses.ResponseFunctionCallArgumentsDoneEvent;
    expect(JSON.parse(done.arguments)).toEqual(WEATHER_CALL.arguments);
    const completed = events.at(-1) as OpenAI.Responses.ResponseCompletedEvent;
    expect(completed.response.output[1]).toMatchObject({ type: "function_call", call_id: WEATHER_CALL.id, name: WEATHER_CALL.name, arguments: '{"city":"Paris"}', status: "completed" });
  });

  it("reports a length cut as incomplete, and a stream broken mid-answer as error then response.failed", async () => {
    const cut = await client.responses.create({ model: "switchyard/auto", input: "a long story" });
    expect(cut).toMatchObject({ status: "incomplete", incomplete_details: { reason: "max_output_tokens" }, output_text: "cut sh" });
    const raw = await api.send({ path: "/v1/responses", headers: JSON_HEADERS, body: { input: "please break", stream: true } });
    const events = sseEvents(raw.text);
    expect(events.map((e) => e.event).slice(-2)).toEqual(["error", "response.failed"]);
    expect(events.at(-2)!.data).toMatchObject({ type: "error", code: expect.any(String), message: expect.any(String) });
    expect(events.at(-1)!.data.response).toMatchObject({ status: "failed", error: { code: expect.any(String) } });
    expect(events.some((e) => e.event === "response.completed")).toBe(false);
  });
});

describe("malformed Responses bodies get OpenAI's envelope", () => {
  const post = (body: unknown) => api.send({ path: "/v1/responses", headers: JSON_HEADERS, body });

  it.each([
    ["store: true", { input: "hi", store: true }, "store", /store/],
    ["previous_response_id", { input: "hi", previous_response_id: "resp_123" }, "previous_response_id", /previous_response_id/],
    ["no input", { model: "switchyard/auto" }, "input", /input/],
    ["an image part", { input: [{ role: "user", content: [{ type: "input_image", image_url: "https://x/y.png" }] }] }, "input[0].content", /input_text/],
    ["an item reference", { input: [{ type: "item_reference", id: "msg_1" }] }, "input[0]", /references/],
    ["a built-in tool", { input: "hi", tools: [{ type: "web_search_preview" }] }, "tools[0].type", /function tools/],
    ["a JSON schema output", { input: "hi", text: { format: { type: "json_schema", name: "x", schema: {} } } }, "text.format", /json_schema/],
    ["a function call without call_id", { input: [{ type: "function_call", name: "f", arguments: "{}" }] }, "input[0]", /call_id/],
  ])("%s: 400 naming the field, and the upstream is never called", async (_name, body, param, message) => {
    const before = api.upstreamCalls.length;
    const res = await post(body);
    expect(res.status).toBe(400);
    const error = envelope(res);
    expect(error).toMatchObject({ type: "invalid_request_error", param });
    expect(error.message).toMatch(message);
    expect(api.upstreamCalls.length).toBe(before);
  });

  it("leaves store out or false: answered, and said to be not stored", async () => {
    expect((await post({ input: "hi", store: false })).json().store).toBe(false);
  });

  it("throws the SDK's BadRequestError for store: true", async () => {
    const err = await client.responses.create({ model: "switchyard/auto", input: "hi", store: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("store");
  });
});

describe("POST /v1/chat/completions with OpenAI's SDK, on the same skeleton", () => {
  it("answers and streams the upstream's exact text and usage", async () => {
    const completion = await client.chat.completions.create({ model: "switchyard/auto", messages: [{ role: "user", content: "Weather?" }] });
    expect(completion.choices[0]!.message.content).toBe("It is sunny.");
    expect(completion.usage).toMatchObject({ prompt_tokens: 31, completion_tokens: 4, total_tokens: 35 });
    const stream = await client.chat.completions.create({ model: "switchyard/auto", stream: true, stream_options: { include_usage: true }, messages: [{ role: "user", content: "Weather?" }] });
    let text = "";
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      usage = chunk.usage ?? usage;
    }
    expect(text).toBe("It is sunny.");
    expect(usage).toMatchObject({ prompt_tokens: 31, completion_tokens: 4 });
  });

  it("answers tool calls, streamed and not", async () => {
    const completion = await client.chat.completions.create({ model: "switchyard/auto", tools: chatTools, messages: [{ role: "user", content: "Weather in Paris?" }] });
    expect(completion.choices[0]!.message.tool_calls).toEqual([{ id: WEATHER_CALL.id, type: "function", function: { name: WEATHER_CALL.name, arguments: '{"city":"Paris"}' } }]);
    expect(completion.choices[0]!.finish_reason).toBe("tool_calls");
    const stream = await client.chat.completions.create({ model: "switchyard/auto", stream: true, tools: chatTools, messages: [{ role: "user", content: "Weather in Paris?" }] });
    let args = "";
    for await (const chunk of stream) args += chunk.choices[0]?.delta.tool_calls?.[0]?.function?.arguments ?? "";
    expect(JSON.parse(args)).toEqual(WEATHER_CALL.arguments);
  });
});
