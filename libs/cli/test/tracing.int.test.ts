import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as http from "node:http";
import { startTestMesh, type TestMesh } from "./support.js";

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: Record<string, unknown> }[];
}
interface ReceivedSpan extends OtlpSpan {
  service: string;
}

/** A few lines of OTLP/HTTP (JSON) receiver standing in for Jaeger. */
function startReceiver(): Promise<{ url: string; spans: ReceivedSpan[]; close: () => void }> {
  const spans: ReceivedSpan[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => (body += c));
    req.on("end", () => {
      const doc = JSON.parse(body) as { resourceSpans: { resource: { attributes: OtlpSpan["attributes"] }; scopeSpans: { spans: OtlpSpan[] }[] }[] };
      for (const rs of doc.resourceSpans) {
        const service = String(rs.resource.attributes?.find((a) => a.key === "service.name")?.value.stringValue);
        for (const ss of rs.scopeSpans) for (const s of ss.spans) spans.push({ ...s, service });
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, spans, close: () => server.close() })),
  );
}

let receiver: Awaited<ReturnType<typeof startReceiver>>;
let m: TestMesh;

beforeAll(async () => {
  receiver = await startReceiver();
  m = await startTestMesh({}, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" });
}, 60_000);
afterAll(async () => {
  await m?.stop();
  receiver?.close();
});

const attr = (s: OtlpSpan, key: string) => {
  const v = s.attributes?.find((a) => a.key === key)?.value;
  return v ? (v.stringValue ?? v.intValue ?? v.doubleValue ?? v.boolValue ?? v.arrayValue) : undefined;
};

describe("one request, one trace, every hop", () => {
  it("links gateway, cache, classifier, policy, provider and ledger under the request's span", async () => {
    const res = await fetch(`${m.httpUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "switchyard/auto", temperature: 0, stream: true, messages: [{ role: "user", content: "Trace this request." }] }),
    });
    expect(res.status).toBe(200);
    await res.text();
    const traceId = res.headers.get("traceparent")!.split("-")[1]!;

    const wanted = ["gateway", "cache", "classifier", "policy", "provider", "ledger"];
    let mine: ReceivedSpan[] = [];
    for (let i = 0; i < 100; i++) {
      mine = receiver.spans.filter((s) => s.traceId === traceId);
      const ids = new Set(mine.map((s) => s.spanId));
      // Every service's server span has arrived, and so has every parent (batches arrive apart).
      if (wanted.every((w) => mine.some((s) => s.service === w && s.kind === 2)) && mine.some((s) => s.name.startsWith("chat ")) && mine.every((s) => !s.parentSpanId || ids.has(s.parentSpanId))) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const byId = new Map(mine.map((s) => [s.spanId, s]));
    const root = mine.find((s) => s.service === "gateway" && s.name === "POST /v1/chat/completions")!;
    expect(root).toBeDefined();
    expect(root.parentSpanId ?? "").toBe("");
    expect(attr(root, "switchyard.cache")).toBe("miss");
    expect(String(attr(root, "switchyard.model"))).toMatch(/^sim\//);
    expect(Number(attr(root, "gen_ai.usage.output_tokens"))).toBeGreaterThan(0);

    // Each internal service's server span (kind 2) is the child of a gateway client span (kind 3)
    // that is itself the child of the request's span.
    for (const service of ["cache", "classifier", "policy", "provider"]) {
      const server = mine.find((s) => s.service === service && s.kind === 2);
      expect(server, `${service} server span`).toBeDefined();
      const client = byId.get(server!.parentSpanId!);
      expect(client, `${service} span's parent`).toMatchObject({ service: "gateway", kind: 3, name: server!.name });
      expect(client!.parentSpanId).toBe(root.spanId);
    }
    // The usage record's write in the ledger (NATS is off here, so over the Record RPC, after the
    // answer): the ledger's server span under a gateway client span under the request's "usage record" span.
    const ledgerServer = mine.find((s) => s.service === "ledger" && s.kind === 2)!;
    const ledgerClient = byId.get(ledgerServer.parentSpanId!);
    expect(ledgerClient).toMatchObject({ service: "gateway", kind: 3, name: ledgerServer.name });
    expect(byId.get(ledgerClient!.parentSpanId!)).toMatchObject({ service: "gateway", name: "usage record", parentSpanId: root.spanId });
    // The upstream call: an OpenTelemetry GenAI client span under the provider's server span.
    const providerServer = mine.find((s) => s.service === "provider" && s.kind === 2)!;
    const upstream = mine.find((s) => s.service === "provider" && s.name.startsWith("chat "))!;
    expect(upstream.parentSpanId).toBe(providerServer.spanId);
    expect(attr(upstream, "gen_ai.system")).toBe("switchyard.simulator");
    expect(attr(upstream, "gen_ai.request.model")).toBe(String(attr(root, "switchyard.model")).split("/")[1]);
    expect(Number(attr(upstream, "gen_ai.usage.output_tokens"))).toBe(Number(attr(root, "gen_ai.usage.output_tokens")));
    const policySpan = mine.find((s) => s.service === "policy" && s.kind === 2)!;
    expect(String(attr(policySpan, "switchyard.route_reason"))).toMatch(/^tier /);
    const classifierSpan = mine.find((s) => s.service === "classifier" && s.kind === 2)!;
    expect(["simple", "standard", "complex"]).toContain(attr(classifierSpan, "switchyard.tier"));
    // No prompt text on any span by default.
    expect(JSON.stringify(mine)).not.toContain("Trace this request.");
  });
});

describe("a usage record through JetStream", () => {
  let receiver2: Awaited<ReturnType<typeof startReceiver>>;
  let jm: TestMesh;
  beforeAll(async () => {
    receiver2 = await startReceiver();
    jm = await startTestMesh(
      { nats: { enabled: true, url: "nats://127.0.0.1:4222", price_bucket: `sy-trace-${Math.random().toString(36).slice(2, 10)}` } },
      { OTEL_EXPORTER_OTLP_ENDPOINT: receiver2.url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" },
    );
  }, 60_000);
  afterAll(async () => {
    await jm?.stop();
    receiver2?.close();
  });

  it("is published in the request's trace and written by the ledger in it", async () => {
    const res = await fetch(`${jm.httpUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "Account for this." }] }),
    });
    expect(res.status).toBe(200);
    const traceId = res.headers.get("traceparent")!.split("-")[1]!;
    let mine: ReceivedSpan[] = [];
    for (let i = 0; i < 100; i++) {
      mine = receiver2.spans.filter((s) => s.traceId === traceId);
      if (mine.some((s) => s.service === "ledger" && s.kind === 5) && mine.some((s) => s.kind === 4)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const root = mine.find((s) => s.service === "gateway" && s.name === "POST /v1/chat/completions")!;
    const publish = mine.find((s) => s.service === "gateway" && s.kind === 4)!;
    expect(publish).toMatchObject({ parentSpanId: root.spanId });
    expect(attr(publish, "switchyard.request_id")).toBe(res.headers.get("x-switchyard-request-id"));
    const write = mine.find((s) => s.service === "ledger" && s.kind === 5)!;
    expect(write).toMatchObject({ parentSpanId: publish.spanId });
    expect(attr(write, "switchyard.request_id")).toBe(res.headers.get("x-switchyard-request-id"));
  });
});
