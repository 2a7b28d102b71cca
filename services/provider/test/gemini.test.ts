import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { GeminiAdapter } from "../src/adapters/gemini.js";
import { ErrorKind } from "../src/adapters/types.js";
import { bodyReply, sseReply, startFakeUpstream, trickleReply, type FakeUpstream } from "./fake-upstream.js";
import {
  ANSWER,
  GEMINI_BAD_KEY,
  GEMINI_FUNCTION_CALL,
  GEMINI_NO_FINISH,
  GEMINI_PROMPT_BLOCKED,
  GEMINI_SAFETY,
  GEMINI_TEXT,
  GEMINI_THINKING,
  HTML_502,
  KEY,
} from "./fixtures.js";
import { chatInput, collect, collectFailure, finishOf, textOf, toolCallsOf } from "./helpers.js";

let upstream: FakeUpstream;
let adapter: GeminiAdapter;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  adapter = new GeminiAdapter({ name: "gem", baseUrl: `${upstream.url}/v1beta`, apiKey: KEY });
});
afterEach(() => {
  upstream.requests.length = 0;
});
afterAll(async () => {
  adapter.close();
  await upstream.close();
});

describe("Gemini adapter: streams", () => {
  it("streams CRLF-framed chunks and reports the last cumulative usage, not the sum", async () => {
    upstream.reply = sseReply(GEMINI_TEXT);
    const events = await collect(adapter, chatInput({ model: "gemini-2.0-flash", temperature: 0.5, topP: 0.9, maxTokens: 128, stop: ["END"] }));
    expect(textOf(events)).toBe(ANSWER);
    expect(finishOf(events)).toEqual({
      type: "finish",
      finishReason: "stop",
      responseModel: "gemini-2.0-flash",
      usage: { inputTokens: 11, outputTokens: 9, cachedInputTokens: 0, cacheWriteInputTokens: 0, reasoningTokens: 0, estimated: false },
    });
    const req = upstream.requests[0]!;
    expect(req.url).toBe("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse");
    expect(req.headers["x-goog-api-key"]).toBe(KEY);
    expect(req.url).not.toContain(KEY);
    expect(req.json).toEqual({
      contents: [{ role: "user", parts: [{ text: "Say hello." }] }],
      systemInstruction: { parts: [{ text: "Be brief." }] },
      generationConfig: { temperature: 0.5, topP: 0.9, maxOutputTokens: 128, stopSequences: ["END"] },
    });
  });

  it("keeps events and multi-byte characters intact when every byte arrives in its own TCP write", async () => {
    upstream.reply = trickleReply(GEMINI_TEXT);
    const events = await collect(adapter, chatInput());
    expect(textOf(events)).toBe(ANSWER);
    expect(finishOf(events).usage.outputTokens).toBe(9);
  });

  it("counts thinking tokens as output (and reasoning) and reports cached input", async () => {
    upstream.reply = sseReply(GEMINI_THINKING);
    const usage = finishOf(await collect(adapter, chatInput())).usage;
    expect(usage).toEqual({ inputTokens: 2100, outputTokens: 235, cachedInputTokens: 2048, cacheWriteInputTokens: 0, reasoningTokens: 231, estimated: false });
  });

  it("turns a functionCall part into one whole ToolCallDelta and finishes with tool_calls", async () => {
    upstream.reply = sseReply(GEMINI_FUNCTION_CALL);
    const events = await collect(adapter, chatInput());
    const calls = toolCallsOf(events);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ name: "get_weather", arguments: '{"location":"Paris"}' });
    expect(calls[0]!.id).toMatch(/^call_[0-9a-f]{32}$/);
    expect(finishOf(events).finishReason).toBe("tool_calls");
  });

  it("sends functionDeclarations, toolConfig, functionCall history and functionResponse turns", async () => {
    upstream.reply = sseReply(GEMINI_TEXT);
    await collect(
      adapter,
      chatInput({
        messages: [
          { role: "user", content: "Weather in Paris?" },
          { role: "assistant", content: "", toolCalls: [{ id: "call_1", name: "get_weather", argumentsJson: '{"location":"Paris"}' }] },
          { role: "tool", content: '{"temp_c":21}', toolCallId: "call_1" },
          { role: "tool", content: "sunny", name: "get_sky" },
        ],
        tools: [{ name: "get_weather", description: "Weather", parameters: { type: "object", properties: { location: { type: "string" } }, additionalProperties: false } }],
        toolChoice: { mode: "tool", name: "get_weather" },
      }),
    );
    const body = upstream.requests[0]!.json!;
    expect(body.contents).toEqual([
      { role: "user", parts: [{ text: "Weather in Paris?" }] },
      { role: "model", parts: [{ functionCall: { name: "get_weather", args: { location: "Paris" } } }] },
      {
        role: "user",
        parts: [{ functionResponse: { name: "get_weather", response: { temp_c: 21 } } }, { functionResponse: { name: "get_sky", response: { result: "sunny" } } }],
      },
    ]);
    expect(body.tools).toEqual([
      {
        functionDeclarations: [
          { name: "get_weather", description: "Weather", parametersJsonSchema: { type: "object", properties: { location: { type: "string" } }, additionalProperties: false } },
        ],
      },
    ]);
    expect(body.toolConfig).toEqual({ functionCallingConfig: { mode: "ANY", allowedFunctionNames: ["get_weather"] } });
  });

  it("maps SAFETY to content_filter and a blocked prompt to content_filter with no text", async () => {
    upstream.reply = sseReply(GEMINI_SAFETY);
    let events = await collect(adapter, chatInput());
    expect(textOf(events)).toBe("I can");
    expect(finishOf(events).finishReason).toBe("content_filter");
    upstream.reply = sseReply(GEMINI_PROMPT_BLOCKED);
    events = await collect(adapter, chatInput());
    expect(events).toHaveLength(1);
    expect(finishOf(events)).toMatchObject({ finishReason: "content_filter", usage: { inputTokens: 11, outputTokens: 0 } });
  });

  it("maps MAX_TOKENS to length", async () => {
    upstream.reply = sseReply(GEMINI_TEXT.replace('"finishReason": "STOP"', '"finishReason": "MAX_TOKENS"'));
    expect(finishOf(await collect(adapter, chatInput())).finishReason).toBe("length");
  });

  it("addresses tuned models by their own resource name", async () => {
    upstream.reply = sseReply(GEMINI_TEXT);
    await collect(adapter, chatInput({ model: "tunedModels/my-model-7" }));
    expect(upstream.requests[0]!.url).toBe("/v1beta/tunedModels/my-model-7:streamGenerateContent?alt=sse");
  });
});

