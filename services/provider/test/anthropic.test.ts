import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { AnthropicAdapter } from "../src/adapters/anthropic.js";
import { ErrorKind } from "../src/adapters/types.js";
import { bodyReply, sseReply, startFakeUpstream, trickleReply, type FakeUpstream } from "./fake-upstream.js";
import {
  ANSWER,
  ANTHROPIC_CACHED,
  ANTHROPIC_ERROR_BEFORE_TEXT,
  ANTHROPIC_ERROR_MID_STREAM,
  ANTHROPIC_NO_STOP,
  ANTHROPIC_TEXT,
  ANTHROPIC_TOOL_USE,
  KEY,
} from "./fixtures.js";
import { chatInput, collect, collectFailure, finishOf, textOf, toolCallsOf } from "./helpers.js";

let upstream: FakeUpstream;
let adapter: AnthropicAdapter;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  adapter = new AnthropicAdapter({ name: "claude", baseUrl: `${upstream.url}/v1`, apiKey: KEY, maxOutputTokens: new Map([["big-model", 16_000]]) });
});
afterEach(() => {
  upstream.requests.length = 0;
});
afterAll(async () => {
  adapter.close();
  await upstream.close();
});

describe("Anthropic adapter: streams", () => {
  it("streams the text through ping events and reports message_start input and message_delta output usage", async () => {
    upstream.reply = sseReply(ANTHROPIC_TEXT);
    const events = await collect(adapter, chatInput({ temperature: 0.3, topP: 0.8, stop: ["END"] }));
    expect(textOf(events)).toBe(ANSWER);
    expect(finishOf(events)).toEqual({
      type: "finish",
      finishReason: "stop",
      responseModel: "claude-sonnet-4-5-20250929",
      usage: { inputTokens: 25, outputTokens: 15, cachedInputTokens: 0, cacheWriteInputTokens: 0, reasoningTokens: 0, estimated: false },
    });
    const req = upstream.requests[0]!;
    expect(req.url).toBe("/v1/messages");
    expect(req.headers["x-api-key"]).toBe(KEY);
    expect(req.headers["anthropic-version"]).toBe("2023-06-01");
    expect(req.headers.authorization).toBeUndefined();
    expect(req.json).toEqual({
      model: "test-model",
      max_tokens: 4096,
      system: "Be brief.",
      messages: [{ role: "user", content: [{ type: "text", text: "Say hello." }] }],
      stream: true,
      temperature: 0.3,
      top_p: 0.8,
      stop_sequences: ["END"],
    });
  });

  it("sends max_tokens from the request, else from the model config, else 4096", async () => {
    upstream.reply = sseReply(ANTHROPIC_TEXT);
    await collect(adapter, chatInput({ maxTokens: 99 }));
    await collect(adapter, chatInput({ model: "big-model" }));
    expect(upstream.requests.map((r) => r.json?.max_tokens)).toEqual([99, 16_000]);
  });

  it("keeps events and multi-byte characters intact when every byte arrives in its own TCP write", async () => {
    upstream.reply = trickleReply(ANTHROPIC_TEXT);
    const events = await collect(adapter, chatInput());
    expect(textOf(events)).toBe(ANSWER);
    expect(finishOf(events).usage.outputTokens).toBe(15);
  });

  it("counts cache reads and writes as input tokens and reports both apart", async () => {
    upstream.reply = sseReply(ANTHROPIC_CACHED);
    const usage = finishOf(await collect(adapter, chatInput())).usage;
    expect(usage).toEqual({ inputTokens: 4225, outputTokens: 15, cachedInputTokens: 3000, cacheWriteInputTokens: 1200, reasoningTokens: 0, estimated: false });
  });

  it("turns tool_use blocks and input_json_delta into ToolCallDelta events, finishing with tool_calls", async () => {
    upstream.reply = sseReply(ANTHROPIC_TOOL_USE);
    const events = await collect(adapter, chatInput());
    expect(textOf(events)).toBe("Let me check.");
    expect(toolCallsOf(events)).toEqual([{ id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6", name: "get_weather", arguments: '{"location": "Paris"}' }]);
    expect(finishOf(events)).toMatchObject({ finishReason: "tool_calls", usage: { inputTokens: 472, outputTokens: 89 } });
  });

  it("sends tools, tool choice, tool_use history and tool results merged into one user turn", async () => {
    upstream.reply = sseReply(ANTHROPIC_TEXT);
    await collect(
      adapter,
      chatInput({
        messages: [
          { role: "system", content: "Use tools." },
          { role: "user", content: "Weather and time in Paris?" },
          {
            role: "assistant",
            content: "Checking.",
            toolCalls: [
              { id: "toolu_1", name: "get_weather", argumentsJson: '{"location":"Paris"}' },
              { id: "toolu_2", name: "get_time", argumentsJson: "" },
            ],
          },
          { role: "tool", content: "21 °C", toolCallId: "toolu_1" },
          { role: "tool", content: "14:00", toolCallId: "toolu_2" },
        ],
        tools: [{ name: "get_weather", description: "Weather", parameters: { type: "object", properties: { location: { type: "string" } } } }, { name: "get_time", description: "" }],
        toolChoice: { mode: "required" },
      }),
    );
    const body = upstream.requests[0]!.json!;
    expect(body.system).toBe("Use tools.");
    expect(body.messages).toEqual([
      { role: "user", content: [{ type: "text", text: "Weather and time in Paris?" }] },
      {
        role: "assistant",
        content: [
          { type: "text", text: "Checking." },
          { type: "tool_use", id: "toolu_1", name: "get_weather", input: { location: "Paris" } },
          { type: "tool_use", id: "toolu_2", name: "get_time", input: {} },
        ],
      },
      {
        role: "user",
        content: [
          { type: "tool_result", tool_use_id: "toolu_1", content: "21 °C" },
          { type: "tool_result", tool_use_id: "toolu_2", content: "14:00" },
        ],
      },
    ]);
    expect(body.tools).toEqual([
      { name: "get_weather", description: "Weather", input_schema: { type: "object", properties: { location: { type: "string" } } } },
      { name: "get_time", input_schema: { type: "object", properties: {} } },
    ]);
    expect(body.tool_choice).toEqual({ type: "any" });
  });

  it("rejects tool-call arguments in history that are not a JSON object, before calling the upstream", async () => {
    const { failure } = await collectFailure(
      adapter,
      chatInput({ messages: [{ role: "assistant", content: "", toolCalls: [{ id: "t", name: "f", argumentsJson: "[1," }] }] }),
    );
    expect(failure.kind).toBe(ErrorKind.BAD_REQUEST);
    expect(upstream.requests).toHaveLength(0);
  });
});

describe("Anthropic adapter: failures", () => {
  it("fails STREAM_BROKEN on a mid-stream error event after text went out", async () => {
    upstream.reply = sseReply(ANTHROPIC_ERROR_MID_STREAM);
    const { events, failure } = await collectFailure(adapter, chatInput());
    expect(textOf(events)).toBe("Grüße — ");
    expect(failure.kind).toBe(ErrorKind.STREAM_BROKEN);
    expect(failure.message).toBe("claude: the provider reported an error mid-stream: Overloaded");
  });

  it("fails OVERLOADED (so the gateway falls back) on an error event before any text", async () => {
    upstream.reply = sseReply(ANTHROPIC_ERROR_BEFORE_TEXT);
    const { events, failure } = await collectFailure(adapter, chatInput());
    expect(events).toEqual([]);
    expect(failure.kind).toBe(ErrorKind.OVERLOADED);
  });

  it("fails OVERLOADED on HTTP 529 overloaded_error", async () => {
    upstream.reply = bodyReply(529, "application/json", '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}');
    const { failure } = await collectFailure(adapter, chatInput());
    expect([failure.kind, failure.upstreamStatus, failure.message]).toEqual([ErrorKind.OVERLOADED, 529, "claude: HTTP 529: Overloaded"]);
  });

  it("fails RATE_LIMITED on 429 rate_limit_error with retry-after", async () => {
    upstream.reply = bodyReply(429, "application/json", '{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}', {
      "retry-after": "12",
    });
    const { failure } = await collectFailure(adapter, chatInput());
    expect([failure.kind, failure.retryAfterMs]).toEqual([ErrorKind.RATE_LIMITED, 12_000]);
  });

  it("fails AUTH on 401 without quoting the body", async () => {
    upstream.reply = bodyReply(401, "application/json", `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key ${KEY}"}}`);
    const { failure } = await collectFailure(adapter, chatInput());
    expect([failure.kind, failure.message]).toEqual([ErrorKind.AUTH, "claude: the provider rejected our credentials (HTTP 401)"]);
  });

  it("fails STREAM_BROKEN when the stream ends without message_stop", async () => {
    upstream.reply = sseReply(ANTHROPIC_NO_STOP);
    const { events, failure } = await collectFailure(adapter, chatInput());
    expect(textOf(events)).toBe(ANSWER);
    expect(failure.kind).toBe(ErrorKind.STREAM_BROKEN);
    expect(failure.message).toContain("message_stop");
  });
});
