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
  it("links gateway, cache, classifier, policy and provider under the request's span", async () => {
    const res = await fetch(`${m.httpUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "switchyard/auto", temperature: 0, stream: true, messages: [{ role: "user", content: "Trace this request." }] }),
    });
    expect(res.status).toBe(200);
    await res.text();
    const traceId = res.headers.get("traceparent")!.split("-")[1]!;

    const wanted = ["gateway", "cache", "classifier", "policy", "provider"];
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
