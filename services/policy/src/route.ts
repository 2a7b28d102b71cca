import type { Config } from "@switchyard/config";
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

/**
 * Why a model was or was not chosen: `chosen`; in the plan as a fallback (`below_quality_target`,
 * `costlier`, `lower_score`); or left out (the rest).
 */
export type Verdict = "chosen" | "below_quality_target" | "costlier" | "lower_score" | "circuit_open" | "over_price_cap" | "too_slow" | "not_in_tier";

/** One model the decision weighed, with the numbers it compared. */
export interface Candidate extends PlannedRoute {
  /** Where `predictedQuality` came from ("" when pinned: no prediction is read). */
  qualitySource: "router" | "prior" | "default" | "";
  /** Observed time to first token (EWMA), when observed. */
  ttftMs: number | undefined;
  verdict: Verdict;
  /** 1 = primary, 2... = fallbacks in order; 0 = not in the plan. */
  planPosition: number;
  /** The quality/cost score the candidates were ordered by (cost-weight rule only). */
  utility?: number;
}

/** A route decision with everything it weighed: `plan` is what Route answers. */
export interface RouteDecision {
  /** Undefined when no candidate is left (see `noRoute`). */
  plan: Plan | undefined;
  /** Why there is no plan (a request would fail with no_candidates). */
  noRoute?: string;
  /** The plan's routes in order, then the models left out. */
  candidates: Candidate[];
  tier: string;
  /** The target in force (request, tenant, tier); NaN when pinned. */
  qualityTarget: number;
  /** The quality/cost weight in force, when one is. */
  costWeight?: number;
  /** Output tokens the expected costs assume. */
  expectedOutputTokens: number;
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
  const decision = decideRoute(query, config, prices, health);
  if (!decision.plan) throw new RouteError("no_candidates", decision.noRoute ?? "no route");
  return decision.plan;
}

/**
 * The route decision itself (what `planRoute` answers and what an explanation shows): every
 * configured model scored, each given a verdict, the plan built from those left in. Throws
 * RouteError for an unknown tier or pinned model; a tier no model can serve is a decision with no
 * plan, so that an explanation can still show why.
 */
