import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { parseConfig } from "@switchyard/config";
import { events } from "@switchyard/proto";
import { HealthTable } from "../src/health.js";
import { PriceTable } from "../src/prices.js";
import { planRoute, RouteError, type RouteQuery } from "../src/route.js";

const config = parseConfig(`
tiers:
  - { name: simple, max_difficulty: 0.4, quality_target: 0.5 }
  - { name: complex, max_difficulty: 1, quality_target: 0.8 }
providers:
  - name: a
    kind: simulator
    enabled: true
    models:
      - { name: cheap, input_usd_per_mtok: 0.1, output_usd_per_mtok: 0.4, tiers: [simple, complex], simulator: { quality: 0.6 } }
      - { name: mid, input_usd_per_mtok: 1, output_usd_per_mtok: 4, tiers: [simple, complex], simulator: { quality: 0.85 } }
  - name: b
    kind: simulator
    enabled: true
    models:
      - { name: big, input_usd_per_mtok: 5, output_usd_per_mtok: 20, tiers: [complex], simulator: { quality: 0.95 } }
`);

const query = (q: Partial<RouteQuery> = {}): RouteQuery => ({
  tenant: "default",
  tier: "complex",
  predictedQuality: {},
  pinnedModel: "",
  expectedInputTokens: 100,
  expectedOutputTokens: 100,
  maxOutputMicroUsdPerMtok: 0n,
  ...q,
});

const failing = (provider: string, model: string) =>
  create(events.HealthUpdateSchema, { provider, model, consecutiveFailures: 5, errorRate: 0.9, observedAtUnixMs: BigInt(Date.now()) });

