import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as http from "node:http";
import OpenAI from "openai";
import { startTestMesh, type TestMesh } from "./support.js";

/** An OpenAI-compatible upstream that always answers with one streamed tool call. */
const received: Record<string, unknown>[] = [];
const upstream = http.createServer((req, res) => {
  let body = "";
  req.on("data", (c: Buffer) => (body += c.toString()));
  req.on("end", () => {
    if (req.method !== "POST") return void res.end(); // the provider's pool warm-up
    const parsed = JSON.parse(body) as Record<string, unknown>;
    received.push(parsed);
    res.writeHead(200, { "content-type": "text/event-stream" });
    if (parsed.model === "breaks") {
      // Half an answer, then the connection drops.
      res.write(`data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", model: "breaks", choices: [{ index: 0, delta: { content: "half an ans" }, finish_reason: null }] })}\n\n`);
      setTimeout(() => res.destroy(), 20);
      return;
    }
    const events = [
      { id: "c", object: "chat.completion.chunk", model: "tooler", choices: [{ index: 0, delta: { role: "assistant", content: null, tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "get_weather", arguments: "" } }] }, finish_reason: null }] },
      { id: "c", object: "chat.completion.chunk", model: "tooler", choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }, finish_reason: null }] },
      { id: "c", object: "chat.completion.chunk", model: "tooler", choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }, finish_reason: null }] },
      { id: "c", object: "chat.completion.chunk", model: "tooler", choices: [{ index: 0, delta: {}, finish_reason: "tool_calls" }] },
      { id: "c", object: "chat.completion.chunk", model: "tooler", choices: [], usage: { prompt_tokens: 50, completion_tokens: 12, total_tokens: 62 } },
    ];
    for (const e of events) res.write(`data: ${JSON.stringify(e)}\n\n`);
    res.end("data: [DONE]\n\n");
  });
});

let m: TestMesh;
let openai: OpenAI;
beforeAll(async () => {
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  const port = (upstream.address() as { port: number }).port;
  m = await startTestMesh({
    providers: [{ name: "up", kind: "openai", base_url: `http://127.0.0.1:${port}/v1`, enabled: true, models: [
      { name: "tooler", input_usd_per_mtok: 1, output_usd_per_mtok: 1, tiers: ["simple", "standard", "complex"] },
      { name: "breaks", input_usd_per_mtok: 1, output_usd_per_mtok: 1, tiers: ["simple"] },
    ] }],
  });
  openai = new OpenAI({ baseURL: `${m.httpUrl}/v1`, apiKey: "unused", maxRetries: 0 });
}, 60_000);
afterAll(async () => {
  await m?.stop();
  upstream.close();
});

const tools: OpenAI.ChatCompletionTool[] = [
  { type: "function", function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } },
];

describe("tool calls through the mesh", () => {
  it("passes tools upstream and streams the call back in OpenAI's shape", async () => {
    const stream = await openai.chat.completions.create({ model: "up/tooler", stream: true, tools, messages: [{ role: "user", content: "Weather in Paris?" }] });
    let args = "";
    let name = "";
    let id = "";
    let finish: string | null = null;
    for await (const chunk of stream) {
      const call = chunk.choices[0]?.delta.tool_calls?.[0];
      if (call?.id) id = call.id;
      if (call?.function?.name) name = call.function.name;
      args += call?.function?.arguments ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect({ id, name, args: JSON.parse(args), finish }).toEqual({ id: "call_1", name: "get_weather", args: { city: "Paris" }, finish: "tool_calls" });
    expect((received.at(-1)!.tools as { function: { name: string } }[])[0]!.function.name).toBe("get_weather");
  });

  it("returns the assembled call without streaming, and sends a tool result back upstream", async () => {
    const first = await openai.chat.completions.create({ model: "up/tooler", tools, tool_choice: "required", messages: [{ role: "user", content: "Weather in Paris?" }] });
    const message = first.choices[0]!.message;
    expect(message.content).toBeNull();
    expect(message.tool_calls).toEqual([{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }]);
    expect(first.choices[0]!.finish_reason).toBe("tool_calls");
    await openai.chat.completions.create({
      model: "up/tooler",
      tools,
      messages: [{ role: "user", content: "Weather in Paris?" }, message, { role: "tool", tool_call_id: "call_1", content: '{"temp_c": 21}' }],
    });
    const sent = received.at(-1)!.messages as { role: string; tool_call_id?: string; tool_calls?: unknown[] }[];
    expect(sent.map((x) => x.role)).toEqual(["user", "assistant", "tool"]);
    expect(sent[1]!.tool_calls).toHaveLength(1);
    expect(sent[2]!.tool_call_id).toBe("call_1");
  });

  it("rejects a malformed tool definition with a 400 naming it", async () => {
    await expect(
      openai.chat.completions.create({ model: "up/tooler", tools: [{ type: "function", function: { name: "bad name!" } }], messages: [{ role: "user", content: "x" }] }),
    ).rejects.toMatchObject({ status: 400, param: "tools[0].function.name" });
  });
});

describe("an upstream that breaks mid-answer", () => {
  const ask = (stream: boolean) =>
    fetch(`${m.httpUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "up/breaks", stream, messages: [{ role: "user", content: "hello" }] }),
    });

  it("ends a stream with an error event and no [DONE]", async () => {
    const res = await ask(true);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain("half an ans");
    expect(text).toMatch(/data: \{"error":\{"message":"[^"]*","type":"upstream_error","param":null,"code":"upstream_stream_broken"\}\}\n\n$/);
    expect(text).not.toContain("[DONE]");
  });

  it("answers a non-streamed request with an error status, not half an answer", async () => {
    const res = await ask(false);
    expect(res.status).toBe(502);
    expect(res.headers.get("content-type")).toBe("application/json");
    const body = (await res.json()) as { error: { code: string } };
    expect(body.error.code).toBe("upstream_stream_broken");
  });
});
