import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestMesh, type TestMesh } from "./support.js";

let m: TestMesh;
beforeAll(async () => {
  m = await startTestMesh();
}, 60_000);
afterAll(async () => m?.stop());

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*)?\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)( -?[0-9]+)?$/;

/** Parses Prometheus text exposition strictly enough to catch a malformed line; returns metric names. */
function parsePrometheus(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("# HELP ") || line.startsWith("# TYPE ")) {
      expect(line.split(" ").length, line).toBeGreaterThanOrEqual(4);
      continue;
    }
    const match = SAMPLE.exec(line);
    expect(match, `not a Prometheus sample: ${line}`).not.toBeNull();
    names.add(match![1]!);
  }
  return names;
}

describe("/metrics on every service", () => {
  it("parses as Prometheus text and carries the request, latency, token, cost, cache and routing metrics", async () => {
    await fetch(`${m.httpUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "count me" }], temperature: 0 }),
    }).then((r) => r.text());
    const ports = { gateway: m.config.ports.gateway_http, classifier: m.config.ports.classifier_http, policy: m.config.ports.policy_http, cache: m.config.ports.cache_http, provider: m.config.ports.provider_http };
    const names: Record<string, Set<string>> = {};
    for (const [service, port] of Object.entries(ports)) {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
      names[service] = parsePrometheus(await res.text());
      expect(names[service]!.has("switchyard_process_cpu_seconds_total")).toBe(true);
    }
    for (const metric of [
      "switchyard_gateway_requests_total",
      "switchyard_gateway_time_to_first_token_seconds_bucket",
      "switchyard_gateway_request_duration_seconds_bucket",
      "switchyard_gateway_routing_overhead_seconds_bucket",
      "switchyard_gateway_tokens_total",
      "switchyard_gateway_cost_micro_usd_total",
    ]) {
      expect(names.gateway!.has(metric), metric).toBe(true);
    }
    expect(names.policy!.has("switchyard_policy_circuit_state")).toBe(true);
    expect(names.policy!.has("switchyard_policy_tables_stale")).toBe(true);
    expect(names.classifier!.has("switchyard_classifier_tier_total")).toBe(true);
    expect([...names.cache!].some((n) => n.startsWith("switchyard_cache_"))).toBe(true);
  });
});
