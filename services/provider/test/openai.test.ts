import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { countTokens } from "@switchyard/usage";
import { OpenAiAdapter } from "../src/adapters/openai.js";
import { ErrorKind } from "../src/adapters/types.js";
import { freePort } from "./ports.js";
import { bodyReply, cutReply, silentReply, sseReply, startFakeUpstream, trickleReply, type FakeUpstream } from "./fake-upstream.js";
import { ANSWER, HTML_502, KEY, OPENAI_TEXT, OPENAI_TEXT_NO_DONE, OPENAI_TEXT_NO_USAGE, OPENAI_TOOL_CALLS } from "./fixtures.js";
import { chatInput, collect, collectFailure, finishOf, textOf, toolCallsOf } from "./helpers.js";

let upstream: FakeUpstream;
let adapter: OpenAiAdapter;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  adapter = new OpenAiAdapter({ name: "oa", baseUrl: `${upstream.url}/v1`, apiKey: KEY });
});
afterEach(() => {
  upstream.requests.length = 0;
});
afterAll(async () => {
  adapter.close();
  await upstream.close();
});

describe("OpenAI adapter: streams", () => {
  it("streams the text and takes usage from the final chunk with empty choices", async () => {
    upstream.reply = sseReply(OPENAI_TEXT);
    const events = await collect(adapter, chatInput({ temperature: 0.2, topP: 0.9, maxTokens: 64, stop: ["\n\n"], seed: 7n }));
    expect(textOf(events)).toBe(ANSWER);
    expect(finishOf(events)).toEqual({
      type: "finish",
      finishReason: "stop",
      responseModel: "gpt-4o-mini-2024-07-18",
      usage: { inputTokens: 19, outputTokens: 10, cachedInputTokens: 6, cacheWriteInputTokens: 0, reasoningTokens: 2, estimated: false },
    });
    const req = upstream.requests[0]!;
    expect(req.url).toBe("/v1/chat/completions");
    expect(req.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(req.json).toEqual({
      model: "test-model",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Say hello." },
      ],
      stream: true,
      stream_options: { include_usage: true },
      temperature: 0.2,
      top_p: 0.9,
      max_tokens: 64,
      stop: ["\n\n"],
      seed: 7,
    });
  });

  it("keeps events and multi-byte characters intact when every byte arrives in its own TCP write", async () => {
    upstream.reply = trickleReply(OPENAI_TEXT);
    const events = await collect(adapter, chatInput());
    expect(textOf(events)).toBe(ANSWER);
    expect(finishOf(events).usage.inputTokens).toBe(19);
  });

  it("counts usage with the tokenizer, marked estimated, when the server sends none", async () => {
    upstream.reply = sseReply(OPENAI_TEXT_NO_USAGE);
    const events = await collect(adapter, chatInput());
    expect(textOf(events)).toBe(ANSWER);
    const usage = finishOf(events).usage;
    expect(usage.estimated).toBe(true);
    expect(usage.outputTokens).toBe(countTokens(ANSWER));
    expect(usage.inputTokens).toBeGreaterThan(countTokens("Be brief.Say hello."));
  });

  it("turns tool-call fragments into ToolCallDelta events and finishes with tool_calls", async () => {
    upstream.reply = sseReply(OPENAI_TOOL_CALLS);
    const events = await collect(adapter, chatInput());
    expect(toolCallsOf(events)).toEqual([
      { id: "call_DdmO9pD3xa9XTPNJ32zg2hcA", name: "get_weather", arguments: '{"location":"Paris"}' },
      { id: "call_2", name: "get_time", arguments: "{}" },
    ]);
    const fragments = events.filter((e) => e.type === "tool_call");
    expect(fragments.slice(1, 3).every((e) => e.type === "tool_call" && e.id === "" && e.name === "")).toBe(true);
    expect(finishOf(events).finishReason).toBe("tool_calls");
    expect(finishOf(events).usage).toMatchObject({ inputTokens: 81, outputTokens: 28 });
  });

  it("sends tools, tool choice and a conversation with tool calls and results in OpenAI's shape", async () => {
    upstream.reply = sseReply(OPENAI_TEXT);
    await collect(
      adapter,
      chatInput({
        messages: [
          { role: "user", content: "Weather in Paris?" },
          { role: "assistant", content: "", toolCalls: [{ id: "call_1", name: "get_weather", argumentsJson: '{"location":"Paris"}' }] },
          { role: "tool", content: '{"temp_c":21}', toolCallId: "call_1" },
        ],
        tools: [{ name: "get_weather", description: "Current weather", parameters: { type: "object", properties: { location: { type: "string" } }, required: ["location"] } }],
        toolChoice: { mode: "tool", name: "get_weather" },
      }),
    );
    const body = upstream.requests[0]!.json!;
    expect(body.messages).toEqual([
      { role: "user", content: "Weather in Paris?" },
      { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"location":"Paris"}' } }] },
      { role: "tool", content: '{"temp_c":21}', tool_call_id: "call_1" },
    ]);
    expect(body.tools).toEqual([
      {
        type: "function",
        function: { name: "get_weather", description: "Current weather", parameters: { type: "object", properties: { location: { type: "string" } }, required: ["location"] } },
      },
    ]);
    expect(body.tool_choice).toEqual({ type: "function", function: { name: "get_weather" } });
  });
});

