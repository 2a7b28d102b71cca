import { describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, defaultConfigPath, exposureProblems, loadConfig, loadConfigFile, mergeConfig, parseConfig, redactConfig } from "../src/index.js";

const defaults = parseConfig(readFileSync(defaultConfigPath(), "utf8"));

function problemsOf(run: () => unknown): string[] {
  try {
    run();
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error("expected the configuration to be rejected");
}

const ONLY_PROVIDERS = `
providers:
  - name: local
    kind: openai
    base_url: http://127.0.0.1:11434/v1
    models:
      - name: llama3
        input_usd_per_mtok: 0
        output_usd_per_mtok: 0
        tiers: [simple, standard, complex]
`;

function file(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), "switchyard-config-")), "switchyard.yaml");
  writeFileSync(path, text);
  return path;
}

describe("a partial configuration merges onto the embedded defaults", () => {
  it("a file with only providers: is a whole configuration", () => {
    const config = parseConfig(ONLY_PROVIDERS);
    expect(config.providers.map((p) => p.name)).toEqual(["local"]);
    expect(config.tiers.map((t) => t.name)).toEqual(["simple", "standard", "complex"]);
    expect(config.tenants).toEqual(defaults.tenants);
    expect(config.ports).toEqual(defaults.ports);
  });

  it("merges objects key by key and replaces arrays and scalars", () => {
    const config = parseConfig(`cache:\n  ttl_seconds: 60\n  semantic:\n    similarity_threshold: 0.95\ntiers:\n  - name: only\n    max_difficulty: 1\nproviders:\n  - name: s\n    kind: simulator\n    models: [{name: m, input_usd_per_mtok: 1, output_usd_per_mtok: 2, tiers: [only]}]\n`);
    expect(config.cache.ttl_seconds).toBe(60);
    expect(config.cache.semantic.similarity_threshold).toBe(0.95);
    // Siblings the file did not mention keep their defaults.
    expect(config.cache.lookup_budget_ms).toBe(defaults.cache.lookup_budget_ms);
    expect(config.cache.semantic.enabled).toBe(defaults.cache.semantic.enabled);
    expect(config.tiers.map((t) => t.name)).toEqual(["only"]);
    expect(mergeConfig({ a: [1, 2], b: { c: 1, d: 2 } }, { a: [3], b: { d: 4 } })).toEqual({ a: [3], b: { c: 1, d: 4 } });
    expect(mergeConfig({ a: 1 }, { a: null })).toEqual({ a: 1 });
  });

  it("still names an unknown key with its path, also inside a merged object", () => {
    expect(problemsOf(() => parseConfig("cache:\n  ttl_secnds: 5\n"))).toEqual(["cache.ttl_secnds: unknown key"]);
    expect(problemsOf(() => parseConfig("gateway:\n  cors_origin: [https://a.example]\n"))).toEqual(["gateway.cors_origin: unknown key"]);
    expect(problemsOf(() => parseConfig('{"__proto__": {"x": 1}}'))).toEqual(["__proto__: unknown key"]);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it("an empty file is the embedded defaults; a list is refused at the top level", () => {
    expect(parseConfig("")).toEqual(defaults);
    expect(problemsOf(() => parseConfig("- a\n- b\n"))[0]).toMatch(/^\(top level\)/);
  });

  it("has the edge defaults: no CORS origins, no unauthenticated exposure, client traceparent linked, OpenAI's limits", () => {
    expect(defaults.gateway).toEqual({ allow_unauthenticated: false, require_api_key: false, cors_origins: [], allowed_hosts: [], admin_key_sha256: [] });
    expect(defaults.telemetry.trust_client_traceparent).toBe(false);
    expect(defaults.limits).toMatchObject({ max_json_depth: 32, max_user_chars: 256, max_metadata_keys: 16, max_metadata_key_chars: 64, max_metadata_value_chars: 512, max_tools: 128, max_stop_sequences: 4 });
  });

  it("checks CORS origins and host names", () => {
    expect(problemsOf(() => parseConfig("gateway:\n  cors_origins: [https://app.example.com/]\n"))[0]).toMatch(/^gateway\.cors_origins\[0\]: an origin is scheme:\/\/host\[:port\]/);
    expect(parseConfig("gateway:\n  cors_origins: [HTTPS://App.Example.com:8443]\n").gateway.cors_origins).toEqual(["https://app.example.com:8443"]);
    expect(problemsOf(() => parseConfig("gateway:\n  allowed_hosts: [gw.example:8080]\n"))[0]).toMatch(/^gateway\.allowed_hosts\[0\]:/);
  });
});

describe("exposure: an open gateway beyond loopback refuses to start", () => {
  const open = (extra = "") => `listen_host: 0.0.0.0\n${extra}`;

  it("refuses listen_host 0.0.0.0 with no tenant keys, naming the keys", () => {
    const problems = problemsOf(() => loadConfigFile(file(open()), {}));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^listen_host: "0\.0\.0\.0" is not loopback/);
    expect(problems[0]).toContain("tenants[].api_key_sha256");
    expect(problems[0]).toContain("gateway.allow_unauthenticated: true");
  });

  it("also when the environment moves the listener (SWITCHYARD_LISTEN_HOST), as start would run it", () => {
    const path = file(ONLY_PROVIDERS);
    expect(loadConfigFile(path, {}).listen_host).toBe("127.0.0.1");
    expect(problemsOf(() => loadConfigFile(path, { SWITCHYARD_LISTEN_HOST: "::" }))[0]).toMatch(/^listen_host: "::" \(from SWITCHYARD_LISTEN_HOST\)/);
    expect(problemsOf(() => loadConfig({ SWITCHYARD_CONFIG: path, SWITCHYARD_LISTEN_HOST: "10.0.0.5" }))[0]).toMatch(/^listen_host: "10\.0\.0\.5"/);
  });

  it("starts with keys, with allow_unauthenticated: true, or on any loopback name", () => {
    const key = "a".repeat(64);
    expect(() => loadConfigFile(file(open(`tenants:\n  - name: t\n    api_key_sha256: ["${key}"]\n`)), {})).not.toThrow();
    expect(() => loadConfigFile(file(open("gateway:\n  allow_unauthenticated: true\n")), {})).not.toThrow();
    for (const host of ["127.0.0.1", "::1", "localhost", "127.0.0.53"]) {
      expect(exposureProblems({ ...defaults, listen_host: host })).toEqual([]);
    }
  });

  it("names a missing file instead of throwing a stack", () => {
    expect(problemsOf(() => loadConfigFile("/nonexistent/switchyard.yaml", {}))).toEqual(["no such file"]);
  });
});

describe("redaction for config print", () => {
  it("hides key hashes, URL credentials and inline secrets, keeps names of environment variables", () => {
    const config = parseConfig(`
tenants:
  - name: team
    api_key_sha256: ["${"b".repeat(64)}"]
cache:
  redis_url: redis://app:hunter2@redis:6379/0
nats:
  url: nats://operator:s3cret@nats:4222
`);
    const shown = redactConfig(config);
    const text = JSON.stringify(shown);
    expect(text).not.toContain("b".repeat(64));
    expect(text).not.toContain("hunter2");
    expect(text).not.toContain("s3cret");
    expect((shown.cache as { redis_url: string }).redis_url).toBe("redis://[redacted]@redis:6379/0");
    expect(text).toContain("OPENAI_API_KEY"); // api_key_env names a variable: not a secret
    expect((shown.cache as { hmac_key_env: string }).hmac_key_env).toBe("SWITCHYARD_CACHE_HMAC_KEY");
    // A number under a name with "tokens" in it is not a secret either.
    expect((shown.tiers as { expected_output_tokens: number }[])[0]!.expected_output_tokens).toBe(200);
    // Inline secrets under secret-sounding names (future keys, or other tools' files) are hidden.
    const inline = redactConfig({ ...config, extra: { api_key: "sk-live-123", password: "pw", token: "PLAIN_ENV_NAME" } } as never);
    expect(inline.extra).toEqual({ api_key: "[redacted]", password: "[redacted]", token: "PLAIN_ENV_NAME" });
  });
});