export function decideRoute(query: RouteQuery, config: Config, prices: PriceTable, health: HealthTable): RouteDecision {
  if (query.pinnedModel) return decidePinned(query, prices, health);
  const tier = config.tiers.find((t) => t.name === query.tier);
  if (!tier) throw new RouteError("unknown_tier", `unknown tier "${query.tier}"`);
  const tenant = config.tenants.find((t) => t.name === query.tenant);
  const target = query.qualityTarget ?? tenant?.quality_target ?? tier.quality_target;
  const costWeight = query.costWeight ?? tenant?.cost_weight;
  const outputTokens = query.expectedOutputTokens > 0 ? query.expectedOutputTokens : tier.expected_output_tokens;
  const decision = (plan: Plan | undefined, candidates: Candidate[], noRoute?: string): RouteDecision => ({
    plan,
    candidates,
    tier: tier.name,
    qualityTarget: target,
    ...(costWeight === undefined ? {} : { costWeight }),
    expectedOutputTokens: outputTokens,
    ...(noRoute === undefined ? {} : { noRoute }),
  });

  const left: Candidate[] = [];
  const leaveOut = (rejected: Candidate[], verdict: Verdict) => {
    for (const c of rejected) left.push({ ...c, verdict });
  };
  const all = prices.catalog.map((e) => score(e, query, outputTokens, prices, health));
  const inTier = all.filter((c) => c.entry.model.tiers.includes(tier.name));
  leaveOut(all.filter((c) => !c.entry.model.tiers.includes(tier.name)), "not_in_tier");
  let scored = inTier;
  if (scored.length === 0) return decision(undefined, left, `no active model serves tier "${tier.name}"`);
  const notes: string[] = [];
  if (query.maxOutputMicroUsdPerMtok > 0n) {
    const cap = query.maxOutputMicroUsdPerMtok;
    leaveOut(scored.filter((r) => r.price.outputMicroUsdPerMtok > cap), "over_price_cap");
    scored = scored.filter((r) => r.price.outputMicroUsdPerMtok <= cap);
    if (scored.length === 0) return decision(undefined, left, `no model of tier "${tier.name}" is within the max price`);
  }
  const healthy = scored.filter((r) => r.circuit !== "open");
  if (healthy.length === 0) notes.push("every candidate's circuit is open; routing anyway");
  else if (healthy.length < scored.length) {
    notes.push(`${scored.length - healthy.length} candidate(s) skipped: circuit open`);
    leaveOut(scored.filter((r) => r.circuit === "open"), "circuit_open");
  }
  let pool = healthy.length > 0 ? healthy : scored;
  if (tier.latency_slo_ms !== undefined) {
    // Observed time to first token (EWMA, from the provider replicas' health reports) over the
    // tier's SLO rules a model out; a model not yet observed is given the benefit of the doubt.
    const slo = tier.latency_slo_ms;
    const fast = pool.filter((r) => (r.ttftMs ?? 0) <= slo);
    if (fast.length === 0) notes.push(`no candidate meets the ${slo} ms latency SLO; routing anyway`);
    else if (fast.length < pool.length) {
      notes.push(`${pool.length - fast.length} candidate(s) skipped: slower than the ${slo} ms latency SLO`);
      leaveOut(pool.filter((r) => (r.ttftMs ?? 0) > slo), "too_slow");
    }
    if (fast.length > 0) pool = fast;
  }

  let ordered: Candidate[];
  let why: string;
  if (costWeight !== undefined) {
    // Weigh predicted quality against price: cost is scaled to the dearest candidate so both
    // terms live in [0, 1].
    const maxCost = pool.reduce((m, r) => (r.expectedCostScaled > m ? r.expectedCostScaled : m), 1n);
    for (const r of pool) r.utility = (1 - costWeight) * r.predictedQuality - costWeight * (Number(r.expectedCostScaled) / Number(maxCost));
    ordered = [...pool].sort((a, b) => b.utility! - a.utility! || byCost(a, b));
    for (const r of ordered) r.verdict = "lower_score";
    why = `best quality/cost trade-off at cost_weight ${costWeight.toFixed(2)}`;
  } else {
    const meets = pool.filter((r) => r.predictedQuality >= target).sort(byCost);
    const misses = pool.filter((r) => r.predictedQuality < target).sort((a, b) => b.predictedQuality - a.predictedQuality || byCost(a, b));
    for (const r of meets) r.verdict = "costlier";
    for (const r of misses) r.verdict = "below_quality_target";
    ordered = [...meets, ...misses];
    why =
      meets.length > 0
        ? `cheapest of ${meets.length} candidate(s) meeting quality ${target.toFixed(2)}`
        : `model with the highest predicted quality (no candidate meets quality ${target.toFixed(2)})`;
  }
  const primary = ordered[0]!;
  primary.verdict = "chosen";
  const rest = ordered.slice(1);
  const fallbacks = [...rest.filter((r) => r.entry.provider.name !== primary.entry.provider.name), ...rest.filter((r) => r.entry.provider.name === primary.entry.provider.name)];
  const routes = [primary, ...fallbacks];
  routes.forEach((r, i) => (r.planPosition = i + 1));
  const plan: Plan = {
    routes,
    tier: tier.name,
    reason: [`tier ${tier.name}: ${primary.entry.id} is the ${why}`, ...notes].join("; "),
    qualityInputs: [...new Set(inTier.flatMap((c) => qualityKeys(c.entry)))],
  };
  // Left out: those nearest to being chosen first.
  left.sort((a, b) => LEFT_OUT_ORDER.indexOf(a.verdict) - LEFT_OUT_ORDER.indexOf(b.verdict));
  return decision(plan, [...routes, ...left]);
}

const LEFT_OUT_ORDER: readonly Verdict[] = ["too_slow", "circuit_open", "over_price_cap", "not_in_tier"];

/**
 * A candidate's verdict in words, with the numbers the decision compared (for explanations; the
 * Route path never builds these strings).
 */
