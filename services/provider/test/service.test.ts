import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { parseConfig } from "@switchyard/config";
import { provider as pb } from "@switchyard/proto";
import { createRpcServer, createServiceClient, HealthStatus, type RpcServer, type ServiceClient } from "@switchyard/rpc";
import { createLogger } from "@switchyard/telemetry";
import { ProviderHandler, type RunningProvider } from "../src/handler.js";
import { HealthTracker } from "../src/health.js";
import { startProviders } from "../src/providers.js";
import { RetryAfter } from "../src/retry-after.js";
import { bodyReply, cutReply, lingerReply, silentReply, sseReply, startFakeUpstream, type FakeUpstream } from "./fake-upstream.js";
import { ANSWER, ANTHROPIC_TEXT, GEMINI_TEXT, KEY, OPENAI_TEXT, OPENAI_TOOL_CALLS } from "./fixtures.js";

/**
 * The ProviderService as the gateway sees it: a real Connect server on a free port, a real client
 * over HTTP/2, the real adapters against local upstreams.
 */
let oa: FakeUpstream;
let an: FakeUpstream;
let gm: FakeUpstream;
let server: RpcServer;
let rpc: ServiceClient<typeof pb.ProviderService>;
let client: Client<typeof pb.ProviderService>;
let providers: Map<string, RunningProvider>;
let tracker: HealthTracker;
const logLines: string[] = [];

const model = (name: string) => ({ name, input_usd_per_mtok: 1, output_usd_per_mtok: 2, tiers: ["standard"] });

beforeAll(async () => {
  [oa, an, gm] = await Promise.all([startFakeUpstream(), startFakeUpstream(), startFakeUpstream()]);
  const common = { enabled: true, warm_connections: 1, keep_warm_interval_ms: 0, first_token_timeout_ms: 2_000 };
  const config = parseConfig(
    JSON.stringify({
      providers: [
        { ...common, name: "oa", kind: "openai", base_url: `${oa.url}/v1`, api_key_env: "OA_KEY", models: [model("gpt-x")] },
        { ...common, name: "an", kind: "anthropic", base_url: `${an.url}/v1`, api_key_env: "AN_KEY", models: [model("claude-x")] },
        { ...common, name: "gm", kind: "gemini", base_url: `${gm.url}/v1beta`, api_key_env: "GM_KEY", models: [model("gemini-x")] },
        { ...common, name: "paced", kind: "openai", base_url: `${oa.url}/v1`, requests_per_second: 1, burst: 1, models: [model("gpt-x")] },
        { ...common, name: "narrow", kind: "openai", base_url: `${oa.url}/v1`, max_concurrency: 1, max_queue: 0, models: [model("gpt-x")] },
      ],
      tiers: [{ name: "standard", max_difficulty: 1 }],
      nats: { enabled: false },
    }),
  );
  const logger = createLogger({ service: "provider", level: "debug", write: (line) => logLines.push(line) });
  providers = startProviders(config, { OA_KEY: KEY, AN_KEY: KEY, GM_KEY: KEY }, logger);
  tracker = new HealthTracker();
  server = createRpcServer({
    name: "provider",
    host: "127.0.0.1",
    port: 0,
    routes: (router) => router.service(pb.ProviderService, new ProviderHandler(providers, tracker, logger)),
    health: new HealthStatus([pb.ProviderService.typeName]),
    logger,
  });
  const { port } = await server.listen();
  rpc = createServiceClient(pb.ProviderService, `http://127.0.0.1:${port}`);
  client = rpc.client;
});

afterAll(async () => {
  rpc.close();
  await server.close(100);
  for (const p of providers.values()) p.adapter.close?.();
  await Promise.all([oa.close(), an.close(), gm.close()]);
});

beforeEach(() => {
  for (const u of [oa, an, gm]) u.requests.length = 0;
  // Every test starts with no retry-after wait left over from an earlier one.
  for (const p of providers.values()) p.retryAfter = new RetryAfter();
});

type RequestFields = Omit<Exclude<MessageInitShape<typeof pb.StreamGenerateRequestSchema>, pb.StreamGenerateRequest>, "$typeName" | "provider" | "model">;
const ask = (provider: string, modelName: string, extra: RequestFields = {}) =>
  client.streamGenerate({ provider, model: modelName, messages: [{ role: "user", content: "Say hello." }], requestId: "req-1", ...extra });

