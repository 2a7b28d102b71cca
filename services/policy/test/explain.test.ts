import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { parseConfig } from "@switchyard/config";
import { events, policy as pb } from "@switchyard/proto";
import { PolicyHandler } from "../src/handler.js";
import { HealthTable } from "../src/health.js";
import { PriceTable } from "../src/prices.js";
import { TopTierCap } from "../src/tier-cap.js";

const config = parseConfig(`
tiers:
  - { name: simple, max_difficulty: 0.4, quality_target: 0.5 }
  - { name: complex, max_difficulty: 1, quality_target: 0.8, latency_slo_ms: 1000 }
providers:
  - name: a
    kind: simulator
    enabled: true
    models:
      - { name: cheap, input_usd_per_mtok: 0.1, output_usd_per_mtok: 0.4, tiers: [simple, complex], simulator: { quality: 0.6 } }
      - { name: mid, input_usd_per_mtok: 1, output_usd_per_mtok: 4, tiers: [simple, complex], simulator: { quality: 0.85 } }
      - { name: tiny, input_usd_per_mtok: 0.05, output_usd_per_mtok: 0.1, tiers: [simple] }
  - name: b
    kind: simulator
    enabled: true
    models:
      - { name: big, input_usd_per_mtok: 5, output_usd_per_mtok: 20, tiers: [complex], simulator: { quality: 0.95 } }
      - { name: huge, input_usd_per_mtok: 10, output_usd_per_mtok: 40, tiers: [complex], simulator: { quality: 0.97 } }
tenants:
  - { name: default }
  - { name: capped, max_top_tier_share: 0.01 }
`);

function policy(health = new HealthTable()) {
  return new PolicyHandler(config, new PriceTable(config, {}), health, () => false, new TopTierCap(config));
}

const request = (r: Partial<pb.RouteRequest> = {}) =>
  create(pb.RouteRequestSchema, { tenant: "default", tier: "complex", expectedInputTokens: 1_000n, expectedOutputTokens: 500n, ...r });

const explain = (h: PolicyHandler, r: pb.RouteRequest) => h.explainRoute(create(pb.ExplainRouteRequestSchema, { route: r }));

const refusal = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    return ConnectError.from(err);
  }
  return undefined;
};

const byId = (res: pb.ExplainRouteResponse) => new Map(res.candidates.map((c) => [`${c.provider}/${c.model}`, c]));

