import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { trace } from "@opentelemetry/api";
import type { Config } from "@switchyard/config";
import { type common, policy as pb } from "@switchyard/proto";
import type { HealthTable } from "./health.js";
import type { ModelPrice, PriceTable } from "./prices.js";
import { decideRoute, describeCandidate, RouteError, type Plan, type ProviderPreferences, type RouteDecision, type RouteQuery, type Verdict } from "./route.js";
import type { TopTierCap } from "./tier-cap.js";

/** `switchyard.policy.v1.PolicyService`. */
export class PolicyHandler implements ServiceImpl<typeof pb.PolicyService> {
  constructor(
    private readonly config: Config,
    private readonly prices: PriceTable,
    private readonly health: HealthTable,
    private readonly tablesStale: () => boolean,
    private readonly topTierCap: TopTierCap,
  ) {}

  route(req: pb.RouteRequest): pb.RouteResponse {
    const { decision, reusable } = this.decide(req, true);
    const plan = decision.plan!;
    trace.getActiveSpan()?.setAttributes({
      "switchyard.tier": plan.tier,
      "switchyard.route_reason": plan.reason,
      "switchyard.route": plan.routes.map((r) => r.entry.id),
      // Every candidate with its score: "model quality=0.80 cost_micro_usd=12 circuit=closed".
      "switchyard.candidates": plan.routes.map(
        (r) => `${r.entry.id} quality=${Number.isNaN(r.predictedQuality) ? "n/a" : r.predictedQuality.toFixed(3)} cost_micro_usd=${r.expectedCostMicroUsd} circuit=${r.circuit}`,
      ),
    });
    return create(pb.RouteResponseSchema, { plan: this.planMessage(plan, reusable) });
  }

  /**
   * What `route` would answer for this request now, with every model weighed: the same decision
   * (`decideRoute`, after the same top-tier cap), but nothing is counted against the tenant's
   * share, and a tier no model can serve is explained rather than refused.
   */
  explainRoute(req: pb.ExplainRouteRequest): pb.ExplainRouteResponse {
    const route = req.route ?? create(pb.RouteRequestSchema);
    const { decision, query, requestedTier } = this.decide(route, false);
    const plan = decision.plan
      ? this.planMessage(decision.plan, false)
      : create(pb.RoutePlanSchema, { tier: decision.tier, reason: decision.noRoute ?? "", tablesStale: this.tablesStale() });
    return create(pb.ExplainRouteResponseSchema, {
      plan,
      requestedTier,
      qualityTarget: Number.isNaN(decision.qualityTarget) ? 0 : decision.qualityTarget,
      ...(decision.costWeight === undefined ? {} : { costWeight: decision.costWeight }),
      expectedOutputTokens: BigInt(decision.expectedOutputTokens),
      candidates: decision.candidates.map((c) => ({
        provider: c.entry.provider.name,
        model: c.entry.model.name,
        price: priceMessage(c.price),
        predictedQuality: Number.isNaN(c.predictedQuality) ? 0 : c.predictedQuality,
        qualitySource: c.qualitySource,
        expectedCostMicroUsd: c.expectedCostMicroUsd,
        circuit: c.circuit,
        ttftMs: c.ttftMs ?? 0,
        verdict: VERDICT[c.verdict],
        planPosition: c.planPosition,
        explanation: describeCandidate(c, decision, query, this.config),
        ...(c.utility === undefined ? {} : { utility: c.utility }),
      })),
    });
  }

  /**
   * The decision for a request, after the tenant's top-tier cap. `count`: record the request in
   * the tenant's share (a request being routed) or only read it (an explanation).
   */
  private decide(req: pb.RouteRequest, count: boolean): { decision: RouteDecision; query: RouteQuery; reusable: boolean; requestedTier: string } {
    try {
      const prefs = req.preferences;
      // A model the client named (pinned or listed) is not routed in a tier: no tier cap applies.
      const named = req.pinnedModel !== "" || req.models.length > 0;
      const admitted = named ? { tier: req.tier, note: undefined, commit: () => {}, capped: false } : this.topTierCap.admit(req.tenant, req.tier);
      // A plan for a tenant whose top-tier share is capped depends on its recent traffic: every
      // request must come here to be counted.
      const reusable = !named && !admitted.capped;
      const query: RouteQuery = {
        tenant: req.tenant,
        tier: admitted.tier,
        predictedQuality: req.predictedQuality,
        pinnedModel: req.pinnedModel,
        expectedInputTokens: Number(req.expectedInputTokens),
        expectedOutputTokens: Number(req.expectedOutputTokens),
        ...(prefs?.qualityTarget === undefined ? {} : { qualityTarget: prefs.qualityTarget }),
        ...(prefs?.costWeight === undefined ? {} : { costWeight: prefs.costWeight }),
        maxOutputMicroUsdPerMtok: prefs?.maxOutputMicroUsdPerMtok ?? 0n,
        ...(prefs?.maxInputMicroUsdPerMtok ? { maxInputMicroUsdPerMtok: prefs.maxInputMicroUsdPerMtok } : {}),
        ...(req.models.length > 0 ? { models: req.models } : {}),
        ...(prefs?.providers ? { providers: providerPreferences(prefs.providers) } : {}),
      };
      let decision = decideRoute(query, this.config, this.prices, this.health);
      if (count) {
        if (!decision.plan) throw new RouteError(decision.unsatisfiable ? "unsatisfiable" : "no_candidates", decision.noRoute ?? "no route");
        admitted.commit();
      }
      if (admitted.note && decision.plan) decision = { ...decision, plan: { ...decision.plan, reason: `${decision.plan.reason}; ${admitted.note}` } };
      return { decision, query, reusable, requestedTier: req.tier };
    } catch (err) {
      if (err instanceof RouteError) {
        throw new ConnectError(err.message, CODES[err.code]);
      }
      throw err;
    }
  }