describe("OpenAI adapter: failures", () => {
  it("fails STREAM_BROKEN when the stream ends without [DONE], after the text went out", async () => {
    upstream.reply = sseReply(OPENAI_TEXT_NO_DONE);
    const { events, failure } = await collectFailure(adapter, chatInput());
    expect(textOf(events)).toBe(ANSWER);
    expect(failure.kind).toBe(ErrorKind.STREAM_BROKEN);
    expect(failure.message).toContain("[DONE]");
  });

  it("fails AUTH on 401 without a word of the body, which quotes the key", async () => {
    upstream.reply = bodyReply(
      401,
      "application/json",
      JSON.stringify({ error: { message: `Incorrect API key provided: ${KEY}. You can find your API key at https://platform.openai.com/account/api-keys.`, type: "invalid_request_error", param: null, code: "invalid_api_key" } }),
    );
    const { failure } = await collectFailure(adapter, chatInput());
    expect(failure.kind).toBe(ErrorKind.AUTH);
    expect(failure.upstreamStatus).toBe(401);
    expect(failure.message).toBe("oa: the provider rejected our credentials (HTTP 401)");
  });

  it("fails BAD_REQUEST on 400 with the upstream message, the key and URLs redacted", async () => {
    upstream.reply = bodyReply(400, "application/json", JSON.stringify({ error: { message: `Invalid 'messages': key ${KEY} see https://example.com/x?key=${KEY}`, type: "invalid_request_error", code: null } }));
    const { failure } = await collectFailure(adapter, chatInput());
    expect(failure.kind).toBe(ErrorKind.BAD_REQUEST);
    expect(failure.message).toBe("oa: HTTP 400: Invalid 'messages': key [redacted] see [redacted]");
    expect(JSON.stringify(failure)).not.toContain(KEY);
  });

  it("fails OVERLOADED on an HTML 502 from a proxy, without the page", async () => {
    upstream.reply = bodyReply(502, "text/html", HTML_502);
    const { failure } = await collectFailure(adapter, chatInput());
    expect(failure.kind).toBe(ErrorKind.OVERLOADED);
    expect(failure.upstreamStatus).toBe(502);
    expect(failure.message).toBe("oa: HTTP 502 with an HTML page (a proxy answered, not the API)");
  });

  it("fails RATE_LIMITED on 429 and carries Retry-After (seconds) or retry-after-ms", async () => {
    upstream.reply = bodyReply(429, "application/json", JSON.stringify({ error: { message: "Rate limit reached", type: "requests", code: "rate_limit_exceeded" } }), { "retry-after": "7" });
    let { failure } = await collectFailure(adapter, chatInput());
    expect([failure.kind, failure.retryAfterMs]).toEqual([ErrorKind.RATE_LIMITED, 7_000]);
    upstream.reply = bodyReply(429, "application/json", "{}", { "retry-after-ms": "1250", "retry-after": "2" });
    ({ failure } = await collectFailure(adapter, chatInput()));
    expect([failure.kind, failure.retryAfterMs]).toEqual([ErrorKind.RATE_LIMITED, 1_250]);
  });

  it("fails on HTTP 200 carrying a JSON error body, typed by its code", async () => {
    upstream.reply = bodyReply(200, "application/json", JSON.stringify({ error: { message: "The server is overloaded", type: "server_error", code: null } }));
    const { failure } = await collectFailure(adapter, chatInput());
    expect(failure.kind).toBe(ErrorKind.OVERLOADED);
    expect(failure.message).toBe("oa: HTTP 200 carrying an error: The server is overloaded");
  });

  it("fails MALFORMED on HTTP 200 carrying an HTML page", async () => {
    upstream.reply = bodyReply(200, "text/html; charset=utf-8", "<!doctype html><title>Login</title>");
    const { failure } = await collectFailure(adapter, chatInput());
    expect(failure.kind).toBe(ErrorKind.MALFORMED);
    expect(failure.message).toBe("oa: expected an event stream, got an HTML page");
  });

  it("fails MALFORMED on an event that is not JSON", async () => {
    upstream.reply = sseReply(`${OPENAI_TEXT.split("\n\n")[1]}\n\ndata: {"choices":[{"delta":\n\n`);
    const { events, failure } = await collectFailure(adapter, chatInput());
    expect(textOf(events)).toBe("Grüße — ");
    expect(failure.kind).toBe(ErrorKind.MALFORMED);
  });

  it("types an error event before any token by its code (retryable) and after one as a broken stream", async () => {
    const errorEvent = `data: {"error":{"message":"Rate limit for ${KEY}","type":"rate_limit_exceeded","code":"rate_limit_exceeded"}}\n\n`;
    upstream.reply = sseReply(errorEvent);
    let { failure } = await collectFailure(adapter, chatInput());
    expect(failure.kind).toBe(ErrorKind.RATE_LIMITED);
    expect(failure.message).not.toContain(KEY);
    upstream.reply = sseReply(`${OPENAI_TEXT.split("\n\n")[1]}\n\n${errorEvent}`);
    ({ failure } = await collectFailure(adapter, chatInput()));
    expect(failure.kind).toBe(ErrorKind.STREAM_BROKEN);
    expect(failure.message).toBe("oa: the provider reported an error mid-stream: Rate limit for [redacted]");
  });

  it("fails STREAM_BROKEN when the connection is cut mid-stream", async () => {
    upstream.reply = cutReply(OPENAI_TEXT.slice(0, OPENAI_TEXT.indexOf("你好")));
    const { events, failure } = await collectFailure(adapter, chatInput());
    expect(textOf(events)).toBe("Grüße — ");
    expect(failure.kind).toBe(ErrorKind.STREAM_BROKEN);
  });

  it("fails STREAM_BROKEN when a started stream goes quiet past the idle timeout", async () => {
    upstream.reply = silentReply(2_000, `${OPENAI_TEXT.split("\n\n")[1]}\n\n`);
    const impatient = new OpenAiAdapter({ name: "oa", baseUrl: `${upstream.url}/v1`, apiKey: KEY, idleTimeoutMs: 300 });
    const started = performance.now();
    const { events, failure } = await collectFailure(impatient, chatInput());
    impatient.close();
    expect(textOf(events)).toBe("Grüße — ");
    expect(failure.kind).toBe(ErrorKind.STREAM_BROKEN);
    expect(failure.message).toContain("sent nothing for 300 ms");
    expect(performance.now() - started).toBeLessThan(1_500);
  });

  it("fails CONNECTION when nothing listens", async () => {
    const port = await freePort();
    const dead = new OpenAiAdapter({ name: "dead", baseUrl: `http://127.0.0.1:${port}/v1`, apiKey: KEY });
    const { failure } = await collectFailure(dead, chatInput());
    dead.close();
    expect(failure.kind).toBe(ErrorKind.CONNECTION);
    expect(failure.message).toBe("dead: cannot connect to the provider (ECONNREFUSED)");
  });

  it("returns the cancellation reason when the caller aborts", async () => {
    upstream.reply = silentReply(2_000);
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("not a ProviderFailure")), 50);
    const { failure } = await collectFailure(adapter, chatInput(), controller.signal);
    expect(failure.kind).toBe(ErrorKind.TIMEOUT);
  });
});
