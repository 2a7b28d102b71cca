import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { trace } from "@opentelemetry/api";
import type { Config } from "@switchyard/config";
import { policy as pb } from "@switchyard/proto";
import type { HealthTable } from "./health.js";
import type { PriceTable } from "./prices.js";
import { planRoute, RouteError } from "./route.js";
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
    let plan;
    let reusable = false;
    try {
      const prefs = req.preferences;
      const admitted = req.pinnedModel ? { tier: req.tier, note: undefined, commit: () => {}, capped: false } : this.topTierCap.admit(req.tenant, req.tier);
      // A plan for a tenant whose top-tier share is capped depends on its recent traffic: every
      // request must come here to be counted.
      reusable = !req.pinnedModel && !admitted.capped;
      plan = planRoute(
        {
          tenant: req.tenant,
          tier: admitted.tier,
          predictedQuality: req.predictedQuality,
          pinnedModel: req.pinnedModel,
          expectedInputTokens: Number(req.expectedInputTokens),
          expectedOutputTokens: Number(req.expectedOutputTokens),
          ...(prefs?.qualityTarget === undefined ? {} : { qualityTarget: prefs.qualityTarget }),
          ...(prefs?.costWeight === undefined ? {} : { costWeight: prefs.costWeight }),
          maxOutputMicroUsdPerMtok: prefs?.maxOutputMicroUsdPerMtok ?? 0n,
        },
        this.config,
        this.prices,
        this.health,
      );
      admitted.commit();
      if (admitted.note) plan = { ...plan, reason: `${plan.reason}; ${admitted.note}` };
    } catch (err) {
      if (err instanceof RouteError) {
        throw new ConnectError(err.message, err.code === "no_candidates" ? Code.FailedPrecondition : Code.NotFound);
      }
      throw err;
    }
    trace.getActiveSpan()?.setAttributes({
      "switchyard.tier": plan.tier,
      "switchyard.route_reason": plan.reason,
      "switchyard.route": plan.routes.map((r) => r.entry.id),
      // Every candidate with its score: "model quality=0.80 cost_micro_usd=12 circuit=closed".
      "switchyard.candidates": plan.routes.map(
        (r) => `${r.entry.id} quality=${Number.isNaN(r.predictedQuality) ? "n/a" : r.predictedQuality.toFixed(3)} cost_micro_usd=${r.expectedCostMicroUsd} circuit=${r.circuit}`,
      ),
    });
    return create(pb.RouteResponseSchema, {
      plan: {
        tier: plan.tier,
        reason: plan.reason,
        tablesStale: this.tablesStale(),
        reusable: reusable && !this.tablesStale(),
        qualityInputs: plan.qualityInputs,
        routes: plan.routes.map((r) => ({
          provider: r.entry.provider.name,
          model: r.entry.model.name,
          price: {
            inputMicroUsdPerMtok: r.price.inputMicroUsdPerMtok,
            outputMicroUsdPerMtok: r.price.outputMicroUsdPerMtok,
            cachedInputMicroUsdPerMtok: r.price.cachedInputMicroUsdPerMtok,
          },
          predictedQuality: Number.isNaN(r.predictedQuality) ? 0 : r.predictedQuality,
          expectedCostMicroUsd: r.expectedCostMicroUsd,
          circuit: r.circuit,
        })),
      },
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
          price: {
            inputMicroUsdPerMtok: p.inputMicroUsdPerMtok,
            outputMicroUsdPerMtok: p.outputMicroUsdPerMtok,
            cachedInputMicroUsdPerMtok: p.cachedInputMicroUsdPerMtok,
          },
        };
      }),
    });
  }
}
