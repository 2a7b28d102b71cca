import { describe, expect, it } from "vitest";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { parseConfig } from "@switchyard/config";
import { events, policy as pb } from "@switchyard/proto";
import { PolicyHandler } from "../src/handler.js";
import { HealthTable } from "../src/health.js";
import { PriceTable } from "../src/prices.js";
import { decideRoute, planRoute, RouteError, type ProviderPreferences, type RouteQuery } from "../src/route.js";
import { TopTierCap } from "../src/tier-cap.js";

/** Tier complex (target 0.8): a/cheap 0.6, a/mid 0.85, b/big 0.95, c/fast 0.9. Tier simple: a/cheap, a/mid. */
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
  - name: c
    kind: simulator
    enabled: true
    models:
      - { name: fast, input_usd_per_mtok: 3, output_usd_per_mtok: 10, tiers: [complex], simulator: { quality: 0.9 } }
tenants:
  - { name: default }
  - { name: thrifty, cost_weight: 1 }
`);

const prices = new PriceTable(config, {});
const prefs = (p: Partial<ProviderPreferences>): ProviderPreferences => ({ order: [], only: [], ignore: [], allowFallbacks: true, ...p });
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
const plan = (q: Partial<RouteQuery>, health = new HealthTable()) => planRoute(query(q), config, prices, health);
const ids = (q: Partial<RouteQuery>, health?: HealthTable) => plan(q, health).routes.map((r) => r.entry.id);
const refusal = (f: () => unknown): RouteError | undefined => {
  try {
    f();
  } catch (err) {
    if (err instanceof RouteError) return err;
    throw err;
  }
  return undefined;
};

describe("provider preferences", () => {
  it("keeps to provider.only and away from provider.ignore, the quality rule choosing among the rest", () => {
    expect(ids({})).toEqual(["a/mid", "c/fast", "b/big", "a/cheap"]);
    expect(ids({ providers: prefs({ only: ["b", "c"] }) })).toEqual(["c/fast", "b/big"]);
    expect(ids({ providers: prefs({ ignore: ["a"] }) })).toEqual(["c/fast", "b/big"]);
    const d = decideRoute(query({ providers: prefs({ ignore: ["a"] }) }), config, prices, new HealthTable());
    expect(d.candidates.filter((c) => c.verdict === "excluded_by_request").map((c) => c.entry.id).sort()).toEqual(["a/cheap", "a/mid"]);
  });

  it("refuses, as unsatisfiable, preferences that leave no model of the tier, naming the tier's models", () => {
    const err = refusal(() => plan({ tier: "simple", providers: prefs({ only: ["b"] }) }));
    expect(err?.code).toBe("unsatisfiable");
    expect(err?.message).toBe('the provider preferences (only: b) leave no model of tier "simple" (its models: a/cheap, a/mid)');
  });

  it("tries the providers of provider.order first, in that order, the others after", () => {
    expect(ids({ providers: prefs({ order: ["b", "c"] }) })).toEqual(["b/big", "c/fast", "a/mid", "a/cheap"]);
    expect(plan({ providers: prefs({ order: ["b"] }) }).reason).toMatch(/^tier complex: b\/big is the first of provider.order \(b\) among the candidates; the rule's choice was a\/mid/);
    // An order naming a provider whose models the rule already put first changes nothing.
    expect(ids({ providers: prefs({ order: ["a"] }) })).toEqual(["a/mid", "a/cheap", "c/fast", "b/big"]);
  });

  it("with allow_fallbacks false, keeps to the providers of provider.order, or to the primary route alone", () => {
    expect(ids({ providers: prefs({ order: ["c", "b"], allowFallbacks: false }) })).toEqual(["c/fast", "b/big"]);
    expect(ids({ providers: prefs({ allowFallbacks: false }) })).toEqual(["a/mid"]);
    const err = refusal(() => plan({ tier: "simple", providers: prefs({ order: ["b"], allowFallbacks: false }) }));
    expect(err?.code).toBe("unsatisfiable");
    expect(err?.message).toMatch(/allow_fallbacks is false/);
  });

  it("sorts the models that meet the quality target by price, latency or throughput; never one below the target ahead", () => {
    const health = new HealthTable();
    const report = (provider: string, model: string, ewmaTtftMs: number, ewmaTotalMs: number) =>
      health.apply(create(events.HealthUpdateSchema, { provider, model, ewmaTtftMs, ewmaTotalMs, reporter: "r1", observedAtUnixMs: 1n }));
    report("a", "mid", 900, 5_000); // slow to start, slow to stream
    report("b", "big", 300, 900); // quick to start, fastest stream
    report("c", "fast", 100, 2_000); // quickest to start
    report("a", "cheap", 10, 20); // fastest of all, but below the quality target
    expect(ids({ providers: prefs({ sort: "latency" }) }, health)).toEqual(["c/fast", "b/big", "a/mid", "a/cheap"]);
    expect(ids({ providers: prefs({ sort: "throughput" }) }, health)).toEqual(["b/big", "c/fast", "a/mid", "a/cheap"]);
    expect(plan({ providers: prefs({ sort: "latency" }) }, health).reason).toMatch(/c\/fast is the fastest to first token of 3 candidate\(s\) meeting quality 0\.80 \(provider.sort latency\)/);
    // sort by price is the request's own rule: it wins over the tenant's cost weight.
    expect(ids({ tenant: "thrifty" })[0]).toBe("a/cheap");
    expect(ids({ tenant: "thrifty", providers: prefs({ sort: "price" }) })).toEqual(["a/mid", "c/fast", "b/big", "a/cheap"]);
  });

  it("keeps to a max input price as to a max output price, and the pinned model too", () => {
    expect(ids({ maxInputMicroUsdPerMtok: 4_000_000n })).toEqual(["a/mid", "c/fast", "a/cheap"]);
    expect(ids({ maxInputMicroUsdPerMtok: 4_000_000n, maxOutputMicroUsdPerMtok: 5_000_000n })).toEqual(["a/mid", "a/cheap"]);
    expect(refusal(() => plan({ maxInputMicroUsdPerMtok: 50_000n }))?.code).toBe("no_candidates");
    const pinned = refusal(() => plan({ pinnedModel: "b/big", maxOutputMicroUsdPerMtok: 5_000_000n }));
    expect(pinned?.code).toBe("no_candidates");
    expect(pinned?.message).toBe('model "b/big" was asked for, but its output price $20.000000/Mtok is over the request\'s max $5.000000/Mtok');
    expect(refusal(() => plan({ pinnedModel: "b/big", providers: prefs({ ignore: ["b"] }) }))?.code).toBe("unsatisfiable");
  });
});

describe("a list of models", () => {
  it("routes to the first listed model, the others following in the listed order, in the first one's tier", () => {
    const p = plan({ tier: "", models: ["b/big", "a/cheap", "c/fast"] });
    expect(p.routes.map((r) => r.entry.id)).toEqual(["b/big", "a/cheap", "c/fast"]);
    expect(p.tier).toBe("complex");
    expect(p.reason).toBe("b/big is the first model of 'models'");
  });

  it("skips what the preferences exclude, moves an open circuit last, and refuses an unknown model", () => {
    const health = new HealthTable();
    health.apply(create(events.HealthUpdateSchema, { provider: "c", model: "fast", consecutiveFailures: 5, errorRate: 0.9, observedAtUnixMs: 1n }));
    const p = plan({ tier: "", models: ["c/fast", "b/big", "a/mid", "a/cheap"], providers: prefs({ ignore: ["b"] }), maxOutputMicroUsdPerMtok: 12_000_000n }, health);
    expect(p.routes.map((r) => r.entry.id)).toEqual(["a/mid", "a/cheap", "c/fast"]);
    expect(p.reason).toMatch(/^a\/mid is the first model of 'models' that can serve; skipped b\/big: its provider "b" is in provider.ignore; 1 listed model\(s\) moved last: circuit open$/);
    expect(refusal(() => plan({ models: ["a/mid", "z/none"] }))).toMatchObject({ code: "unknown_model", message: 'model "z/none" in \'models\' is not routable' });
  });

  it("refuses a list the preferences exclude entirely: unsatisfiable by name, no candidate by price", () => {
    expect(refusal(() => plan({ models: ["b/big"], providers: prefs({ only: ["a"] }) }))).toMatchObject({
      code: "unsatisfiable",
      message: "no model in 'models' may serve this request (b/big: its provider \"b\" is not in provider.only)",
    });
    expect(refusal(() => plan({ models: ["b/big"], maxOutputMicroUsdPerMtok: 1n }))?.code).toBe("no_candidates");
  });
});

describe("PolicyService.Route with preferences", () => {
  const handler = new PolicyHandler(config, prices, new HealthTable(), () => false, new TopTierCap(config));
  const route = (r: Omit<MessageInitShape<typeof pb.RouteRequestSchema>, "$typeName">) => handler.route(create(pb.RouteRequestSchema, { tenant: "default", tier: "complex", ...r }));

  it("reads the preferences and the model list off the wire, and does not let a plan for a list be reused", () => {
    const p = route({ preferences: { providers: { order: ["b"], allowFallbacks: false } } }).plan!;
    expect(p.routes.map((r) => `${r.provider}/${r.model}`)).toEqual(["b/big"]);
    expect(p.reusable).toBe(true);
    const list = route({ tier: "", models: ["c/fast", "a/mid"] }).plan!;
    expect(list.routes.map((r) => `${r.provider}/${r.model}`)).toEqual(["c/fast", "a/mid"]);
    expect(list.reusable).toBe(false);
    const sorted = route({ preferences: { providers: { sort: pb.ProviderSort.PRICE }, maxInputMicroUsdPerMtok: 2_000_000n } }).plan!;
    expect(sorted.routes.map((r) => `${r.provider}/${r.model}`)).toEqual(["a/mid", "a/cheap"]);
  });

  it("answers InvalidArgument for preferences no model can meet, FailedPrecondition for prices none is under", () => {
    const code = (r: Parameters<typeof route>[0]) => {
      try {
        route(r);
      } catch (err) {
        return ConnectError.from(err).code;
      }
      return undefined;
    };
    expect(code({ tier: "simple", preferences: { providers: { only: ["b"] } } })).toBe(Code.InvalidArgument);
    expect(code({ preferences: { maxOutputMicroUsdPerMtok: 1n } })).toBe(Code.FailedPrecondition);
    expect(code({ tier: "", models: ["z/none"] })).toBe(Code.NotFound);
  });
});
