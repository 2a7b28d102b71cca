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
  /** Highest acceptable input price, micro-dollars per million tokens; 0 or unset = no limit. */
  maxInputMicroUsdPerMtok?: bigint;
  /** OpenRouter's `models`: "provider/model" ids tried in this order, no routing (see `decideList`). */
  models?: string[];
  /** OpenRouter's `provider` preferences. */
  providers?: ProviderPreferences;
}

/**
 * Which providers may serve a request and in what order. They narrow and order the candidates;
 * they never lower the quality target nor lift a tenant's limits (its top-tier cap, budget and
 * rate limits apply as to any request).
 */
export interface ProviderPreferences {
  /** Providers tried first, in this order; the others follow unless `allowFallbacks` is false. */
  order: string[];
  /** Only these providers may serve; empty = any. */
  only: string[];
  /** These providers may not serve. */
  ignore: string[];
  /** False: only the providers in `order` (without `order`: only the primary route). */
  allowFallbacks: boolean;
  /** Orders the candidates that meet the quality target by this instead of the quality/cost rule. */
  sort?: "price" | "throughput" | "latency";
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
export type Verdict =
  | "chosen"
  | "below_quality_target"
  | "costlier"
  | "lower_score"
  | "requested_order"
  | "circuit_open"
  | "over_price_cap"
  | "too_slow"
  | "not_in_tier"
  | "excluded_by_request";

/** One model the decision weighed, with the numbers it compared. */
export interface Candidate extends PlannedRoute {
  /** Where `predictedQuality` came from ("" when pinned: no prediction is read). */
  qualitySource: "router" | "prior" | "default" | "";
  /** Observed time to first token (EWMA), when observed. */
  ttftMs: number | undefined;
  /** Observed time from the first token to the end of an answer (EWMA), when observed. */
  generationMs?: number | undefined;
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
  /** Why there is no plan (a request would fail with no_candidates, or unsatisfiable: see below). */
  noRoute?: string;
  /**
   * No plan because the request's own provider preferences or model list exclude every
   * candidate by name: no change of prices or health would serve it as asked.
   */
  unsatisfiable?: boolean;
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
    readonly code: "unknown_model" | "unknown_tier" | "no_candidates" | "unsatisfiable",
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
  if (!decision.plan) throw new RouteError(decision.unsatisfiable ? "unsatisfiable" : "no_candidates", decision.noRoute ?? "no route");
  return decision.plan;
}

/**
 * The route decision itself (what `planRoute` answers and what an explanation shows): every
 * configured model scored, each given a verdict, the plan built from those left in. Throws
 * RouteError for an unknown tier or pinned model; a tier no model can serve is a decision with no
 * plan, so that an explanation can still show why.
 */
export function decideRoute(query: RouteQuery, config: Config, prices: PriceTable, health: HealthTable): RouteDecision {
  if (query.models && query.models.length > 0) return decideList(query, config, prices, health);
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
  const prefs = query.providers;
  if (prefs) {
    const excluded = scored.filter((r) => excludedBy(r.entry, prefs) !== undefined);
    leaveOut(excluded, "excluded_by_request");
    scored = scored.filter((r) => !excluded.includes(r));
    if (scored.length === 0) {
      return {
        ...decision(undefined, left, `the provider preferences (${describePreferences(prefs)}) leave no model of tier "${tier.name}" (its models: ${inTier.map((c) => c.entry.id).join(", ")})`),
        unsatisfiable: true,
      };
    }
    if (excluded.length > 0) notes.push(`${excluded.length} candidate(s) excluded by the provider preferences`);
  }
  if (query.maxOutputMicroUsdPerMtok > 0n || (query.maxInputMicroUsdPerMtok ?? 0n) > 0n) {
    leaveOut(scored.filter((r) => overPrice(r.price, query) !== undefined), "over_price_cap");
    scored = scored.filter((r) => overPrice(r.price, query) === undefined);
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
  if (prefs?.sort) {
    // The request's own order among the models that meet the target (a sort never lowers quality).
    const sort = prefs.sort;
    const meets = pool.filter((r) => r.predictedQuality >= target).sort(SORTS[sort]);
    const misses = pool.filter((r) => r.predictedQuality < target).sort((a, b) => b.predictedQuality - a.predictedQuality || byCost(a, b));
    for (const r of meets) r.verdict = "requested_order";
    for (const r of misses) r.verdict = "below_quality_target";
    ordered = [...meets, ...misses];
    why =
      meets.length > 0
        ? `${SORT_WORDS[sort]} of ${meets.length} candidate(s) meeting quality ${target.toFixed(2)} (provider.sort ${sort})`
        : `model with the highest predicted quality (no candidate meets quality ${target.toFixed(2)})`;
  } else if (costWeight !== undefined) {
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
  const best = ordered[0]!;
  const rest = ordered.slice(1);
  const fallbacks = [...rest.filter((r) => r.entry.provider.name !== best.entry.provider.name), ...rest.filter((r) => r.entry.provider.name === best.entry.provider.name)];
  let routes = [best, ...fallbacks];
  if (prefs && prefs.order.length > 0) {
    // The request's providers first, in its order; within a provider, the rule's order (a stable sort).
    const rank = (r: Candidate) => (prefs.order.includes(r.entry.provider.name) ? prefs.order.indexOf(r.entry.provider.name) : prefs.order.length);
    routes = [...routes].sort((a, b) => rank(a) - rank(b));
    if (routes[0] !== best) {
      for (const r of routes) if (r.verdict !== "below_quality_target") r.verdict = "requested_order";
      why = `first of provider.order (${prefs.order.join(", ")}) among the candidates; the rule's choice was ${best.entry.id}`;
    }
  }
  if (prefs && !prefs.allowFallbacks) {
    const kept = prefs.order.length > 0 ? routes.filter((r) => prefs.order.includes(r.entry.provider.name)) : routes.slice(0, 1);
    if (kept.length === 0) {
      leaveOut(routes, "excluded_by_request");
      return {
        ...decision(undefined, left, `provider.allow_fallbacks is false and no model of tier "${tier.name}" left by the other preferences is from a provider in provider.order (${prefs.order.join(", ")})`),
        unsatisfiable: true,
      };
    }
    leaveOut(routes.filter((r) => !kept.includes(r)), "excluded_by_request");
    if (kept.length < routes.length) notes.push(`${routes.length - kept.length} fallback(s) dropped: provider.allow_fallbacks is false`);
    routes = kept;
  }
  const primary = routes[0]!;
  primary.verdict = "chosen";
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

const LEFT_OUT_ORDER: readonly Verdict[] = ["too_slow", "circuit_open", "over_price_cap", "excluded_by_request", "not_in_tier"];

/** Orders of provider.sort: the best first, ties by expected cost. */
const SORTS: Record<NonNullable<ProviderPreferences["sort"]>, (a: Candidate, b: Candidate) => number> = {
  price: byCost,
  latency: (a, b) => (a.ttftMs ?? Infinity) - (b.ttftMs ?? Infinity) || byCost(a, b),
  throughput: (a, b) => (a.generationMs ?? Infinity) - (b.generationMs ?? Infinity) || byCost(a, b),
};
const SORT_WORDS: Record<NonNullable<ProviderPreferences["sort"]>, string> = {
  price: "cheapest",
  latency: "fastest to first token",
  throughput: "fastest streaming",
};

/** Why the request's provider preferences leave a model out (by its provider's name), if they do. */
function excludedBy(entry: CatalogEntry, prefs: ProviderPreferences | undefined): string | undefined {
  if (!prefs) return undefined;
  const provider = entry.provider.name;
  if (prefs.only.length > 0 && !prefs.only.includes(provider)) return `its provider "${provider}" is not in provider.only`;
  if (prefs.ignore.includes(provider)) return `its provider "${provider}" is in provider.ignore`;
  return undefined;
}

/** Why a price is over the request's caps, if it is. */
function overPrice(price: ModelPrice, query: RouteQuery): string | undefined {
  if (query.maxOutputMicroUsdPerMtok > 0n && price.outputMicroUsdPerMtok > query.maxOutputMicroUsdPerMtok) {
    return `output price ${usd(price.outputMicroUsdPerMtok)}/Mtok is over the request's max ${usd(query.maxOutputMicroUsdPerMtok)}/Mtok`;
  }
  const inputCap = query.maxInputMicroUsdPerMtok ?? 0n;
  if (inputCap > 0n && price.inputMicroUsdPerMtok > inputCap) return `input price ${usd(price.inputMicroUsdPerMtok)}/Mtok is over the request's max ${usd(inputCap)}/Mtok`;
  return undefined;
}

function describePreferences(p: ProviderPreferences): string {
  return [
    p.only.length > 0 ? `only: ${p.only.join(", ")}` : "",
    p.ignore.length > 0 ? `ignore: ${p.ignore.join(", ")}` : "",
    p.order.length > 0 ? `order: ${p.order.join(", ")}` : "",
    p.allowFallbacks ? "" : "allow_fallbacks: false",
  ]
    .filter(Boolean)
    .join("; ");
}

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
    case "requested_order":
      return query.models?.length ? "a later model of the request's 'models' list" : "later in the order the request asked for (provider.order or provider.sort)";
    case "excluded_by_request":
      return excludedBy(c.entry, query.providers) ?? "dropped: provider.allow_fallbacks is false";
    case "circuit_open":
      return "circuit open after recent failures: healthy candidates go first";
    case "over_price_cap":
      return overPrice(c.price, query) ?? "over the request's max price";
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
  // The request's own limits hold for the model it names, too: the stricter wins.
  const excluded = excludedBy(entry, query.providers);
  if (excluded) throw new RouteError("unsatisfiable", `model "${entry.id}" was asked for, but ${excluded}`);
  const over = overPrice(price, query);
  if (over) throw new RouteError("no_candidates", `model "${entry.id}" was asked for, but its ${over}`);
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

/**
 * OpenRouter's `models`: the models the request lists, in its order, with no routing. Those the
 * request's own preferences exclude (provider.only / ignore, max prices) are left out; of the
 * rest, the first whose circuit is not open is the primary route and the others follow in the
 * listed order (open circuits last; every one open: routed anyway). provider.order, sort and
 * allow_fallbacks do not reorder or cut a list the client ordered itself.
 */
function decideList(query: RouteQuery, config: Config, prices: PriceTable, health: HealthTable): RouteDecision {
  const ids = [...new Set(query.models)];
  const listed: Candidate[] = [];
  const left: Candidate[] = [];
  const skipped: string[] = [];
  for (const id of ids) {
    const entry = prices.catalog.find((e) => e.id === id);
    if (!entry) throw new RouteError("unknown_model", `model "${id}" in 'models' is not routable`);
    const price = prices.get(id)!;
    const candidate: Candidate = {
      entry,
      price,
      predictedQuality: Number.NaN,
      ...expectedCost(price, query.expectedInputTokens, query.expectedOutputTokens),
      circuit: health.circuit(id),
      qualitySource: "",
      ttftMs: health.ttftMs(id),
      verdict: "requested_order",
      planPosition: 0,
    };
    const excluded = excludedBy(entry, query.providers);
    const over = excluded ? undefined : overPrice(price, query);
    if (excluded || over) {
      left.push({ ...candidate, verdict: excluded ? "excluded_by_request" : "over_price_cap" });
      skipped.push(`${id}: ${excluded ?? over}`);
    } else listed.push(candidate);
  }
  const tierName = query.tier || listed[0]?.entry.model.tiers[0] || "";
  const notes: string[] = [];
  if (listed.length === 0) {
    return {
      plan: undefined,
      noRoute: `no model in 'models' may serve this request (${skipped.join("; ")})`,
      unsatisfiable: left.every((c) => c.verdict === "excluded_by_request"),
      candidates: left,
      tier: tierName,
      qualityTarget: Number.NaN,
      expectedOutputTokens: query.expectedOutputTokens,
    };
  }
  if (skipped.length > 0) notes.push(`skipped ${skipped.join("; ")}`);
  const healthy = listed.filter((c) => c.circuit !== "open");
  if (healthy.length === 0) notes.push("every listed model's circuit is open; routing anyway");
  else if (healthy.length < listed.length) notes.push(`${listed.length - healthy.length} listed model(s) moved last: circuit open`);
  const routes = healthy.length === 0 ? listed : [...healthy, ...listed.filter((c) => c.circuit === "open")];
  routes[0]!.verdict = "chosen";
  routes.forEach((r, i) => (r.planPosition = i + 1));
  const why = routes[0] === listed[0] ? "the first model of 'models'" : "the first model of 'models' that can serve";
  return {
    plan: { routes, tier: tierName, reason: [`${routes[0]!.entry.id} is ${why}`, ...notes].join("; "), qualityInputs: [] },
    candidates: [...routes, ...left],
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
    generationMs: health.generationMs(entry.id),
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
