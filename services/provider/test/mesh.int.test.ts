import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Mesh, serviceEntry } from "@switchyard/cli";
import { parseConfig, SERVICE_NAMES } from "@switchyard/config";
import { bodyReply, sseReply, startFakeUpstream, type FakeUpstream } from "./fake-upstream.js";
import { ANSWER, ANTHROPIC_CACHED, ANTHROPIC_ERROR_MID_STREAM, GEMINI_TEXT, KEY, OPENAI_TEXT } from "./fixtures.js";
import { freePort } from "./ports.js";

/**
 * The whole mesh (five processes from dist/) with one provider of each kind pointed at a local
 * upstream that replays that provider's documented stream: a request pinned to each model must
 * come out of the gateway's OpenAI API with the exact text and the exact usage the upstream sent.
 */
let oa: FakeUpstream;
let an: FakeUpstream;
let gm: FakeUpstream;
let mesh: Mesh;
let gatewayPort: number;
let dir: string;

const model = (name: string) => ({ name, input_usd_per_mtok: 1, output_usd_per_mtok: 2, tiers: ["standard"] });

beforeAll(async () => {
  for (const name of SERVICE_NAMES) {
    if (!existsSync(serviceEntry(name))) throw new Error(`${serviceEntry(name)} is missing: run "npx tsc -b" first`);
  }
  [oa, an, gm] = await Promise.all([startFakeUpstream(), startFakeUpstream(), startFakeUpstream()]);
  const portNames = ["gateway_http", "gateway_grpc", "classifier", "policy", "cache", "provider", "classifier_http", "policy_http", "cache_http", "provider_http"];
  const ports: Record<string, number> = {};
  for (const n of portNames) ports[n] = await freePort();
  gatewayPort = ports.gateway_http!;
  dir = mkdtempSync(join(tmpdir(), "switchyard-provider-mesh-"));
  const configPath = join(dir, "switchyard.yaml");
  const common = { enabled: true, warm_connections: 1, keep_warm_interval_ms: 0 };
  // JSON is YAML.
  const text = JSON.stringify({
    listen_host: "127.0.0.1",
    ports,
    providers: [
      { ...common, name: "oa", kind: "openai", base_url: `${oa.url}/v1`, api_key_env: "MESH_TEST_OA_KEY", models: [model("gpt-x")] },
      { ...common, name: "an", kind: "anthropic", base_url: `${an.url}/v1`, api_key_env: "MESH_TEST_AN_KEY", models: [model("claude-x")] },
      { ...common, name: "gm", kind: "gemini", base_url: `${gm.url}/v1beta`, api_key_env: "MESH_TEST_GM_KEY", models: [model("gemini-x")] },
    ],
    tiers: [{ name: "standard", max_difficulty: 1 }],
    cache: { enabled: false },
    nats: { enabled: false },
    telemetry: { log_level: "warn" },
  });
  writeFileSync(configPath, text);
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SWITCHYARD_")));
  mesh = new Mesh({
    config: parseConfig(text, configPath),
    env: { ...env, SWITCHYARD_CONFIG: configPath, SWITCHYARD_NATS_ENABLED: "false", MESH_TEST_OA_KEY: KEY, MESH_TEST_AN_KEY: KEY, MESH_TEST_GM_KEY: KEY },
    log: () => {},
    childOutput: "ignore",
    restart: false,
  });
  mesh.start();
  await mesh.waitReady(45_000);
});

