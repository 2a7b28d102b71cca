import type { Config, TierConfig } from "@switchyard/config";
import type { Circuit, HealthTable } from "./health.js";
import type { CatalogEntry, ModelPrice, PriceTable } from "./prices.js";

/** What the policy is asked. */
export interface RouteQuery {
  tenant: string;
  tier: string;
  /** Predicted quality per model name the router knows. */
  predictedQuality: Record<string, number>;
  /** "provider/model" when the client pinned one. */
  pinnedModel: string;
  expectedInputTokens: number;
  expectedOutputTokens: number;
  qualityTarget?: number;
  /** 0 = only quality matters, 1 = only cost; when set (here or on the tenant), replaces the target rule. */
  costWeight?: number;
  maxOutputMicroUsdPerMtok: bigint;
}

/** One scored route. */
export interface PlannedRoute {
  entry: CatalogEntry;
  price: ModelPrice;
  predictedQuality: number;
  expectedCostMicroUsd: bigint;
  /** Expected cost in micro-dollars x 10^6, so cheap models do not tie after rounding. */
  expectedCostScaled: bigint;
  circuit: Circuit;
}

export interface Plan {
  routes: PlannedRoute[];
  tier: string;
  reason: string;
  /** Every predicted-quality key the plan read (whether or not the query had a value for it). */
  qualityInputs: string[];
}

/** A query the policy cannot route; `code` says whether the client or the configuration is at fault. */
export class RouteError extends Error {
  constructor(
    readonly code: "unknown_model" | "unknown_tier" | "no_candidates",
    message: string,
  ) {
    super(message);
  }
}

/**
 * Plans a route: the candidates allowed for the tier (healthy, within the tier's latency SLO and
 * the max price) are scored by predicted quality and expected cost; the cheapest whose quality
 * meets the target goes first,
 * the rest follow as fallbacks, routes on other providers before more of the same provider.
 * When every candidate's circuit is open it routes anyway and says so: refusing all traffic
 * would turn a partial outage into a total one.
 */
export function planRoute(query: RouteQuery, config: Config, prices: PriceTable, health: HealthTable): Plan {
  if (query.pinnedModel) return planPinned(query, prices, health);
  const tier = config.tiers.find((t) => t.name === query.tier);
  if (!tier) throw new RouteError("unknown_tier", `unknown tier "${query.tier}"`);
  const tenant = config.tenants.find((t) => t.name === query.tenant);
  const target = query.qualityTarget ?? tenant?.quality_target ?? tier.quality_target;

  const inTier = prices.catalog.filter((e) => e.model.tiers.includes(tier.name));
  if (inTier.length === 0) throw new RouteError("no_candidates", `no active model serves tier "${tier.name}"`);
  let scored = inTier.map((e) => score(e, query, tier, prices, health));
  const notes: string[] = [];
  if (query.maxOutputMicroUsdPerMtok > 0n) {
    const affordable = scored.filter((r) => r.price.outputMicroUsdPerMtok <= query.maxOutputMicroUsdPerMtok);
    if (affordable.length === 0) throw new RouteError("no_candidates", `no model of tier "${tier.name}" is within the max price`);
    scored = affordable;
  }
  const healthy = scored.filter((r) => r.circuit !== "open");
  if (healthy.length === 0) notes.push("every candidate's circuit is open; routing anyway");
  else if (healthy.length < scored.length) notes.push(`${scored.length - healthy.length} candidate(s) skipped: circuit open`);
  let pool = healthy.length > 0 ? healthy : scored;
  if (tier.latency_slo_ms !== undefined) {
    // Observed time to first token (EWMA, from the provider replicas' health reports) over the
    // tier's SLO rules a model out; a model not yet observed is given the benefit of the doubt.
    const slo = tier.latency_slo_ms;
    const fast = pool.filter((r) => (health.ttftMs(r.entry.id) ?? 0) <= slo);
    if (fast.length === 0) notes.push(`no candidate meets the ${slo} ms latency SLO; routing anyway`);
    else if (fast.length < pool.length) notes.push(`${pool.length - fast.length} candidate(s) skipped: slower than the ${slo} ms latency SLO`);
    if (fast.length > 0) pool = fast;
  }

  const costWeight = query.costWeight ?? tenant?.cost_weight;
  let ordered: PlannedRoute[];
  let why: string;
  if (costWeight !== undefined) {
    // Weigh predicted quality against price: cost is scaled to the dearest candidate so both
    // terms live in [0, 1].
    const maxCost = pool.reduce((m, r) => (r.expectedCostScaled > m ? r.expectedCostScaled : m), 1n);
    const utility = (r: PlannedRoute) => (1 - costWeight) * r.predictedQuality - costWeight * (Number(r.expectedCostScaled) / Number(maxCost));
    ordered = [...pool].sort((a, b) => utility(b) - utility(a) || byCost(a, b));
    why = `best quality/cost trade-off at cost_weight ${costWeight.toFixed(2)}`;
  } else {
    const meets = pool.filter((r) => r.predictedQuality >= target).sort(byCost);
    const misses = pool.filter((r) => r.predictedQuality < target).sort((a, b) => b.predictedQuality - a.predictedQuality || byCost(a, b));
    ordered = [...meets, ...misses];
    why =
      meets.length > 0
        ? `cheapest of ${meets.length} candidate(s) meeting quality ${target.toFixed(2)}`
        : `no candidate meets quality ${target.toFixed(2)}; best predicted quality`;
  }
  const primary = ordered[0]!;
  const rest = ordered.slice(1);
  const fallbacks = [...rest.filter((r) => r.entry.provider.name !== primary.entry.provider.name), ...rest.filter((r) => r.entry.provider.name === primary.entry.provider.name)];
  return {
    routes: [primary, ...fallbacks],
    tier: tier.name,
    reason: [`tier ${tier.name}: ${primary.entry.id} is the ${why}`, ...notes].join("; "),
    qualityInputs: [...new Set(inTier.flatMap((e) => qualityKeys(e)))],
  };
}

