import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Config } from "@switchyard/config";
import { classifier as classifierPb, gateway as pb, policy as policyPb } from "@switchyard/proto";
import type { Logger } from "@switchyard/telemetry";
import { GatewayError } from "./errors.js";
import type { CompletionRequest, MeshClients } from "./orchestrator.js";

/**
 * The policy's RouteRequest for a completion, as the orchestrator sends it (`askPolicy`): the tier,
 * the classifier's predictions and input estimate, max_tokens as the expected output, the
 * client's routing preferences. An explanation asks with exactly this, so it is answered for the
 * request a completion would make.
 */
export function routeRequestFor(req: CompletionRequest, tier: string, c: classifierPb.ClassifyResponse | undefined): MessageInitShape<typeof policyPb.RouteRequestSchema> {
  const pinned = req.choice.kind === "pinned" ? req.choice.id : "";
  const models = req.choice.kind === "list" ? req.choice.ids : [];
  const p = req.providers;
  return {
    tenant: req.tenant,
    tier: pinned || models.length > 0 ? "" : tier,
    pinnedModel: pinned,
    models,
    predictedQuality: c?.predictedQuality ?? {},
    expectedInputTokens: c?.estimatedInputTokens ?? 0n,
    expectedOutputTokens: BigInt(req.sampling.maxTokens ?? 0),
    preferences: {
      ...(req.qualityTarget === undefined ? {} : { qualityTarget: req.qualityTarget }),
      ...(req.costWeight === undefined ? {} : { costWeight: req.costWeight }),
      maxOutputMicroUsdPerMtok: req.maxOutputMicroUsdPerMtok,
      maxInputMicroUsdPerMtok: req.maxInputMicroUsdPerMtok ?? 0n,
      ...(p
        ? {
            providers: {
              order: p.order,
              only: p.only,
              ignore: p.ignore,
              allowFallbacks: p.allowFallbacks,
              sort: p.sort ? SORT[p.sort] : policyPb.ProviderSort.UNSPECIFIED,
            },
          }
        : {}),
    },
  };
}

const SORT = { price: policyPb.ProviderSort.PRICE, throughput: policyPb.ProviderSort.THROUGHPUT, latency: policyPb.ProviderSort.LATENCY } as const;

const VERDICT: Record<policyPb.CandidateVerdict, pb.CandidateVerdict> = {
  [policyPb.CandidateVerdict.UNSPECIFIED]: pb.CandidateVerdict.UNSPECIFIED,
  [policyPb.CandidateVerdict.CHOSEN]: pb.CandidateVerdict.CHOSEN,
  [policyPb.CandidateVerdict.BELOW_QUALITY_TARGET]: pb.CandidateVerdict.BELOW_QUALITY_TARGET,
  [policyPb.CandidateVerdict.COSTLIER]: pb.CandidateVerdict.COSTLIER,
  [policyPb.CandidateVerdict.LOWER_SCORE]: pb.CandidateVerdict.LOWER_SCORE,
  [policyPb.CandidateVerdict.CIRCUIT_OPEN]: pb.CandidateVerdict.CIRCUIT_OPEN,
  [policyPb.CandidateVerdict.OVER_PRICE_CAP]: pb.CandidateVerdict.OVER_PRICE_CAP,
  [policyPb.CandidateVerdict.TOO_SLOW]: pb.CandidateVerdict.TOO_SLOW,
  [policyPb.CandidateVerdict.NOT_IN_TIER]: pb.CandidateVerdict.NOT_IN_TIER,
  // Never seen here: RouteExplain's CompleteRequest carries no model list or provider preferences.
  [policyPb.CandidateVerdict.EXCLUDED_BY_REQUEST]: pb.CandidateVerdict.UNSPECIFIED,
  [policyPb.CandidateVerdict.REQUESTED_ORDER]: pb.CandidateVerdict.UNSPECIFIED,
};

/**
 * Explains the routing of a completion request without answering it: the classifier and the
 * policy decide as they would for the completion (the same tier rules, the same RouteRequest; the
 * policy's ExplainRoute runs Route's own decision), and no provider is called. Unlike a
 * completion, it neither reuses a plan nor falls back to the last one: an explanation is of the
 * decision made now.
 */
export class RouteExplainer {
  constructor(
    private readonly clients: Pick<MeshClients, "classifier" | "policy">,
    private readonly config: Config,
    private readonly logger: Logger,
  ) {}

