import { randomUUID } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { stringify as toYaml } from "yaml";
import { parseConfig, type Config } from "@switchyard/config";
import { createLogger } from "@switchyard/telemetry";
import { MemoryQuotaBackend, periodBounds, QuotaEnforcer, RedisQuotaBackend, type QuotaScope } from "../src/accounting/quotas.js";

const logger = createLogger({ service: "test", level: "error", write: () => {} });
const REDIS = "redis://127.0.0.1:6379";

function config(extra: Record<string, unknown>): Config {
  return parseConfig(toYaml(extra));
}

/** An enforcer whose estimate is a fixed price per token, like the gateway's (baseline price x tokens). */
function enforcer(cfg: Config, microPerToken = 1n): QuotaEnforcer {
  return new QuotaEnforcer({ config: cfg, logger, estimateCost: (_t, i, o) => BigInt(i + o) * microPerToken });
}

const ask = (e: QuotaEnforcer, id: string, over: Partial<Parameters<QuotaEnforcer["admit"]>[0]> = {}) =>
  e.admit({ requestId: id, tenant: "default", keyId: "", inputChars: 400, maxOutputTokens: 100, defaultOutputTokens: 512, ...over });

describe("budget periods", () => {
  it("start at UTC midnight, on Monday and on the 1st, and end where the next starts", () => {
    const t = Date.UTC(2026, 10, 30, 15, 30); // Monday 30 November 2026
    expect(periodBounds("day", t)).toEqual({ start: Date.UTC(2026, 10, 30), end: Date.UTC(2026, 11, 1) });
    expect(periodBounds("week", t)).toEqual({ start: Date.UTC(2026, 10, 30), end: Date.UTC(2026, 11, 7) });
    expect(periodBounds("week", Date.UTC(2026, 11, 6, 23))).toEqual({ start: Date.UTC(2026, 10, 30), end: Date.UTC(2026, 11, 7) });
    expect(periodBounds("month", t)).toEqual({ start: Date.UTC(2026, 10, 1), end: Date.UTC(2026, 11, 1) });
  });
});