describe("Gemini adapter: failures", () => {
  it("fails STREAM_BROKEN when the stream ends without a finishReason", async () => {
    upstream.reply = sseReply(GEMINI_NO_FINISH);
    const { events, failure } = await collectFailure(adapter, chatInput());
    expect(textOf(events)).toBe(ANSWER);
    expect([failure.kind, failure.message]).toEqual([ErrorKind.STREAM_BROKEN, "gem: the stream ended without a finishReason"]);
  });

  it("fails AUTH on Google's 400 API_KEY_INVALID, without the body that quotes the key", async () => {
    upstream.reply = bodyReply(400, "application/json; charset=UTF-8", GEMINI_BAD_KEY);
    const { failure } = await collectFailure(adapter, chatInput());
    expect([failure.kind, failure.upstreamStatus, failure.message]).toEqual([ErrorKind.AUTH, 400, "gem: the provider rejected our credentials (HTTP 400)"]);
  });

  it("fails RATE_LIMITED on 429 RESOURCE_EXHAUSTED with Retry-After", async () => {
    upstream.reply = bodyReply(429, "application/json", '{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}', { "retry-after": "3" });
    const { failure } = await collectFailure(adapter, chatInput());
    expect([failure.kind, failure.retryAfterMs, failure.message]).toEqual([ErrorKind.RATE_LIMITED, 3_000, "gem: HTTP 429: Resource has been exhausted (e.g. check quota)."]);
  });

  it("fails UNKNOWN_MODEL on 404 NOT_FOUND", async () => {
    upstream.reply = bodyReply(404, "application/json", '{"error":{"code":404,"message":"models/nope is not found for API version v1beta","status":"NOT_FOUND"}}');
    const { failure } = await collectFailure(adapter, chatInput({ model: "nope" }));
    expect(failure.kind).toBe(ErrorKind.UNKNOWN_MODEL);
  });

  it("fails OVERLOADED on an HTML 502", async () => {
    upstream.reply = bodyReply(502, "text/html; charset=UTF-8", HTML_502);
    const { failure } = await collectFailure(adapter, chatInput());
    expect([failure.kind, failure.message]).toEqual([ErrorKind.OVERLOADED, "gem: HTTP 502 with an HTML page (a proxy answered, not the API)"]);
  });

  it("types an error chunk before any text by its status", async () => {
    upstream.reply = sseReply('data: {"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}\r\n\r\n');
    const { failure } = await collectFailure(adapter, chatInput());
    expect([failure.kind, failure.message]).toEqual([ErrorKind.OVERLOADED, "gem: the provider reported an error before answering: The model is overloaded. Please try again later."]);
  });
});