export function describeCandidate(c: Candidate, decision: RouteDecision, query: RouteQuery, config: Config): string {
  const primary = decision.plan?.routes[0] as Candidate | undefined;
  const quality = `predicted quality ${c.predictedQuality.toFixed(2)}`;
  const target = decision.qualityTarget.toFixed(2);
  const slo = config.tiers.find((t) => t.name === decision.tier)?.latency_slo_ms;
  switch (c.verdict) {
    case "chosen":
      if (c.qualitySource === "") return "pinned by the client: no routing";
      if (c.utility !== undefined) return `best quality/cost score ${c.utility.toFixed(3)} at cost_weight ${decision.costWeight!.toFixed(2)}`;
      return c.predictedQuality >= decision.qualityTarget
        ? `cheapest expected cost among the models meeting quality ${target} (${quality})`
        : `best ${quality}: no candidate meets quality ${target}`;
    case "below_quality_target":
      return `${quality} is below the target ${target}`;
    case "costlier":
      return `meets quality ${target} (${quality}) but expected cost ${usd(c.expectedCostMicroUsd)} is over the choice's ${usd(primary?.expectedCostMicroUsd ?? 0n)}`;
    case "lower_score":
      return `quality/cost score ${c.utility!.toFixed(3)} is below the choice's ${primary?.utility?.toFixed(3) ?? "?"}`;
    case "circuit_open":
      return "circuit open after recent failures: healthy candidates go first";
    case "over_price_cap":
      return `output price ${usd(c.price.outputMicroUsdPerMtok)}/Mtok is over the request's max ${usd(query.maxOutputMicroUsdPerMtok)}/Mtok`;
    case "too_slow":
      return `time to first token ${Math.round(c.ttftMs ?? 0)} ms is over the tier's ${slo ?? "?"} ms SLO`;
    case "not_in_tier":
      return `serves ${c.entry.model.tiers.join(", ") || "no tier"}, not ${decision.tier}`;
  }
}

/** Micro-dollars as dollars, to the micro-dollar. */
function usd(micro: bigint): string {
  const sign = micro < 0n ? "-" : "";
  const abs = micro < 0n ? -micro : micro;
  return `${sign}$${abs / 1_000_000n}.${String(abs % 1_000_000n).padStart(6, "0")}`;
}

function decidePinned(query: RouteQuery, prices: PriceTable, health: HealthTable): RouteDecision {
  const entry = prices.catalog.find((e) => e.id === query.pinnedModel);
  if (!entry) throw new RouteError("unknown_model", `model "${query.pinnedModel}" is not routable`);
  const tierName = query.tier || entry.model.tiers[0]!;
  const price = prices.get(entry.id)!;
  const route: Candidate = {
    entry,
    price,
    predictedQuality: Number.NaN,
    ...expectedCost(price, query.expectedInputTokens, query.expectedOutputTokens),
    circuit: health.circuit(entry.id),
    qualitySource: "",
    ttftMs: health.ttftMs(entry.id),
    verdict: "chosen",
    planPosition: 1,
  };
  return {
    plan: { routes: [route], tier: tierName, reason: `pinned to ${entry.id} by the client`, qualityInputs: [] },
    candidates: [route],
    tier: tierName,
    qualityTarget: Number.NaN,
    expectedOutputTokens: query.expectedOutputTokens,
  };
}

function score(entry: CatalogEntry, query: RouteQuery, outputTokens: number, prices: PriceTable, health: HealthTable): Candidate {
  const price = prices.get(entry.id)!;
  const quality = predictedQuality(entry, query.predictedQuality);
  return {
    entry,
    price,
    predictedQuality: quality.value,
    qualitySource: quality.source,
    ...expectedCost(price, query.expectedInputTokens, outputTokens),
    circuit: health.circuit(entry.id),
    ttftMs: health.ttftMs(entry.id),
    // Set once the decision has placed it.
    verdict: "not_in_tier",
    planPosition: 0,
  };
}

/**
 * The router's prediction for this model when it knows it (under `router_name`, "provider/model"
 * or the bare model name), else the configured prior (the simulator's quality profile), else
 * neutral 1: a model the operator put in a tier is assumed fit for it.
 */
function predictedQuality(entry: CatalogEntry, predicted: Record<string, number>): { value: number; source: "router" | "prior" | "default" } {
  for (const name of qualityKeys(entry)) {
    if (predicted[name] !== undefined) return { value: predicted[name], source: "router" };
  }
  const prior = entry.model.simulator?.quality;
  return prior === undefined ? { value: 1, source: "default" } : { value: prior, source: "prior" };
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