describe("ExplainRoute", () => {
  it("answers the plan Route answers, for every kind of decision", () => {
    const health = new HealthTable();
    health.apply(create(events.HealthUpdateSchema, { provider: "b", model: "huge", consecutiveFailures: 5, errorRate: 0.9, observedAtUnixMs: 1n }));
    const h = policy(health);
    for (const r of [
      request(),
      request({ tier: "simple" }),
      request({ predictedQuality: { "a/cheap": 0.9, "a/mid": 0.4 } }),
      request({ preferences: { qualityTarget: 0.99 } }),
      request({ preferences: { costWeight: 0.4 } }),
      request({ preferences: { maxOutputMicroUsdPerMtok: 5_000_000n } }),
      request({ pinnedModel: "b/big", tier: "" }),
    ]) {
      const routed = h.route(r).plan!;
      const explained = explain(h, r);
      expect(explained.plan?.routes).toEqual(routed.routes);
      expect(explained.plan?.reason).toBe(routed.reason);
      expect(explained.plan?.tier).toBe(routed.tier);
      // The candidates in the plan come first, in plan order, with the same numbers.
      const inPlan = explained.candidates.filter((c) => c.planPosition > 0);
      expect(inPlan.map((c) => `${c.provider}/${c.model}`)).toEqual(routed.routes.map((x) => `${x.provider}/${x.model}`));
      expect(inPlan.map((c) => c.expectedCostMicroUsd)).toEqual(routed.routes.map((x) => x.expectedCostMicroUsd));
      expect(explained.candidates.slice(0, inPlan.length)).toEqual(inPlan);
      expect(inPlan[0]!.verdict).toBe(pb.CandidateVerdict.CHOSEN);
    }
  });

  it("gives every model a verdict with the numbers it was judged on", () => {
    const health = new HealthTable();
    health.apply(create(events.HealthUpdateSchema, { provider: "b", model: "huge", consecutiveFailures: 5, errorRate: 0.9, observedAtUnixMs: 1n }));
    const res = explain(policy(health), request({ predictedQuality: { "a/cheap": 0.55 } }));
    const c = byId(res);
    expect(res.qualityTarget).toBe(0.8);
    expect(res.expectedOutputTokens).toBe(500n);

    expect(c.get("a/mid")).toMatchObject({ verdict: pb.CandidateVerdict.CHOSEN, planPosition: 1, predictedQuality: 0.85, qualitySource: "prior" });
    // 1,000 input tokens at $1/Mtok + 500 output tokens at $4/Mtok = $0.003.
    expect(c.get("a/mid")!.expectedCostMicroUsd).toBe(3_000n);
    expect(c.get("a/mid")!.explanation).toMatch(/cheapest expected cost among the models meeting quality 0\.80/);

    expect(c.get("b/big")).toMatchObject({ verdict: pb.CandidateVerdict.COSTLIER, planPosition: 2, expectedCostMicroUsd: 15_000n });
    expect(c.get("b/big")!.explanation).toBe("meets quality 0.80 (predicted quality 0.95) but expected cost $0.015000 is over the choice's $0.003000");

    expect(c.get("a/cheap")).toMatchObject({ verdict: pb.CandidateVerdict.BELOW_QUALITY_TARGET, planPosition: 3, predictedQuality: 0.55, qualitySource: "router" });
    expect(c.get("a/cheap")!.explanation).toBe("predicted quality 0.55 is below the target 0.80");

    expect(c.get("b/huge")).toMatchObject({ verdict: pb.CandidateVerdict.CIRCUIT_OPEN, planPosition: 0, circuit: "open" });
    expect(c.get("a/tiny")).toMatchObject({ verdict: pb.CandidateVerdict.NOT_IN_TIER, planPosition: 0, qualitySource: "default" });
    expect(c.get("a/tiny")!.explanation).toBe("serves simple, not complex");
    // The left-out models follow the plan, nearest to being chosen first.
    expect(res.candidates.map((x) => `${x.provider}/${x.model}`)).toEqual(["a/mid", "b/big", "a/cheap", "b/huge", "a/tiny"]);
    for (const x of res.candidates) expect(x.price?.outputMicroUsdPerMtok).toBeGreaterThan(0n);
  });

  it("names the price cap, the latency SLO and the cost weight when they decide", () => {
    const capped = byId(explain(policy(), request({ preferences: { maxOutputMicroUsdPerMtok: 5_000_000n } })));
    expect(capped.get("b/big")).toMatchObject({ verdict: pb.CandidateVerdict.OVER_PRICE_CAP, planPosition: 0 });
    expect(capped.get("b/big")!.explanation).toBe("output price $20.000000/Mtok is over the request's max $5.000000/Mtok");

    const health = new HealthTable();
    health.apply(create(events.HealthUpdateSchema, { provider: "a", model: "mid", ewmaTtftMs: 2_500 }));
    const slow = byId(explain(policy(health), request()));
    expect(slow.get("a/mid")).toMatchObject({ verdict: pb.CandidateVerdict.TOO_SLOW, ttftMs: 2_500 });
    expect(slow.get("a/mid")!.explanation).toBe("time to first token 2500 ms is over the tier's 1000 ms SLO");
    expect(slow.get("b/big")!.verdict).toBe(pb.CandidateVerdict.CHOSEN);

    const weighed = explain(policy(), request({ preferences: { costWeight: 1 } }));
    expect(weighed.costWeight).toBe(1);
    const w = byId(weighed);
    expect(w.get("a/cheap")).toMatchObject({ verdict: pb.CandidateVerdict.CHOSEN });
    expect(w.get("b/big")!.verdict).toBe(pb.CandidateVerdict.LOWER_SCORE);
    expect(w.get("b/big")!.utility!).toBeLessThan(w.get("a/cheap")!.utility!);
  });

  it("explains a request no model can take instead of refusing it, while Route refuses it", () => {
    const h = policy();
    const r = request({ preferences: { maxOutputMicroUsdPerMtok: 100_000n } });
    expect(refusal(() => h.route(r))?.code).toBe(Code.FailedPrecondition);
    const res = explain(h, r);
    expect(res.plan?.routes).toEqual([]);
    expect(res.plan?.reason).toBe('no model of tier "complex" is within the max price');
    expect(res.candidates.every((c) => c.planPosition === 0)).toBe(true);
    expect(res.candidates.filter((c) => c.verdict === pb.CandidateVerdict.OVER_PRICE_CAP)).toHaveLength(4);
  });

  it("refuses an unknown pinned model or tier as Route does", () => {
    const h = policy();
    for (const r of [request({ pinnedModel: "b/none", tier: "" }), request({ tier: "huge" })]) {
      expect(refusal(() => h.route(r))?.code).toBe(Code.NotFound);
      expect(refusal(() => explain(h, r))?.code).toBe(Code.NotFound);
    }
  });

  it("reads a tenant's top-tier share without using it up", () => {
    // A share of 1 % over 200 requests: two top-tier requests, then the tier below.
    const h = policy();
    const r = request({ tenant: "capped" });
    for (let i = 0; i < 20; i++) expect(explain(h, r).plan?.tier).toBe("complex");
    expect(h.route(r).plan?.tier).toBe("complex");
    expect(h.route(r).plan?.tier).toBe("complex");
    const explained = explain(h, r);
    expect(explained.requestedTier).toBe("complex");
    expect(explained.plan?.tier).toBe("simple");
    expect(explained.plan?.reason).toMatch(/tenant capped is at its top-tier cap/);
    expect(h.route(r).plan?.tier).toBe("simple");
  });
});
