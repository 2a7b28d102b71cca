import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as http from "node:http";
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { FAST_SIM_PROVIDER, startTestMesh, type TestMesh } from "./support.js";

/**
 * The three REST APIs through the six-process mesh as `switchyard start` runs it, against an
 * OpenAI-compatible upstream whose text and usage are known: Anthropic's Messages and OpenAI's
 * Responses with their official SDKs (streamed and not, tools), and OpenRouter's `models` and
 * `provider` on chat completions decided by the real policy.
 */
const TEXT = ["Bonjour ", "from ", "upstream."];
const USAGE = { prompt_tokens: 21, completion_tokens: 5, total_tokens: 26 };
const received: Record<string, unknown>[] = [];

const chunk = (model: string, delta: Record<string, unknown>, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;

const upstream = http.createServer((req, res) => {
  let body = "";
  req.on("data", (c: Buffer) => (body += c.toString()));
  req.on("end", () => {
    if (req.method !== "POST") return void res.end(); // the provider's pool warm-up
    const parsed = JSON.parse(body) as { model: string; tools?: unknown[]; messages: { role: string }[] };
    received.push(parsed);
    if (parsed.model === "down") {
      res.writeHead(503, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ error: { message: "overloaded", type: "server_error" } }));
    }
    res.writeHead(200, { "content-type": "text/event-stream" });
    if (parsed.tools?.length && !parsed.messages.some((m) => m.role === "tool")) {
      res.write(chunk(parsed.model, { role: "assistant", content: null, tool_calls: [{ index: 0, id: "call_9", type: "function", function: { name: "get_weather", arguments: "" } }] }));
      res.write(chunk(parsed.model, { tool_calls: [{ index: 0, function: { arguments: '{"city":"Lyon"}' } }] }));
      res.write(chunk(parsed.model, {}, "tool_calls"));
      res.write(`data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: parsed.model, choices: [], usage: { prompt_tokens: 40, completion_tokens: 9, total_tokens: 49 } })}\n\n`);
      return void res.end("data: [DONE]\n\n");
    }
    res.write(chunk(parsed.model, { role: "assistant", content: "" }));
    for (const t of TEXT) res.write(chunk(parsed.model, { content: t }));
    res.write(chunk(parsed.model, {}, "stop"));
    res.write(`data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: parsed.model, choices: [], usage: USAGE })}\n\n`);
    res.end("data: [DONE]\n\n");
  });
});

let m: TestMesh;
let anthropic: Anthropic;
let openai: OpenAI;
beforeAll(async () => {
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  const port = (upstream.address() as { port: number }).port;
  m = await startTestMesh({
    providers: [
      FAST_SIM_PROVIDER,
      {
        name: "up",
        kind: "openai",
        base_url: `http://127.0.0.1:${port}/v1`,
        enabled: true,
        // Dearer than every simulator model: the policy's own rule never picks it in tier complex.
        models: [
          { name: "chat", input_usd_per_mtok: 50, output_usd_per_mtok: 50, tiers: ["complex"] },
          { name: "down", input_usd_per_mtok: 50, output_usd_per_mtok: 50, tiers: ["complex"] },
        ],
      },
    ],
  });
  anthropic = new Anthropic({ baseURL: m.httpUrl, apiKey: "unused", maxRetries: 0 });
  openai = new OpenAI({ baseURL: `${m.httpUrl}/v1`, apiKey: "unused", maxRetries: 0 });
}, 90_000);
afterAll(async () => {
  await m?.stop();
  upstream.close();
});

const weather = { name: "get_weather", description: "Weather in a city", schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } };

describe("Anthropic's Messages API through the mesh", () => {
  it("answers with the upstream's exact text and usage, streamed and not", async () => {
    const { data: message, response } = await anthropic.messages
      .create({ model: "up/chat", max_tokens: 50, system: "Answer in French.", messages: [{ role: "user", content: "Hello?" }] })
      .withResponse();
    expect(message.content).toEqual([{ type: "text", text: TEXT.join("") }]);
    expect(message.usage).toMatchObject({ input_tokens: 21, output_tokens: 5 });
    expect(message.model).toBe("up/chat");
    expect(response.headers.get("x-switchyard-cost-usd")).toBe("0.001300"); // 26 tokens at $50/M
    const sent = received.at(-1) as { messages: { role: string; content: unknown }[]; max_tokens?: number; max_completion_tokens?: number };
    expect(sent.messages[0]).toMatchObject({ role: "system", content: "Answer in French." });

    const stream = anthropic.messages.stream({ model: "up/chat", max_tokens: 50, messages: [{ role: "user", content: "Hello?" }] });
    const final = await stream.finalMessage();
    expect(final.content).toEqual([expect.objectContaining({ type: "text", text: TEXT.join("") })]);
    expect(final.usage).toMatchObject({ input_tokens: 21, output_tokens: 5 });
    expect(final.stop_reason).toBe("end_turn");
  });

  it("streams a tool call as tool_use, and takes the tool result back", async () => {
    const tools = [{ name: weather.name, description: weather.description, input_schema: weather.schema as Anthropic.Tool.InputSchema }];
    const first = await anthropic.messages.stream({ model: "up/chat", max_tokens: 50, tools, messages: [{ role: "user", content: "Weather in Lyon?" }] }).finalMessage();
    expect(first.content).toEqual([{ type: "tool_use", id: "call_9", name: "get_weather", input: { city: "Lyon" } }]);
    expect(first.stop_reason).toBe("tool_use");
    expect(first.usage).toMatchObject({ input_tokens: 40, output_tokens: 9 });
    const second = await anthropic.messages.create({
      model: "up/chat",
      max_tokens: 50,
      tools,
      messages: [
        { role: "user", content: "Weather in Lyon?" },
        { role: "assistant", content: first.content },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "call_9", content: "12C" }] },
      ],
    });
    expect(second.content).toEqual([{ type: "text", text: TEXT.join("") }]);
    const sent = (received.at(-1) as { messages: { role: string; tool_call_id?: string }[] }).messages;
    expect(sent.map((x) => x.role)).toEqual(["user", "assistant", "tool"]);
    expect(sent[2]!.tool_call_id).toBe("call_9");
  });

  it("answers a malformed body in Anthropic's error format", async () => {
    const res = await fetch(`${m.httpUrl}/v1/messages`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "up/chat", messages: [] }) });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ type: "error", error: { type: "invalid_request_error", message: expect.stringMatching(/max_tokens/) } });
  });
});

describe("OpenAI's Responses API through the mesh", () => {
  it("answers with the upstream's exact text and usage, streamed and not", async () => {
    const response = await openai.responses.create({ model: "up/chat", instructions: "Answer in French.", input: "Hello?" });
    expect(response.output_text).toBe(TEXT.join(""));
    expect(response.usage).toMatchObject({ input_tokens: 21, output_tokens: 5, total_tokens: 26 });
    const stream = await openai.responses.create({ model: "up/chat", input: "Hello?", stream: true });
    const deltas: string[] = [];
    let completed: OpenAI.Responses.Response | undefined;
    for await (const event of stream) {
      if (event.type === "response.output_text.delta") deltas.push(event.delta);
      if (event.type === "response.completed") completed = event.response;
    }
    expect(deltas).toEqual(TEXT);
    expect(completed?.usage).toMatchObject({ input_tokens: 21, output_tokens: 5 });
  });

  it("answers a function call, and refuses store: true in OpenAI's envelope", async () => {
    const tools: OpenAI.Responses.FunctionTool[] = [{ type: "function", name: weather.name, description: weather.description, parameters: weather.schema, strict: false }];
    const response = await openai.responses.create({ model: "up/chat", tools, input: "Weather in Lyon?" });
    expect(response.output).toEqual([expect.objectContaining({ type: "function_call", call_id: "call_9", name: "get_weather", arguments: '{"city":"Lyon"}' })]);
    await expect(openai.responses.create({ model: "up/chat", input: "x", store: true })).rejects.toMatchObject({ status: 400, param: "store" });
  });
});

describe("OpenRouter's models and provider, decided by the policy", () => {
  const chat = (body: Record<string, unknown>) =>
    fetch(`${m.httpUrl}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ messages: [{ role: "user", content: "Hello?" }], ...body }) });

  it("falls back along 'models' when the first cannot serve", async () => {
    const completion = await openai.chat.completions.create({ model: "up/down", messages: [{ role: "user", content: "Hello?" }], ...{ models: ["up/chat"] } } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(completion.model).toBe("up/chat");
    expect(completion.choices[0]!.message.content).toBe(TEXT.join(""));
    expect((completion as unknown as { switchyard: { fallbacks: number } }).switchyard.fallbacks).toBe(1);
  });

  it("puts provider.order first where the policy's own rule would not, and refuses preferences no model of the tier meets", async () => {
    const rule = await chat({ model: "switchyard/auto:complex" });
    expect(rule.headers.get("x-switchyard-model")).not.toBe("up/chat");
    const ordered = await chat({ model: "switchyard/auto:complex", provider: { order: ["up"], ignore: [] } });
    expect(ordered.status).toBe(200);
    expect(ordered.headers.get("x-switchyard-model")).toMatch(/^up\//);
    const refused = await chat({ model: "switchyard/auto:simple", provider: { only: ["up"] } });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: unknown }).error).toMatchObject({
      type: "invalid_request_error",
      code: "unsatisfiable_preferences",
      param: "provider",
      message: expect.stringMatching(/leave no model of tier "simple"/),
    });
  });
});