describe("quota enforcer, one replica", () => {
  it("refuses the request past the per-minute limit with the scope, the limit and a retry-after", async () => {
    const e = enforcer(config({ tenants: [{ name: "default", requests_per_minute: 3 }] }));
    for (let i = 0; i < 3; i++) expect((await ask(e, `r${i}`)).refusal).toBeUndefined();
    const { refusal } = await ask(e, "r3");
    expect(refusal).toMatchObject({ scope: "tenant:default", limit: "requests_per_minute" });
    expect(refusal!.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(refusal!.retryAfterSeconds).toBeLessThanOrEqual(60);
    expect(refusal!.message).toContain('tenant "default"');
  });

  it("holds the estimate while a request runs and counts the real cost when it ends", async () => {
    // 400 characters = 100 input tokens + 100 output: an estimate of 200 micro-dollars.
    const e = enforcer(config({ tenants: [{ name: "default", budget_usd: 0.0005 }] }));
    const a = await ask(e, "a");
    const b = await ask(e, "b");
    expect(a.ticket && b.ticket).toBeTruthy();
    // 400 held of 500: a third may still start (the budget is not reached), a fourth not.
    const c = await ask(e, "c");
    expect(c.ticket).toBeTruthy();
    expect((await ask(e, "d")).refusal?.limit).toBe("budget");
    // They cost far less than estimated: their holds go, their real cost counts.
    await e.settle(a.ticket, 10n, 50);
    await e.settle(b.ticket, 10n, 50);
    await e.settle(c.ticket, 10n, 50);
    expect((await ask(e, "e")).ticket).toBeTruthy();
  });

  it("applies a key's own limits as well as its tenant's", async () => {
    const e = enforcer(config({ tenants: [{ name: "default", requests_per_minute: 100 }] }));
    const keyLimits = { period: "month" as const, requestsPerMinute: 1 };
    expect((await ask(e, "k1", { keyId: "abcdefabcdef", keyLimits })).ticket).toBeTruthy();
    const { refusal } = await ask(e, "k2", { keyId: "abcdefabcdef", keyLimits });
    expect(refusal).toMatchObject({ scope: "key:abcdefabcdef", limit: "requests_per_minute" });
    // Another key of the same tenant is not affected.
    expect((await ask(e, "k3", { keyId: "123456123456", keyLimits })).ticket).toBeTruthy();
  });

  it("admits everything, with nothing to settle, when no limit applies", async () => {
    const e = enforcer(config({}));
    expect(await ask(e, "x")).toEqual({});
  });

  it("tokens per minute count the estimate, then the real tokens", async () => {
    const backend = new MemoryQuotaBackend();
    const scope: QuotaScope = { id: "tenant:t", limits: { period: "month", tokensPerMinute: 1_000 } };
    const now = Date.UTC(2026, 10, 30, 12, 0, 1);
    expect(await backend.admit({ requestId: "1", scopes: [scope], estimatedTokens: 900, estimatedMicroUsd: 0n }, now)).toBeUndefined();
    expect(await backend.admit({ requestId: "2", scopes: [scope], estimatedTokens: 900, estimatedMicroUsd: 0n }, now)).toBeUndefined();
    expect((await backend.admit({ requestId: "3", scopes: [scope], estimatedTokens: 1, estimatedMicroUsd: 0n }, now))?.limit).toBe("tokens_per_minute");
  });
});

describe("quota enforcer, replicas sharing Redis", () => {
  const prefix = `switchyard:test:${randomUUID()}:`;
  const opened: QuotaEnforcer[] = [];
  afterAll(async () => {
    await Promise.all(opened.map((e) => e.close()));
  });
  const replica = (cfg: Config) => {
    const e = enforcer(cfg, 1n);
    opened.push(e);
    return e;
  };

  it("200 concurrent requests on two replicas: spend stays within the budget plus what was in flight", async () => {
    const cfg = config({ tenants: [{ name: "default", budget_usd: 0.02 }], quotas: { backend: "redis", redis_url: REDIS, key_prefix: `${prefix}budget:` } });
    const replicas = [replica(cfg), replica(cfg)];
    // Each request is estimated at 200 micro-dollars (100 + 100 tokens) and really costs 150.
    let spent = 0n;
    let admitted = 0;
    let refused = 0;
    let inFlightWhenReached = 0n;
    let inFlight = 0n;
    await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const e = replicas[i % 2]!;
        const { ticket, refusal } = await ask(e, `req-${i}`);
        if (refusal) {
          expect(refusal.limit).toBe("budget");
          refused++;
          if (inFlightWhenReached === 0n) inFlightWhenReached = inFlight;
          return;
        }
        admitted++;
        inFlight += 150n;
        await new Promise((r) => setTimeout(r, 5 + (i % 7)));
        spent += 150n;
        inFlight -= 150n;
        await e.settle(ticket, 150n, 200);
      }),
    );
    expect(admitted).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
    expect(spent).toBeLessThanOrEqual(20_000n + inFlightWhenReached);
    // Holds that counted the estimate (200) against a budget of 20,000: at most 100 at once.
    expect(admitted).toBeLessThanOrEqual(200);
    // Settled: the counters hold the real spend, and a new request is refused once it reaches the budget.
    if (spent >= 20_000n) expect((await ask(replicas[0]!, "after")).refusal?.limit).toBe("budget");
  });

  it("shares requests-per-minute counters: the limit holds across both replicas", async () => {
    const cfg = config({ tenants: [{ name: "default", requests_per_minute: 10 }], quotas: { backend: "redis", redis_url: REDIS, key_prefix: `${prefix}rpm:` } });
    const [a, b] = [replica(cfg), replica(cfg)];
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => ask(i % 2 ? a! : b!, `r${i}`)));
    expect(results.filter((r) => r.ticket).length).toBe(10);
    expect(results.filter((r) => r.refusal?.limit === "requests_per_minute").length).toBe(20);
  });

  it("counts in the replica alone while Redis is unreachable, and says so", async () => {
    const cfg = config({ tenants: [{ name: "default", requests_per_minute: 2 }], quotas: { backend: "redis", redis_url: "redis://127.0.0.1:1", timeout_ms: 50 } });
    const e = replica(cfg);
    expect((await ask(e, "1")).ticket).toBeTruthy();
    expect(e.state).toMatch(/degraded/);
    expect((await ask(e, "2")).ticket).toBeTruthy();
    expect((await ask(e, "3")).refusal?.limit).toBe("requests_per_minute");
  });

  it("a settle repeated (a retry after a timeout that had in fact run) counts the spend once", async () => {
    const backend = new RedisQuotaBackend(REDIS, `${prefix}idempotent:`, 1_000, 0);
    try {
      const scope: QuotaScope = { id: "tenant:t", limits: { period: "day", budgetMicroUsd: 1_000n } };
      const now = Date.now();
      expect(await backend.admit({ requestId: "r1", scopes: [scope], estimatedTokens: 1, estimatedMicroUsd: 100n }, now)).toBeUndefined();
      const ticket = { requestId: "r1", scopes: [scope], estimatedTokens: 1, estimatedMicroUsd: 100n, windowStart: now, backend };
      await backend.settle(ticket, 600n, 1);
      await backend.settle(ticket, 600n, 1);
      // 600 spent, not 1,200: a request still fits under the budget of 1,000.
      expect(await backend.admit({ requestId: "r2", scopes: [scope], estimatedTokens: 1, estimatedMicroUsd: 100n }, now)).toBeUndefined();
      // A spend-only settle (a request another counter admitted) adds its cost: now 1,200 with r2's hold.
      await backend.settle({ ...ticket, requestId: "elsewhere" }, 600n, 1, true);
      expect((await backend.admit({ requestId: "r3", scopes: [scope], estimatedTokens: 1, estimatedMicroUsd: 1n }, now))?.limit).toBe("budget");
    } finally {
      await backend.close();
    }
  });

  it("a hold left by a replica that died expires instead of blocking the budget forever", async () => {
    const backend = new RedisQuotaBackend(REDIS, `${prefix}expiry:`, 500, 0);
    try {
      const scope: QuotaScope = { id: "tenant:t", limits: { period: "day", budgetMicroUsd: 1_000n } };
      const now = Date.now();
      expect(await backend.admit({ requestId: "dead", scopes: [scope], estimatedTokens: 1, estimatedMicroUsd: 1_000n }, now)).toBeUndefined();
      expect((await backend.admit({ requestId: "next", scopes: [scope], estimatedTokens: 1, estimatedMicroUsd: 1n }, now + 1_000))?.limit).toBe("budget");
      // request timeout 0 + 11 minutes of grace (longer than settles are retried): the hold is gone after that.
      expect((await backend.admit({ requestId: "soon", scopes: [scope], estimatedTokens: 1, estimatedMicroUsd: 1n }, now + 60_000))?.limit).toBe("budget");
      expect(await backend.admit({ requestId: "later", scopes: [scope], estimatedTokens: 1, estimatedMicroUsd: 1n }, now + 11 * 60_000 + 1_000)).toBeUndefined();
    } finally {
      await backend.close();
    }
  });
});