  private planMessage(plan: Plan, reusable: boolean): pb.RoutePlan {
    return create(pb.RoutePlanSchema, {
      tier: plan.tier,
      reason: plan.reason,
      tablesStale: this.tablesStale(),
      reusable: reusable && !this.tablesStale(),
      qualityInputs: plan.qualityInputs,
      routes: plan.routes.map((r) => ({
        provider: r.entry.provider.name,
        model: r.entry.model.name,
        price: priceMessage(r.price),
        predictedQuality: Number.isNaN(r.predictedQuality) ? 0 : r.predictedQuality,
        expectedCostMicroUsd: r.expectedCostMicroUsd,
        circuit: r.circuit,
      })),
    });
  }

  listModels(): pb.ListModelsResponse {
    return create(pb.ListModelsResponseSchema, {
      models: this.prices.catalog.map((e) => {
        const p = this.prices.get(e.id)!;
        return {
          provider: e.provider.name,
          model: e.model.name,
          tiers: e.model.tiers,
          circuit: this.health.circuit(e.id),
          priceSource: p.source,
          price: priceMessage(p),
        };
      }),
    });
  }
}

/**
 * How a route that cannot be planned is refused: no candidate now (the tables may change) is
 * FailedPrecondition; a request whose own preferences exclude every candidate by name is
 * InvalidArgument; an unknown model or tier is NotFound.
 */
const CODES: Record<RouteError["code"], Code> = {
  no_candidates: Code.FailedPrecondition,
  unsatisfiable: Code.InvalidArgument,
  unknown_model: Code.NotFound,
  unknown_tier: Code.NotFound,
};

const SORT: Record<pb.ProviderSort, ProviderPreferences["sort"]> = {
  [pb.ProviderSort.UNSPECIFIED]: undefined,
  [pb.ProviderSort.PRICE]: "price",
  [pb.ProviderSort.THROUGHPUT]: "throughput",
  [pb.ProviderSort.LATENCY]: "latency",
};

function providerPreferences(p: pb.ProviderPreferences): ProviderPreferences {
  const sort = SORT[p.sort];
  return { order: p.order, only: p.only, ignore: p.ignore, allowFallbacks: p.allowFallbacks ?? true, ...(sort ? { sort } : {}) };
}

const VERDICT: Record<Verdict, pb.CandidateVerdict> = {
  chosen: pb.CandidateVerdict.CHOSEN,
  below_quality_target: pb.CandidateVerdict.BELOW_QUALITY_TARGET,
  costlier: pb.CandidateVerdict.COSTLIER,
  lower_score: pb.CandidateVerdict.LOWER_SCORE,
  circuit_open: pb.CandidateVerdict.CIRCUIT_OPEN,
  over_price_cap: pb.CandidateVerdict.OVER_PRICE_CAP,
  too_slow: pb.CandidateVerdict.TOO_SLOW,
  not_in_tier: pb.CandidateVerdict.NOT_IN_TIER,
  excluded_by_request: pb.CandidateVerdict.EXCLUDED_BY_REQUEST,
  requested_order: pb.CandidateVerdict.REQUESTED_ORDER,
};

function priceMessage(p: ModelPrice): MessageInitShape<typeof common.PriceSchema> {
  return { inputMicroUsdPerMtok: p.inputMicroUsdPerMtok, outputMicroUsdPerMtok: p.outputMicroUsdPerMtok, cachedInputMicroUsdPerMtok: p.cachedInputMicroUsdPerMtok };
}
