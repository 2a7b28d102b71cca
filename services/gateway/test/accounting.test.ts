import { createHash } from "node:crypto";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CHAT, envelope, JSON_HEADERS, startTestApi, type TestApi } from "./http-harness.js";

const CANARY = "sk-canary-7d1c0ffee0ddba11";

// A recording tracer: every span's attributes, events and links are searched for the canary.
const exporter = new InMemorySpanExporter();
new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).register();
const sha = (k: string) => createHash("sha256").update(k).digest("hex");

/** Waits until the (fake) ledger holds a record for the request. */
async function recordOf(api: TestApi, requestId: string) {
  for (let i = 0; i < 100; i++) {
    const r = api.records.find((x) => x.requestId === requestId);
    if (r) return r;
    await new Promise((res) => setTimeout(res, 20));
  }
  throw new Error(`no usage record for ${requestId}`);
}

describe("the books: one usage record per request", () => {
  let api: TestApi;
  beforeAll(
    async () =>
      (api = await startTestApi({
        tenants: [{ name: "team-a", api_key_sha256: [sha(CANARY)], requests_per_minute: 4, baseline_model: "sim/sim-large" }],
      })),
  );
  afterAll(() => api.close());
  const auth = { ...JSON_HEADERS, authorization: `Bearer ${CANARY}` };

  it("records a completion with its route, tokens, cost, baseline and saving", async () => {
    const res = await api.send({ body: CHAT, headers: auth });
    expect(res.status).toBe(200);
    const body = res.json();
    const record = await recordOf(api, res.headers["x-switchyard-request-id"] as string);
    expect(record).toMatchObject({
      tenant: "team-a",
      keyId: sha(CANARY).slice(0, 12),
      api: "openai",
      requestedModel: "switchyard/auto",
      model: "sim/a",
      tier: "standard",
      cache: "bypass",
      inputTokens: 10n,
      outputTokens: 2n,
      status: 200,
      errorCode: "",
      streamed: false,
      finishReason: "stop",
      baselineModel: "sim/sim-large",
    });
    // The fake route costs $1 / $2 per million: 10 x 1 + 2 x 2 = 14 micro-dollars.
    expect(record.costMicroUsd).toBe(14n);
    expect(record.baselineMicroUsd).toBeGreaterThan(record.costMicroUsd);
    expect(record.savedMicroUsd).toBe(record.baselineMicroUsd - record.costMicroUsd);
    expect(record.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(record.totalMs).toBeGreaterThan(0);
    // The client sees the same figures.
    expect(body.switchyard).toMatchObject({ baseline_model: "sim/sim-large", cost_usd: "0.000014" });
    expect(Number(body.switchyard.saved_vs_baseline_usd)).toBeCloseTo(Number(record.savedMicroUsd) / 1e6, 6);
  });

  it("records a streamed completion with its time to first token", async () => {
    const res = await api.send({ body: { ...CHAT, stream: true }, headers: auth });
    expect(res.status).toBe(200);
    const record = await recordOf(api, res.headers["x-switchyard-request-id"] as string);
    expect(record.streamed).toBe(true);
    expect(record.ttftMs).toBeGreaterThan(0);
    expect(record.ttftMs).toBeLessThanOrEqual(record.totalMs);
  });

  it("records a refused request with its status and code, and refuses past the rate limit with 429 and retry-after", async () => {
    const bad = await api.send({ body: { ...CHAT, temperature: 7 }, headers: auth });
    expect(bad.status).toBe(400);
    expect((await recordOf(api, bad.headers["x-switchyard-request-id"] as string)).status).toBe(400);
    // 4 per minute: two answered above, one refused as a bad request (it did not pass admission).
    const third = await api.send({ body: CHAT, headers: auth });
    expect(third.status).toBe(200);
    const fourth = await api.send({ body: CHAT, headers: auth });
    expect(fourth.status).toBe(200);
    const over = await api.send({ body: CHAT, headers: auth });
    expect(over.status).toBe(429);
    expect(envelope(over)).toMatchObject({ type: "rate_limit_error", code: "rate_limited" });
    expect(envelope(over).message).toContain("requests per minute");
    expect(Number(over.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    const record = await recordOf(api, over.headers["x-switchyard-request-id"] as string);
    expect(record).toMatchObject({ status: 429, errorCode: "rate_limited", costMicroUsd: 0n, model: "" });
  });

  it("never writes the key itself into a log line, a record, a span or an error", async () => {
    // An error answered to the holder of the key (over its rate limit by now) does not echo it either.
    const refused = await api.send({ body: CHAT, headers: auth });
    expect(refused.status).toBe(429);
    await recordOf(api, refused.headers["x-switchyard-request-id"] as string);
    expect(refused.text).not.toContain(CANARY);
    expect(JSON.stringify(refused.headers)).not.toContain(CANARY);
    expect(api.rawLogs.join("\n")).not.toContain(CANARY);
    const asText = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? String(x) : x));
    for (const r of api.records) expect(asText(r)).not.toContain(CANARY);
    const spans = exporter.getFinishedSpans();
    expect(spans.length).toBeGreaterThan(0);
    for (const span of spans) expect(asText({ name: span.name, attributes: span.attributes, events: span.events, links: span.links })).not.toContain(CANARY);
  });

  it("puts a request with an unknown key on no one's books", async () => {
    const before = api.records.length;
    const res = await api.send({ body: CHAT, headers: { ...JSON_HEADERS, authorization: "Bearer sk-nobody" } });
    expect(res.status).toBe(401);
    await new Promise((r) => setTimeout(r, 100));
    expect(api.records.length).toBe(before);
  });
});

describe("budgets at the edge", () => {
  let api: TestApi;
  beforeAll(async () => (api = await startTestApi({ tenants: [{ name: "default", budget_usd: 0.00002, budget_period: "day" }] })));
  afterAll(() => api.close());

  it("answers until the budget is spent, then 429 budget_exceeded with the time it renews", async () => {
    // 14 micro-dollars per answer against a budget of 20: the second answer overshoots, the third is refused.
    const statuses: number[] = [];
    let last;
    for (let i = 0; i < 3; i++) {
      last = await api.send({ body: { ...CHAT, max_tokens: 1 }, headers: JSON_HEADERS });
      statuses.push(last.status);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(statuses).toEqual([200, 200, 429]);
    expect(envelope(last!)).toMatchObject({ type: "rate_limit_error", code: "budget_exceeded" });
    expect(envelope(last!).message).toMatch(/daily budget of tenant "default" is used up .* renews at \d{4}-\d{2}-\d{2}T00:00:00\.000Z/);
    const retry = Number(last!.headers["retry-after"]);
    expect(retry).toBeGreaterThan(0);
    expect(retry).toBeLessThanOrEqual(86_400);
  });
});