describe("budgets start from the books", () => {
  const prefix = `switchyard:test:${randomUUID()}:seed:`;

  it("a restarted gateway remembers what this period already spent", async () => {
    const asked: [string, number][] = [];
    const cfg = config({ tenants: [{ name: "default", budget_usd: 0.001, budget_period: "day" }] });
    const e = new QuotaEnforcer({
      config: cfg,
      logger,
      estimateCost: () => 10n,
      spentSince: async (scope, since) => {
        asked.push([scope.id, since]);
        return 1_000n; // the ledger says the day's budget is spent
      },
    });
    const { refusal } = await ask(e, "after-restart");
    expect(refusal?.limit).toBe("budget");
    expect(refusal?.message).toContain("$0.001000 spent");
    expect(asked).toEqual([["tenant:default", periodBounds("day", Date.now()).start]]);
    // Asked once per period, not per request.
    await ask(e, "again");
    expect(asked).toHaveLength(1);
  });

  it("admits on the counters as they are while the books cannot be read, and asks again later", async () => {
    let calls = 0;
    const e = new QuotaEnforcer({
      config: config({ tenants: [{ name: "default", budget_usd: 1 }] }),
      logger,
      estimateCost: () => 10n,
      spentSince: async () => {
        calls++;
        throw new Error("ledger away");
      },
    });
    expect((await ask(e, "1")).ticket).toBeTruthy();
    expect((await ask(e, "2")).ticket).toBeTruthy();
    expect(calls).toBe(1);
  });

  it("never overwrites a shared counter that exists (another replica's spend counts)", async () => {
    const cfg = config({ tenants: [{ name: "default", budget_usd: 0.001, budget_period: "day" }], quotas: { backend: "redis", redis_url: REDIS, key_prefix: prefix } });
    const first = new QuotaEnforcer({ config: cfg, logger, estimateCost: () => 10n, spentSince: async () => 990n });
    const second = new QuotaEnforcer({ config: cfg, logger, estimateCost: () => 10n, spentSince: async () => 0n });
    try {
      const a = await ask(first, "a");
      expect(a.ticket).toBeTruthy();
      // 990 seeded + 10 held: the budget of 1,000 is reached for the other replica too, whose books said 0.
      expect((await ask(second, "b")).refusal?.limit).toBe("budget");
    } finally {
      await first.close();
      await second.close();
    }
  });
});