  async explain(req: CompletionRequest, signal: AbortSignal): Promise<pb.RouteExplainResponse> {
    const classification = req.choice.kind === "pinned" ? undefined : await this.classify(req, signal);
    const tier = req.choice.kind === "tier" ? req.choice.tier : (classification?.tier ?? this.middleTier());
    const tierSource =
      req.choice.kind === "pinned" ? "pinned" : req.choice.kind === "tier" ? "model" : classification ? "classifier" : "classifier unavailable";
    const res = await this.explainRoute(routeRequestFor(req, tier, classification), signal);
    const plan = res.plan;
    const primary = plan?.routes[0];
    // The words a completion's RouteInfo.reason would carry (the orchestrator's prefix included).
    const classifyNote = req.choice.kind === "auto" && !classification ? "classifier unavailable, middle tier; " : "";
    return create(pb.RouteExplainResponseSchema, {
      tenant: req.tenant,
      ...(classification?.features ? { features: featuresOf(classification.features) } : {}),
      difficulty: classification?.difficulty ?? 0,
      taskType: classification?.taskType ?? "",
      classifiedTier: res.requestedTier || plan?.tier || "",
      tier: plan?.tier ?? "",
      tierSource,
      qualityTarget: res.qualityTarget,
      ...(res.costWeight === undefined ? {} : { costWeight: res.costWeight }),
      estimatedInputTokens: classification?.estimatedInputTokens ?? 0n,
      expectedOutputTokens: res.expectedOutputTokens,
      candidates: res.candidates.map((c) => ({
        model: `${c.provider}/${c.model}`,
        inputMicroUsdPerMtok: c.price?.inputMicroUsdPerMtok ?? 0n,
        outputMicroUsdPerMtok: c.price?.outputMicroUsdPerMtok ?? 0n,
        predictedQuality: c.predictedQuality,
        qualitySource: c.qualitySource,
        expectedCostMicroUsd: c.expectedCostMicroUsd,
        circuit: c.circuit,
        ttftMs: c.ttftMs,
        verdict: VERDICT[c.verdict],
        planPosition: c.planPosition,
        explanation: c.explanation,
        ...(c.utility === undefined ? {} : { utility: c.utility }),
      })),
      model: primary ? `${primary.provider}/${primary.model}` : "",
      reason: primary ? classifyNote + (plan?.reason ?? "") : `no route: ${plan?.reason ?? "no candidate"}`,
      routerVersion: classification?.routerVersion ?? "",
      tablesStale: plan?.tablesStale ?? false,
    });
  }

  /** The classifier's answer with the prompt's features, or undefined when it is down (the middle tier, as for a completion). */
  private async classify(req: CompletionRequest, signal: AbortSignal): Promise<classifierPb.ClassifyResponse | undefined> {
    try {
      return await this.clients.classifier.classify({ messages: req.messages, tenant: req.tenant, includeFeatures: true }, { signal, timeoutMs: 1_000 });
    } catch (err) {
      if (signal.aborted) throw err;
      this.logger.warn("classifier unavailable; explaining with the middle tier", { err });
      return undefined;
    }
  }

  private async explainRoute(route: MessageInitShape<typeof policyPb.RouteRequestSchema>, signal: AbortSignal): Promise<policyPb.ExplainRouteResponse> {
    try {
      return await this.clients.policy.explainRoute({ route }, { signal, timeoutMs: 1_000 });
    } catch (err) {
      if (signal.aborted) throw err;
      const ce = ConnectError.from(err);
      // The same mapping as a completion's (the orchestrator's askPolicy).
      if (ce.code === Code.NotFound) throw new GatewayError(404, "not_found_error", "model_not_found", ce.rawMessage, "model");
      if (ce.code === Code.FailedPrecondition) throw new GatewayError(503, "api_error", "no_route", ce.rawMessage);
      this.logger.warn("policy unavailable for an explanation", { err });
      throw new GatewayError(503, "api_error", "policy_unavailable", "the routing policy is unavailable");
    }
  }

  /** The tier a completion gets when the classifier is down (the orchestrator's `middleTier`). */
  private middleTier(): string {
    return this.config.tiers[Math.floor((this.config.tiers.length - 1) / 2)]!.name;
  }
}

/** The classifier's feature summary as the public message (the same fields, another package). */
function featuresOf(f: classifierPb.PromptFeatures): MessageInitShape<typeof pb.PromptFeaturesSchema> {
  const { $typeName: _internal, ...fields } = f;
  return fields;
}
