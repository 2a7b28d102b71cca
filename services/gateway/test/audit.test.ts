import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { CHAT, envelope, JSON_HEADERS, startTestApi, type TestApi } from "./http-harness.js";

const KEY = "sk-test-audit-5f1e2d3c4b5a6978";
const OTHER_KEY = "sk-test-audit-other-0000000000";
const sha = (k: string) => createHash("sha256").update(k).digest("hex");

// A recording tracer, so spans, parents and links can be checked.
const exporter = new InMemorySpanExporter();
new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).register();

describe("API keys and the audit line", () => {
  let api: TestApi;
  beforeAll(async () => (api = await startTestApi({ tenants: [{ name: "team-a", api_key_sha256: [sha(KEY)] }, { name: "team-b", api_key_sha256: [sha(OTHER_KEY)] }] })));
  afterAll(() => api.close());

  const requestLines = () => api.logs.filter((l) => l.msg === "request");

  it("logs tenant and key_id for a request with a valid key, never the key", async () => {
    const res = await api.send({ body: CHAT, headers: { ...JSON_HEADERS, authorization: `Bearer ${KEY}` } });
    expect(res.status).toBe(200);
    const line = requestLines().find((l) => l.request_id === res.headers["x-switchyard-request-id"])!;
    expect(line).toMatchObject({ tenant: "team-a", key_id: sha(KEY).slice(0, 12), status: 200, path: "/v1/chat/completions" });
    expect(line.key_id).toMatch(/^[0-9a-f]{12}$/);
    const models = await api.send({ path: "/v1/models", headers: { authorization: `Bearer ${OTHER_KEY}` } });
    expect(models.status).toBe(200);
    expect(requestLines().find((l) => l.request_id === models.headers["x-switchyard-request-id"])).toMatchObject({ tenant: "team-b", key_id: sha(OTHER_KEY).slice(0, 12) });
    for (const raw of api.rawLogs) {
      expect(raw).not.toContain(KEY);
      expect(raw).not.toContain(OTHER_KEY);
      expect(raw).not.toContain(sha(KEY)); // the whole hash is what the config holds: only its prefix is logged
    }
  });

  it("answers a missing key with exactly 401, and logs the refusal without a tenant", async () => {
    const res = await api.send({ body: CHAT, headers: JSON_HEADERS });
    expect(res.status).toBe(401);
    expect(envelope(res)).toMatchObject({ type: "authentication_error", code: "missing_api_key" });
    const line = requestLines().find((l) => l.request_id === res.headers["x-switchyard-request-id"])!;
    expect(line).toMatchObject({ status: 401, tenant: "", key_id: "", error: "missing_api_key" });
  });

  it("answers a wrong key with exactly 401 on both routes, and the wrong key never reaches a log", async () => {
    const wrong = "sk-test-not-a-key-9999";
    const chat = await api.send({ body: CHAT, headers: { ...JSON_HEADERS, authorization: `Bearer ${wrong}` } });
    expect(chat.status).toBe(401);
    expect(envelope(chat).code).toBe("invalid_api_key");
    const models = await api.send({ path: "/v1/models", headers: { authorization: `Bearer ${wrong}` } });
    expect(models.status).toBe(401);
    expect(envelope(models).code).toBe("invalid_api_key");
    expect(api.rawLogs.join("\n")).not.toContain(wrong);
    expect(api.upstreamCalls).toHaveLength(1); // only the authenticated request above
  });

  it("checks the key before the body: a 401 even for a text/plain body", async () => {
    expect((await api.send({ body: CHAT, headers: { "content-type": "text/plain" } })).status).toBe(401);
  });

  it("logs edge refusals too (no key id: none was checked)", async () => {
    await api.send({ body: CHAT, headers: { ...JSON_HEADERS, origin: "https://evil.example", authorization: `Bearer ${KEY}` } });
    expect(requestLines().at(-1)).toMatchObject({ status: 403, error: "origin_not_allowed", path: "/v1/chat/completions" });
  });
});

describe("a client's traceparent is linked to, not adopted", () => {
  const CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
  const traceparent = `00-${CLIENT_TRACE}-00f067aa0ba902b7-01`;
  let api: TestApi;
  beforeAll(async () => (api = await startTestApi()));
  afterAll(() => api.close());

  const serverSpan = (traceId: string) => exporter.getFinishedSpans().find((s) => s.name === "POST /v1/chat/completions" && s.spanContext().traceId === traceId);

  it("starts a trace of its own by default, with a span link to the client's", async () => {
    exporter.reset();
    const res = await api.send({ body: CHAT, headers: { ...JSON_HEADERS, traceparent } });
    expect(res.status).toBe(200);
    const ours = String(res.headers.traceparent).split("-")[1]!;
    expect(ours).not.toBe(CLIENT_TRACE);
    const span = serverSpan(ours)!;
    expect(span).toBeDefined();
    expect(span.parentSpanContext).toBeUndefined();
    expect(span.links.map((l) => l.context.traceId)).toEqual([CLIENT_TRACE]);
    expect(span.links[0]!.context.spanId).toBe("00f067aa0ba902b7");
  });

  it("does the same for GET /v1/models", async () => {
    exporter.reset();
    const res = await api.send({ path: "/v1/models", headers: { traceparent } });
    expect(String(res.headers.traceparent).split("-")[1]).not.toBe(CLIENT_TRACE);
    const span = exporter.getFinishedSpans().find((s) => s.name === "GET /v1/models")!;
    expect(span.links.map((l) => l.context.traceId)).toEqual([CLIENT_TRACE]);
  });

  it("adopts it as parent only with telemetry.trust_client_traceparent: true", async () => {
    const trusting = await startTestApi({ telemetry: { trust_client_traceparent: true } });
    try {
      exporter.reset();
      const res = await trusting.send({ body: CHAT, headers: { ...JSON_HEADERS, traceparent } });
      expect(String(res.headers.traceparent).split("-")[1]).toBe(CLIENT_TRACE);
      const span = serverSpan(CLIENT_TRACE)!;
      expect(span.parentSpanContext?.spanId).toBe("00f067aa0ba902b7");
      expect(span.links).toEqual([]);
    } finally {
      await trusting.close();
    }
  });

  it("starts a plain root span with no link when the client sends no traceparent", async () => {
    exporter.reset();
    const res = await api.send({ body: CHAT, headers: JSON_HEADERS });
    const span = serverSpan(String(res.headers.traceparent).split("-")[1]!)!;
    expect(span.links).toEqual([]);
    expect(span.parentSpanContext).toBeUndefined();
  });
});