describe("route planning", () => {
  it("picks the cheapest model whose quality meets the tier's target, other providers first among fallbacks", () => {
    const plan = planRoute(query(), config, new PriceTable(config, {}), new HealthTable());
    expect(plan.routes.map((r) => r.entry.id)).toEqual(["a/mid", "b/big", "a/cheap"]);
    expect(plan.reason).toMatch(/^tier complex: a\/mid is the cheapest of 2 candidate\(s\) meeting quality 0\.80/);
  });

  it("uses the router's per-request predictions over the configured priors", () => {
    const plan = planRoute(query({ predictedQuality: { "a/mid": 0.5, "a/cheap": 0.9 } }), config, new PriceTable(config, {}), new HealthTable());
    expect(plan.routes[0]!.entry.id).toBe("a/cheap");
  });

  it("honours a per-request quality target", () => {
    const plan = planRoute(query({ tier: "simple", qualityTarget: 0.9 }), config, new PriceTable(config, {}), new HealthTable());
    expect(plan.routes[0]!.entry.id).toBe("a/mid"); // none meets 0.9 in the tier: best predicted quality
    expect(plan.reason).toMatch(/no candidate meets quality 0\.90/);
  });

  it("skips a model whose circuit is open, and routes anyway when every circuit is open", () => {
    const health = new HealthTable();
    health.apply(failing("a", "mid"));
    const plan = planRoute(query(), config, new PriceTable(config, {}), health);
    expect(plan.routes.map((r) => r.entry.id)).toEqual(["b/big", "a/cheap"]);
    health.apply(failing("b", "big"));
    health.apply(failing("a", "cheap"));
    const desperate = planRoute(query(), config, new PriceTable(config, {}), health);
    expect(desperate.routes).toHaveLength(3);
    expect(desperate.reason).toMatch(/every candidate's circuit is open; routing anyway/);
  });

  it("half-opens a circuit after the cool-down and closes it on success", () => {
    let now = 1_000_000;
    const health = new HealthTable({ consecutiveFailures: 3, errorRate: 0.5, openMs: 10_000 }, () => now);
    health.apply(failing("a", "mid"));
    expect(health.circuit("a/mid")).toBe("open");
    now += 10_001;
    expect(health.circuit("a/mid")).toBe("half_open");
    health.apply(create(events.HealthUpdateSchema, { provider: "a", model: "mid", consecutiveFailures: 0, errorRate: 0.1 }));
    expect(health.circuit("a/mid")).toBe("closed");
  });

  it("follows a live price change", () => {
    const prices = new PriceTable(config, {});
    expect(prices.apply("a", "mid", create(events.PriceUpdateSchema, { provider: "a", model: "mid", inputMicroUsdPerMtok: 10_000_000n, outputMicroUsdPerMtok: 90_000_000n, effectiveAtUnixMs: 1n }))).toBeUndefined();
    const plan = planRoute(query(), config, prices, new HealthTable());
    expect(plan.routes[0]!.entry.id).toBe("b/big");
  });

  it("rejects invalid price updates and keeps the old price", () => {
    const prices = new PriceTable(config, {});
    const bad = (u: Partial<events.PriceUpdate>) => prices.apply("a", "mid", create(events.PriceUpdateSchema, { provider: "a", model: "mid", ...u }));
    expect(bad({ inputMicroUsdPerMtok: -1n })).toBe("input price is negative");
    expect(bad({ outputMicroUsdPerMtok: 10n ** 13n })).toMatch(/absurd/);
    expect(prices.apply("zz", "top", undefined)).toBe('unknown model "zz/top"');
    expect(prices.get("a/mid")!.outputMicroUsdPerMtok).toBe(4_000_000n);
  });

  it("pins, and refuses unknown models and tiers", () => {
    const prices = new PriceTable(config, {});
    expect(planRoute(query({ pinnedModel: "b/big" }), config, prices, new HealthTable()).routes.map((r) => r.entry.id)).toEqual(["b/big"]);
    expect(() => planRoute(query({ pinnedModel: "b/none" }), config, prices, new HealthTable())).toThrow(RouteError);
    expect(() => planRoute(query({ tier: "huge" }), config, prices, new HealthTable())).toThrow(/unknown tier "huge"/);
  });

  it("keeps to a price ceiling", () => {
    const plan = planRoute(query({ maxOutputMicroUsdPerMtok: 5_000_000n }), config, new PriceTable(config, {}), new HealthTable());
    expect(plan.routes.map((r) => r.entry.id)).toEqual(["a/mid", "a/cheap"]);
  });
});

describe("cost weight", () => {
  it("trades predicted quality against price: 0 picks the best model, 1 the cheapest", () => {
    const prices = new PriceTable(config, {});
    const pick = (costWeight: number) => planRoute(query({ costWeight }), config, prices, new HealthTable()).routes[0]!.entry.id;
    expect(pick(0)).toBe("b/big");
    expect(pick(1)).toBe("a/cheap");
    expect(planRoute(query({ costWeight: 0.5 }), config, prices, new HealthTable()).reason).toMatch(/best quality\/cost trade-off at cost_weight 0\.50/);
  });
});

describe("latency SLO", () => {
  it("skips models whose observed time to first token is over the tier's SLO, and routes anyway when all are", () => {
    const slow = parseConfig(`
tiers:
  - { name: fast, max_difficulty: 1, latency_slo_ms: 500 }
providers:
  - name: a
    kind: simulator
    enabled: true
    models:
      - { name: cheap, input_usd_per_mtok: 0.1, output_usd_per_mtok: 0.1, tiers: [fast] }
      - { name: dear, input_usd_per_mtok: 1, output_usd_per_mtok: 1, tiers: [fast] }
`);
    const health = new HealthTable();
    const report = (model: string, ttft: number) => health.apply(create(events.HealthUpdateSchema, { provider: "a", model, ewmaTtftMs: ttft }));
    report("cheap", 2_000);
    const prices = new PriceTable(slow, {});
    const plan = planRoute(query({ tier: "fast" }), slow, prices, health);
    expect(plan.routes.map((r) => r.entry.id)).toEqual(["a/dear"]);
    expect(plan.reason).toMatch(/1 candidate\(s\) skipped: slower than the 500 ms latency SLO/);
    report("dear", 900);
    const anyway = planRoute(query({ tier: "fast" }), slow, prices, health);
    expect(anyway.routes).toHaveLength(2);
    expect(anyway.reason).toMatch(/no candidate meets the 500 ms latency SLO; routing anyway/);
  });
});

describe("circuits and heartbeats", () => {
  it("does not re-open a half-open circuit on a repeated snapshot, only on a new failure", () => {
    let now = 5_000_000;
    const health = new HealthTable({ consecutiveFailures: 3, errorRate: 0.5, openMs: 10_000 }, () => now);
    const report = (observedAt: number, failures: number) =>
      health.apply(create(events.HealthUpdateSchema, { provider: "a", model: "mid", consecutiveFailures: failures, errorRate: failures > 0 ? 0.9 : 0, observedAtUnixMs: BigInt(observedAt) }));
    report(100, 3);
    now += 10_001;
    expect(health.circuit("a/mid")).toBe("half_open");
    report(100, 3); // heartbeat: the same observation again
    expect(health.circuit("a/mid")).toBe("half_open");
    report(200, 4); // a probe failed
    expect(health.circuit("a/mid")).toBe("open");
  });
});

describe("circuits over several provider replicas", () => {
  it("does not let one replica's success close what another's failures opened, and forgets replicas that went silent", () => {
    let now = 9_000_000;
    const health = new HealthTable({ consecutiveFailures: 3, errorRate: 0.5, openMs: 10_000 }, () => now);
    const report = (reporter: string, failures: number, observedAt: number) =>
      health.apply(create(events.HealthUpdateSchema, { provider: "a", model: "mid", reporter, consecutiveFailures: failures, errorRate: failures > 0 ? 0.9 : 0, observedAtUnixMs: BigInt(observedAt) }));
    report("r1", 3, 1);
    report("r2", 0, 1);
    expect(health.circuit("a/mid")).toBe("open"); // one of two replicas sees it failing
    report("r2", 0, 2);
    expect(health.circuit("a/mid")).toBe("open"); // r2's success does not close r1's circuit
    report("r3", 0, 1);
    expect(health.circuit("a/mid")).toBe("half_open"); // one of three: probes flow again
    now += 31_000; // r1 went silent
    report("r2", 0, 3);
    report("r3", 0, 2);
    expect(health.circuit("a/mid")).toBe("closed");
  });
});