function planPinned(query: RouteQuery, prices: PriceTable, health: HealthTable): Plan {
  const entry = prices.catalog.find((e) => e.id === query.pinnedModel);
  if (!entry) throw new RouteError("unknown_model", `model "${query.pinnedModel}" is not routable`);
  const tierName = query.tier || entry.model.tiers[0]!;
  const price = prices.get(entry.id)!;
  return {
    routes: [
      {
        entry,
        price,
        predictedQuality: Number.NaN,
        ...expectedCost(price, query.expectedInputTokens, query.expectedOutputTokens),
        circuit: health.circuit(entry.id),
      },
    ],
    tier: tierName,
    reason: `pinned to ${entry.id} by the client`,
    qualityInputs: [],
  };
}

function score(entry: CatalogEntry, query: RouteQuery, tier: TierConfig, prices: PriceTable, health: HealthTable): PlannedRoute {
  const price = prices.get(entry.id)!;
  const outputTokens = query.expectedOutputTokens > 0 ? query.expectedOutputTokens : tier.expected_output_tokens;
  return {
    entry,
    price,
    predictedQuality: predictedQuality(entry, query.predictedQuality),
    ...expectedCost(price, query.expectedInputTokens, outputTokens),
    circuit: health.circuit(entry.id),
  };
}

/**
 * The router's prediction for this model when it knows it (under `router_name`, "provider/model"
 * or the bare model name), else the configured prior (the simulator's quality profile), else
 * neutral 1: a model the operator put in a tier is assumed fit for it.
 */
function predictedQuality(entry: CatalogEntry, predicted: Record<string, number>): number {
  for (const name of qualityKeys(entry)) {
    if (predicted[name] !== undefined) return predicted[name];
  }
  return entry.model.simulator?.quality ?? 1;
}

/** The keys under which a model's predicted quality is looked up, in order. */
function qualityKeys(entry: CatalogEntry): string[] {
  return entry.model.router_name === undefined ? [entry.id, entry.model.name] : [entry.model.router_name, entry.id, entry.model.name];
}

/** Expected cost in micro-dollars (rounded up: an estimate should not flatter) and unrounded, scaled. */
export function expectedCost(price: ModelPrice, inputTokens: number, outputTokens: number): { expectedCostMicroUsd: bigint; expectedCostScaled: bigint } {
  const scaled = BigInt(Math.max(0, Math.round(inputTokens))) * price.inputMicroUsdPerMtok + BigInt(Math.max(0, Math.round(outputTokens))) * price.outputMicroUsdPerMtok;
  return { expectedCostMicroUsd: (scaled + 999_999n) / 1_000_000n, expectedCostScaled: scaled };
}

function byCost(a: PlannedRoute, b: PlannedRoute): number {
  return a.expectedCostScaled < b.expectedCostScaled ? -1 : a.expectedCostScaled > b.expectedCostScaled ? 1 : 0;
}
