import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGatewayReplica, startTestMesh, type GatewayReplica, type TestMesh } from "./support.js";

const CLI = join(dirname(fileURLToPath(import.meta.url)), "..", "bin", "switchyard.js");
const run = promisify(execFile);

/** Runs `switchyard ARGS` against a gateway; resolves to its exit code and output. */
async function switchyard(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : 1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

interface UsageJson {
  requests: number;
  errors: number;
  cost_usd: number;
  baseline_usd: number;
  saved_usd: number;
  breakdown: Record<string, unknown>[];
}

/** `switchyard usage --json` until `done` holds for it (records reach the ledger asynchronously). */
async function usageUntil(grpcUrl: string, args: string[], done: (u: UsageJson) => boolean, timeoutMs = 20_000): Promise<UsageJson> {
  const deadline = Date.now() + timeoutMs;
  let last: UsageJson | undefined;
  let lastErr = "";
  while (Date.now() < deadline) {
    const r = await switchyard(["usage", "--json", "--url", grpcUrl, ...args]);
    if (r.code === 0) {
      last = JSON.parse(r.stdout) as UsageJson;
      if (done(last)) return last;
    } else lastErr = r.stderr;
    await new Promise((res) => setTimeout(res, 250));
  }
  throw new Error(`usage never matched: ${JSON.stringify(last)} ${lastErr}`);
}

const cost = (body: { switchyard?: { cost_usd?: string } }) => Number(body.switchyard?.cost_usd ?? "NaN");

describe("every request on the books: switchyard start, traffic, switchyard usage, a restart", () => {
  let m: TestMesh;
  beforeAll(async () => {
    m = await startTestMesh({ nats: { enabled: true, url: "nats://127.0.0.1:4222", price_bucket: `sy-test-${randomUUID().slice(0, 8)}` } });
  }, 90_000);
  afterAll(async () => m?.stop());

  it("shows what the traffic cost and what routing saved, the same after a restart", async () => {
    const openai = new OpenAI({ baseURL: `${m.httpUrl}/v1`, apiKey: "unused", maxRetries: 0 });
    let spent = 0;
    const prompts = ["hi", "What is 2+2?", "Prove that there are infinitely many primes, step by step.", "Write a haiku about routers."];
    for (const content of prompts) {
      const res = await openai.chat.completions.create({ model: "switchyard/auto", messages: [{ role: "user", content }] });
      spent += cost(res as never);
    }
    // A streamed one: its cost comes in the last chunk.
    const stream = await openai.chat.completions.create({ model: "switchyard/auto", messages: [{ role: "user", content: "stream me a story" }], stream: true });
    for await (const chunk of stream) {
      const info = (chunk as { switchyard?: { cost_usd?: string } }).switchyard;
      if (info) spent += Number(info.cost_usd);
    }
    const usage = await usageUntil(m.grpcUrl, [], (u) => u.requests === 5);
    expect(usage.errors).toBe(0);
    expect(usage.cost_usd).toBeCloseTo(spent, 6);
    // Routing sent easy prompts to cheaper models than the top tier's most expensive one.
    expect(usage.baseline_usd).toBeGreaterThan(usage.cost_usd);
    expect(usage.saved_usd).toBeCloseTo(usage.baseline_usd - usage.cost_usd, 6);
    const models = usage.breakdown.map((g) => g.model);
    expect(models.length).toBeGreaterThan(0);

    // The table a person reads.
    const table = await switchyard(["usage", "--by", "tier", "--url", m.grpcUrl]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^tier\s+requests/m);
    expect(table.stdout).toMatch(/^total\s+5\s/m);

    await m.restart();
    const after = await usageUntil(m.grpcUrl, [], (u) => u.requests >= 5);
    expect(after.requests).toBe(5);
    expect(after.cost_usd).toBeCloseTo(spent, 6);
  }, 120_000);

  it("answers bad flags with a clear message and exit code 2", async () => {
    const r = await switchyard(["usage", "--since", "yesterday", "--url", m.grpcUrl]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--since "yesterday" is neither a duration');
    const by = await switchyard(["usage", "--by", "color", "--url", m.grpcUrl]);
    expect(by.code).toBe(2);
    expect(by.stderr).toContain("--by must be one of");
  });
});

describe("keys, budgets and rate limits across two gateway replicas", () => {
  let m: TestMesh;
  let b: GatewayReplica;
  const prefix = `switchyard:test:${randomUUID()}:`;
  beforeAll(async () => {
    m = await startTestMesh({
      tenants: [
        { name: "default" },
        // Two cents a day; each answer of sim/large costs about 0.08 cents.
        { name: "capped", budget_usd: 0.02, budget_period: "day" },
      ],
      quotas: { backend: "redis", redis_url: "redis://127.0.0.1:6379", key_prefix: prefix },
      ledger: { key_refresh_ms: 250 },
    });
    b = await startGatewayReplica(m);
  }, 90_000);
  afterAll(async () => {
    await b?.stop();
    await m?.stop();
  });

  const chat = (base: string, key: string, model = "switchyard/auto") =>
    fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
      body: JSON.stringify({ model, max_tokens: 50, messages: [{ role: "user", content: "hello there" }] }),
    });

  it("creates a key at run time, enforces its rate limit on both replicas, and refuses it everywhere within a second of revoking it", async () => {
    const created = await switchyard(["keys", "create", "--tenant", "default", "--name", "ci", "--rpm", "3", "--url", m.grpcUrl]);
    expect(created.code, created.stderr).toBe(0);
    const lines = created.stdout.trimEnd().split("\n");
    const key = lines[lines.length - 1]!;
    expect(key).toMatch(/^sy-[A-Za-z0-9_-]{40,}$/);
    const keyId = /created key ([0-9a-f]{12})/.exec(created.stdout)![1]!;

    // Three requests a minute, counted across both replicas.
    const statuses = [];
    for (const base of [m.httpUrl, b.httpUrl, m.httpUrl, b.httpUrl]) statuses.push((await chat(base, key)).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    const limited = await chat(m.httpUrl, key);
    expect(limited.status).toBe(429);
    expect(((await limited.json()) as { error: { code: string } }).error.code).toBe("rate_limited");
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);

    const list = await switchyard(["keys", "list", "--json", "--url", m.grpcUrl]);
    const listed = (JSON.parse(list.stdout) as { key_id: string; rpm: number }[]).find((k) => k.key_id === keyId);
    expect(listed?.rpm).toBe(3);
    expect(list.stdout).not.toContain(key);

    const revoked = await switchyard(["keys", "revoke", keyId, "--url", b.grpcUrl]);
    expect(revoked.code, revoked.stderr).toBe(0);
    const at = Date.now();
    const refusedBy = async (base: string) => {
      while ((await chat(base, key)).status !== 401) {
        if (Date.now() - at > 5_000) throw new Error(`${base} still accepts a revoked key`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return Date.now() - at;
    };
    const [onA, onB] = await Promise.all([refusedBy(m.httpUrl), refusedBy(b.httpUrl)]);
    expect(Math.max(onA, onB)).toBeLessThan(1_000);
  }, 60_000);

  it("200 concurrent requests against a two-cent budget on two replicas: spend stays within it, the rest get 429, the books agree", async () => {
    const created = await switchyard(["keys", "create", "--tenant", "capped", "--url", m.grpcUrl]);
    const key = created.stdout.trimEnd().split("\n").pop()!;
    const results = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const res = await chat(i % 2 ? b.httpUrl : m.httpUrl, key, "sim/large");
        const body = (await res.json()) as { switchyard?: { cost_usd: string }; error?: { code: string } };
        return { status: res.status, cost: body.switchyard ? Number(body.switchyard.cost_usd) : 0, code: body.error?.code };
      }),
    );
    const answered = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 429);
    expect(answered.length + refused.length).toBe(200);
    expect(refused.every((r) => r.code === "budget_exceeded")).toBe(true);
    expect(refused.length).toBeGreaterThan(0);
    const spent = answered.reduce((n, r) => n + r.cost, 0);
    const largest = Math.max(...answered.map((r) => r.cost));
    // Admission holds each request's estimate (at the baseline price, never below its real cost) until it
    // ends, so the budget is overshot by at most the last requests admitted (their real input tokens may exceed the estimate a little).
    expect(spent).toBeLessThanOrEqual(0.02 + 2 * largest);
    expect(spent).toBeGreaterThan(0.02 * 0.5);
    // The ledger saw every request once: the same spend, no double charge, and every refusal.
    const usage = await usageUntil(m.grpcUrl, ["--tenant", "capped"], (u) => u.requests === 200);
    expect(usage.cost_usd).toBeCloseTo(spent, 6);
    expect(usage.errors).toBe(refused.length);
  }, 120_000);
});