afterAll(async () => {
  await mesh?.stop(5_000);
  await Promise.all([oa?.close(), an?.close(), gm?.close()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Completion {
  status: number;
  headers: http.IncomingHttpHeaders;
  raw: string;
  /** The JSON of every `data:` event but [DONE]. */
  events: Record<string, unknown>[];
}

function complete(modelName: string): Promise<Completion> {
  const body = JSON.stringify({ model: modelName, messages: [{ role: "user", content: "Say hello." }], stream: true, stream_options: { include_usage: true } });
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port: gatewayPort, path: "/v1/chat/completions", method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const raw = Buffer.concat(chunks).toString("utf8");
          const events = raw
            .split("\n\n")
            .map((e) => e.replace(/^data: /, ""))
            .filter((d) => d.startsWith("{"))
            .map((d) => JSON.parse(d) as Record<string, unknown>);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, raw, events });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const textOf = (c: Completion) =>
  c.events.map((e) => ((e.choices as { delta?: { content?: string } }[] | undefined)?.[0]?.delta?.content ?? "")).join("");
const usageOf = (c: Completion) => c.events.find((e) => e.usage)?.usage as Record<string, unknown> | undefined;

describe("one model of each provider kind through the whole mesh", () => {
  it.each([
    ["oa/gpt-x", () => (oa.reply = sseReply(OPENAI_TEXT)), { prompt_tokens: 19, completion_tokens: 10, cached: 6 }],
    // input_tokens 25 + cache reads 3000 + cache writes 1200: every prompt token, as OpenAI counts them
    ["an/claude-x", () => (an.reply = sseReply(ANTHROPIC_CACHED)), { prompt_tokens: 4225, completion_tokens: 15, cached: 3000 }],
    ["gm/gemini-x", () => (gm.reply = sseReply(GEMINI_TEXT)), { prompt_tokens: 11, completion_tokens: 9, cached: 0 }],
  ] as const)("%s streams the upstream's exact text and usage", async (modelName, arrange, usage) => {
    arrange();
    const c = await complete(modelName);
    expect(c.status).toBe(200);
    expect(c.headers["x-switchyard-model"]).toBe(modelName);
    expect(textOf(c)).toBe(ANSWER);
    expect(c.raw.endsWith("data: [DONE]\n\n")).toBe(true);
    expect(usageOf(c)).toMatchObject({
      prompt_tokens: usage.prompt_tokens,
      completion_tokens: usage.completion_tokens,
      total_tokens: usage.prompt_tokens + usage.completion_tokens,
      prompt_tokens_details: { cached_tokens: usage.cached },
    });
  });

  // Our credentials were refused upstream: the caller's request was fine and its own key is not
  // in question, so not a 401 (which would tell it to fix its key) but a 502 naming the cause.
  it("answers an upstream 401 that quotes the key with exactly 502 upstream_auth_failed, without the key", async () => {
    oa.reply = bodyReply(401, "application/json", JSON.stringify({ error: { message: `Incorrect API key provided: ${KEY}`, type: "invalid_request_error", code: "invalid_api_key" } }));
    const c = await complete("oa/gpt-x");
    expect(c.status).toBe(502);
    expect(String(c.headers["content-type"])).toMatch(/^application\/json/);
    expect(JSON.parse(c.raw)).toEqual({
      error: { type: "upstream_error", code: "upstream_auth_failed", param: null, message: "oa: the provider rejected our credentials (HTTP 401)" },
    });
    expect(c.raw).not.toContain(KEY);
  });

  it("answers an upstream 403 the same way, and an upstream 429 with exactly 429", async () => {
    oa.reply = bodyReply(403, "application/json", JSON.stringify({ error: { message: "Project does not have access", type: "invalid_request_error", code: null } }));
    const forbidden = await complete("oa/gpt-x");
    expect(forbidden.status).toBe(502);
    expect(JSON.parse(forbidden.raw).error).toMatchObject({ type: "upstream_error", code: "upstream_auth_failed" });
    oa.reply = bodyReply(429, "application/json", JSON.stringify({ error: { message: "Rate limit reached", type: "requests", code: "rate_limit_exceeded" } }));
    const limited = await complete("oa/gpt-x");
    expect(limited.status).toBe(429);
    expect(JSON.parse(limited.raw).error).toMatchObject({ type: "rate_limit_error", code: "upstream_rate_limited" });
  });

  it("ends a stream broken by Anthropic's mid-stream error with an error event and no [DONE]", async () => {
    an.reply = sseReply(ANTHROPIC_ERROR_MID_STREAM);
    const c = await complete("an/claude-x");
    expect(c.status).toBe(200);
    expect(textOf(c)).toBe("Grüße — ");
    expect(c.events[c.events.length - 1]).toHaveProperty("error");
    expect(c.raw).not.toContain("[DONE]");
  });
});
