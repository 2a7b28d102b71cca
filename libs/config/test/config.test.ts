import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { activateProviders, applyEnvOverrides, ConfigError, defaultConfigPath, endpointFor, parseConfig } from "../src/index.js";

const defaults = readFileSync(defaultConfigPath(), "utf8");

function problemsOf(text: string): string[] {
  try {
    parseConfig(text);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error("expected the configuration to be rejected");
}

describe("configuration", () => {
  it("accepts the embedded defaults: three tiers, simulator models at three price points", () => {
    const config = parseConfig(defaults);
    expect(config.tiers.map((t) => t.name)).toEqual(["simple", "standard", "complex"]);
    const sim = config.providers.find((p) => p.kind === "simulator")!;
    const prices = new Set(sim.models.map((m) => m.output_usd_per_mtok));
    expect(prices.size).toBe(3);
    expect(config.ports.gateway_http).toBe(8080);
  });

  it("takes an http(s) Jaeger UI address for the dashboard's trace links, and names the key when it is not one", () => {
    expect(parseConfig(defaults).telemetry.jaeger_url).toBe("");
    expect(parseConfig("telemetry:\n  jaeger_url: http://localhost:16686\n").telemetry.jaeger_url).toBe("http://localhost:16686");
    for (const bad of ["localhost:16686", "javascript:alert(1)", "http://jaeger/search?q=1"]) {
      expect(problemsOf(`telemetry:\n  jaeger_url: "${bad}"\n`).join("\n"), bad).toMatch(/^telemetry\.jaeger_url: must be an http\(s\) URL/);
    }
  });

  it("names an unknown key and where it is", () => {
    expect(problemsOf(defaults.replace("listen_host:", "listen_hots:"))).toContain("listen_hots: unknown key");
    expect(problemsOf(defaults.replace("ttl_seconds: 3600", "ttl_second: 3600"))).toContain("cache.ttl_second: unknown key");
  });

  it("names a bad value and says why", () => {
    const problems = problemsOf(defaults.replace("input_usd_per_mtok: 0.10", "input_usd_per_mtok: -1"));
    expect(problems).toEqual(["providers[0].models[0].input_usd_per_mtok: a price cannot be negative"]);
    expect(problemsOf(defaults.replace("tiers: [complex]", "tiers: [huge]"))[0]).toMatch(
      /^providers\[0\]\.models\[2\]\.tiers\[0\]: unknown tier "huge"/,
    );
  });

  it("refuses a key where the name of its environment variable belongs", () => {
    const problems = problemsOf(defaults.replace("api_key_env: OPENAI_API_KEY", "api_key_env: sk-live-abc123"));
    expect(problems[0]).toMatch(/^providers\[1\]\.api_key_env: must be the NAME of an environment variable/);
  });

  it("reports YAML syntax errors without a stack trace", () => {
    expect(problemsOf("tiers: [a\nproviders: ")[0]).toMatch(/^YAML syntax:/);
  });

  it("turns on the simulator only when no real provider has a key", () => {
    const config = parseConfig(defaults);
    const offline = activateProviders(config, {});
    expect(offline.filter((a) => a.active).map((a) => a.provider.name)).toEqual(["sim"]);
    const online = activateProviders(config, { OPENAI_API_KEY: "x" });
    expect(online.filter((a) => a.active).map((a) => a.provider.name)).toEqual(["openai"]);
  });

  it("lets the environment override ports, endpoints and NATS_URL, and rejects a bad port", () => {
    const config = applyEnvOverrides(parseConfig(defaults), {
      SWITCHYARD_POLICY_PORT: "7000",
      SWITCHYARD_CACHE_URL: "http://cache:9103",
      NATS_URL: "nats://nats:4222",
    });
    expect(endpointFor(config, "policy")).toBe("http://127.0.0.1:7000");
    expect(endpointFor(config, "cache")).toBe("http://cache:9103");
    expect(config.nats.url).toBe("nats://nats:4222");
    expect(() => applyEnvOverrides(config, { SWITCHYARD_GATEWAY_HTTP_PORT: "http" })).toThrow(/SWITCHYARD_GATEWAY_HTTP_PORT/);
  });
});