/** The responses before the stream ended, and the error it ended with (if any). */
async function drain(stream: AsyncIterable<pb.StreamGenerateResponse>): Promise<{ responses: pb.StreamGenerateResponse[]; error?: ConnectError }> {
  const responses: pb.StreamGenerateResponse[] = [];
  try {
    for await (const r of stream) responses.push(r);
  } catch (err) {
    return { responses, error: ConnectError.from(err) };
  }
  return { responses };
}

const textOf = (rs: pb.StreamGenerateResponse[]) => rs.map((r) => (r.event.case === "delta" ? r.event.value.text : "")).join("");
const finishOf = (rs: pb.StreamGenerateResponse[]) => {
  const last = rs[rs.length - 1];
  expect(last?.event.case).toBe("finish");
  return last!.event.value as pb.Finish;
};
const detailOf = (err: ConnectError) => {
  const [detail] = err.findDetails(pb.ProviderErrorSchema);
  expect(detail).toBeDefined();
  return detail!;
};

describe("ProviderService over Connect", () => {
  it.each([
    ["oa", "gpt-x", () => (oa.reply = sseReply(OPENAI_TEXT)), { inputTokens: 19n, outputTokens: 10n, cachedInputTokens: 6n, reasoningTokens: 2n }, "gpt-4o-mini-2024-07-18"],
    ["an", "claude-x", () => (an.reply = sseReply(ANTHROPIC_TEXT)), { inputTokens: 25n, outputTokens: 15n, cachedInputTokens: 0n, reasoningTokens: 0n }, "claude-sonnet-4-5-20250929"],
    ["gm", "gemini-x", () => (gm.reply = sseReply(GEMINI_TEXT)), { inputTokens: 11n, outputTokens: 9n, cachedInputTokens: 0n, reasoningTokens: 0n }, "gemini-2.0-flash"],
  ] as const)("streams %s's exact text and usage", async (provider, modelName, arrange, usage, responseModel) => {
    arrange();
    const { responses, error } = await drain(ask(provider, modelName));
    expect(error).toBeUndefined();
    expect(textOf(responses)).toBe(ANSWER);
    const finish = finishOf(responses);
    expect(finish.finishReason).toBe("stop");
    expect(finish.responseModel).toBe(responseModel);
    expect(finish.usage).toMatchObject({ ...usage, estimated: false });
  });

  it("passes tools and a tool-call conversation to the upstream and relays ToolCallDelta messages", async () => {
    oa.reply = sseReply(OPENAI_TOOL_CALLS);
    const { responses } = await drain(
      ask("oa", "gpt-x", {
        tools: [{ name: "get_weather", description: "Weather", parametersJson: '{"type":"object","properties":{"location":{"type":"string"}}}' }],
        toolChoice: { mode: pb.ToolChoiceMode.AUTO },
        conversation: [
          { role: "user", content: "Weather?" },
          { role: "assistant", toolCalls: [{ id: "call_0", name: "get_weather", argumentsJson: '{"location":"Oslo"}' }] },
          { role: "tool", toolCallId: "call_0", content: "-3 °C" },
        ],
      }),
    );
    const sent = oa.requests[0]!.json!;
    expect(sent.tool_choice).toBe("auto");
    expect((sent.tools as unknown[]).length).toBe(1);
    expect((sent.messages as unknown[]).length).toBe(3);
    const calls = responses.filter((r) => r.event.case === "toolCall").map((r) => r.event.value as pb.ToolCallDelta);
    expect(calls[0]).toMatchObject({ index: 0, id: "call_DdmO9pD3xa9XTPNJ32zg2hcA", name: "get_weather", arguments: "" });
    expect(calls.filter((c) => c.index === 0).map((c) => c.arguments).join("")).toBe('{"location":"Paris"}');
    expect(finishOf(responses).finishReason).toBe("tool_calls");
  });

  it("fails before any message with a retryable TIMEOUT when no token comes within first_token_timeout_ms", async () => {
    gm.reply = silentReply(3_000);
    const started = performance.now();
    const { responses, error } = await drain(ask("gm", "gemini-x", { firstTokenTimeoutMs: 250 }));
    expect(performance.now() - started).toBeLessThan(1_500);
    expect(responses).toEqual([]);
    expect(error?.code).toBe(Code.DeadlineExceeded);
    expect(detailOf(error!)).toMatchObject({ kind: pb.ErrorKind.TIMEOUT, retryable: true });
  });

  it("never lets the key out: a 401 that quotes it is Unauthenticated with a clean message, details and logs", async () => {
    an.reply = bodyReply(401, "application/json", `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key: ${KEY}"}}`);
    const { error } = await drain(ask("an", "claude-x"));
    expect(error?.code).toBe(Code.Unauthenticated);
    expect(error?.rawMessage).toBe("an: the provider rejected our credentials (HTTP 401)");
    expect(detailOf(error!)).toMatchObject({ kind: pb.ErrorKind.AUTH, upstreamStatus: 401 });
    oa.reply = bodyReply(400, "application/json", JSON.stringify({ error: { message: `bad request for key ${KEY}`, type: "invalid_request_error" } }));
    const second = await drain(ask("oa", "gpt-x"));
    expect(second.error?.code).toBe(Code.InvalidArgument);
    expect(detailOf(second.error!).retryable).toBe(false);
    for (const e of [error!, second.error!]) {
      expect(e.message).not.toContain(KEY);
      expect(JSON.stringify(e.details, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v instanceof Uint8Array ? Buffer.from(v).toString("latin1") : v))).not.toContain(KEY);
    }
    expect(logLines.join("\n")).not.toContain(KEY);
  });

  it("reports 429 as ResourceExhausted carrying Retry-After", async () => {
    oa.reply = bodyReply(429, "application/json", '{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}', { "retry-after": "20" });
    const { error } = await drain(ask("oa", "gpt-x"));
    expect(error?.code).toBe(Code.ResourceExhausted);
    expect(detailOf(error!)).toMatchObject({ kind: pb.ErrorKind.RATE_LIMITED, retryAfterMs: 20_000n, retryable: true, upstreamStatus: 429 });
  });

  it("honours retry-after: no call reaches the upstream until it has passed, each fails at once for the gateway to fall back", async () => {
    oa.reply = bodyReply(429, "application/json", '{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}', { "retry-after-ms": "400" });
    expect((await drain(ask("oa", "gpt-x"))).error?.code).toBe(Code.ResourceExhausted);
    expect(oa.requests).toHaveLength(1);
    oa.reply = sseReply(OPENAI_TEXT);
    const started = performance.now();
    const refused = await drain(ask("oa", "gpt-x"));
    expect(performance.now() - started).toBeLessThan(200);
    expect(refused.error?.code).toBe(Code.ResourceExhausted);
    expect(detailOf(refused.error!)).toMatchObject({ kind: pb.ErrorKind.RATE_LIMITED, retryable: true, upstreamStatus: 429 });
    expect(Number(detailOf(refused.error!).retryAfterMs)).toBeGreaterThan(0);
    expect(oa.requests).toHaveLength(1);
    // Other providers on the same origin keep their own account with the upstream.
    expect((await drain(ask("narrow", "gpt-x"))).error).toBeUndefined();
    expect(oa.requests).toHaveLength(2);
    await new Promise((r) => setTimeout(r, 450));
    const after = await drain(ask("oa", "gpt-x"));
    expect(after.error).toBeUndefined();
    expect(textOf(after.responses)).toBe(ANSWER);
    expect(oa.requests).toHaveLength(3);
  });

  it("sends the deltas it has, then Aborted, when the upstream connection breaks mid-stream", async () => {
    oa.reply = cutReply(OPENAI_TEXT.slice(0, OPENAI_TEXT.indexOf("你好")));
    const { responses, error } = await drain(ask("oa", "gpt-x"));
    expect(textOf(responses)).toBe("Grüße — ");
    expect(error?.code).toBe(Code.Aborted);
    expect(detailOf(error!).kind).toBe(pb.ErrorKind.STREAM_BROKEN);
  });

  it("rejects a tool schema that is not JSON as InvalidArgument, not retryable, without calling the upstream", async () => {
    const { error } = await drain(ask("oa", "gpt-x", { tools: [{ name: "f", description: "", parametersJson: "{nope" }] }));
    expect(error?.code).toBe(Code.InvalidArgument);
    expect(error?.rawMessage).toBe('the parameters of tool "f" are not valid JSON');
    expect(detailOf(error!).retryable).toBe(false);
    expect(oa.requests).toHaveLength(0);
  });

  it("answers NotFound for an unknown provider or model", async () => {
    expect((await drain(ask("nope", "gpt-x"))).error?.code).toBe(Code.NotFound);
    expect((await drain(ask("oa", "nope"))).error?.code).toBe(Code.NotFound);
  });

  it("fails at once with CAPACITY when the rate limit's next slot comes after the deadline, and waits when it comes before", async () => {
    oa.reply = sseReply(OPENAI_TEXT);
    expect((await drain(ask("paced", "gpt-x"))).error).toBeUndefined();
    let started = performance.now();
    const refused = await drain(ask("paced", "gpt-x", { firstTokenTimeoutMs: 300 }));
    expect(performance.now() - started).toBeLessThan(200);
    expect(refused.error?.code).toBe(Code.ResourceExhausted);
    expect(detailOf(refused.error!)).toMatchObject({ kind: pb.ErrorKind.CAPACITY, retryable: true });
    started = performance.now();
    const waited = await drain(ask("paced", "gpt-x", { firstTokenTimeoutMs: 3_000 }));
    expect(waited.error).toBeUndefined();
    expect(performance.now() - started).toBeGreaterThan(500);
  });

  it("fails with CAPACITY when max_concurrency is taken and the queue is full", async () => {
    oa.reply = silentReply(600, `${OPENAI_TEXT.split("\n\n")[1]}\n\n`);
    const first = drain(ask("narrow", "gpt-x"));
    await new Promise((r) => setTimeout(r, 100));
    const second = await drain(ask("narrow", "gpt-x"));
    expect(detailOf(second.error!).kind).toBe(pb.ErrorKind.CAPACITY);
    await first;
  });

  it("counts an answer whose caller stops reading at the finish event as a success, and keeps its connection", async () => {
    an.reply = bodyReply(529, "application/json", '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}');
    await drain(ask("an", "claude-x"));
    const failed = (await client.getHealth({})).models.find((m) => m.provider === "an")!;
    expect(failed.consecutiveFailures).toBeGreaterThan(0);
    // The upstream ends its response 100 ms after message_stop: the caller is gone by then.
    an.reply = lingerReply(ANTHROPIC_TEXT, 100);
    const stopAtFinish = async () => {
      for await (const r of ask("an", "claude-x")) if (r.event.case === "finish") break;
    };
    await stopAtFinish();
    await new Promise((r) => setTimeout(r, 300));
    const connections = an.connections;
    await stopAtFinish();
    expect(an.connections).toBe(connections);
    const after = (await client.getHealth({})).models.find((m) => m.provider === "an")!;
    expect(after.consecutiveFailures).toBe(0);
    expect(after.errorRate).toBeLessThan(failed.errorRate);
    expect(after.inFlight).toBe(0);
  });

  it("reports health per model: requests, error rate, EWMA TTFT and total, nothing in flight", async () => {
    const before = (await client.getHealth({})).models.find((m) => m.provider === "an");
    an.reply = bodyReply(529, "application/json", '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}');
    await drain(ask("an", "claude-x"));
    an.reply = sseReply(ANTHROPIC_TEXT);
    await drain(ask("an", "claude-x"));
    const after = (await client.getHealth({})).models.find((m) => m.provider === "an" && m.model === "claude-x")!;
    expect(after.requests).toBe((before?.requests ?? 0n) + 2n);
    expect(after.inFlight).toBe(0);
    expect(after.consecutiveFailures).toBe(0);
    expect(after.ewmaTtftMs).toBeGreaterThan(0);
    expect(after.ewmaTotalMs).toBeGreaterThanOrEqual(after.ewmaTtftMs);
    expect(after.errorRate).toBeGreaterThan(0); // the 529 counted against it, the success pulled it down
    expect(after.errorRate).toBeLessThan(1);
  });
});
