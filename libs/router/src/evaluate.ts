/**
 * The metrics the routing literature reports.
 *
 * Two models (RouteLLM): prompts are ranked by a routing score and the top share x goes to the strong
 * model. PGR(x) = (quality(x) - weak) / (strong - weak). APGR is the area under PGR over x in [0, 1],
 * computed exactly over every threshold (RouteLLM samples 10 thresholds and integrates with the
 * trapezoid rule; with ties, a tie group is entered as a whole and the curve is linear in between,
 * which is the expectation under random tie-breaking, so random routing scores exactly 0.5).
 * CPT(p) is the smallest strong share at which PGR reaches p.
 *
 * Many models (RouterBench): a willingness-to-pay λ picks, per prompt, argmax_m predicted_m - λ·cost_m;
 * sweeping λ traces the router's quality/cost curve, compared with every single model and their
 * convex hull (the "zero router", which mixes models at random).
 */

/** One prompt as a two-model router sees it. */
export interface PairItem {
  /** Higher means "send to the strong model" earlier. */
  routeScore: number;
  strong: number;
  weak: number;
  /** Costs of the two calls, when known (for dollar savings). */
  strongCost?: number;
  weakCost?: number;
}

/** One point of the strong-share / quality curve. */
export interface PairPoint {
  strongShare: number;
  quality: number;
  pgr: number;
  /** Mean cost per prompt (0 when costs are unknown). */
  cost: number;
}

/** Two-model metrics. */
export interface PairMetrics {
  n: number;
  strongQuality: number;
  weakQuality: number;
  apgr: number;
  /** Strong share needed for PGR 0.5 / 0.8 (undefined when never reached). */
  cpt50: number | undefined;
  cpt80: number | undefined;
  /** Strong share needed for 95% of the strong model's quality, and the savings there. */
  strongShareAt95: number | undefined;
  callSavingAt95: number | undefined;
  costSavingAt95: number | undefined;
  curve: PairPoint[];
}

/** The strong-share/quality curve, one point per distinct routing score (plus both ends). */
export function pairCurve(items: readonly PairItem[]): PairPoint[] {
  const n = items.length;
  if (n === 0) return [];
  let strongTotal = 0;
  let weakTotal = 0;
  let weakCostTotal = 0;
  for (const it of items) {
    strongTotal += it.strong;
    weakTotal += it.weak;
    weakCostTotal += it.weakCost ?? 0;
  }
  const strongQ = strongTotal / n;
  const weakQ = weakTotal / n;
  const gap = strongQ - weakQ;
  const order = items.map((_, i) => i).sort((a, b) => (items[b] as PairItem).routeScore - (items[a] as PairItem).routeScore);
  const points: PairPoint[] = [];
  let quality = weakTotal;
  let cost = weakCostTotal;
  const push = (k: number): void => {
    const q = quality / n;
    points.push({ strongShare: k / n, quality: q, pgr: gap !== 0 ? (q - weakQ) / gap : 0, cost: cost / n });
  };
  push(0);
  let k = 0;
  while (k < n) {
    const score = (items[order[k] as number] as PairItem).routeScore;
    while (k < n && (items[order[k] as number] as PairItem).routeScore === score) {
      const it = items[order[k] as number] as PairItem;
      quality += it.strong - it.weak;
      cost += (it.strongCost ?? 0) - (it.weakCost ?? 0);
      k++;
    }
    push(k);
  }
  return points;
}

/** Area under a piecewise-linear curve of y over x (trapezoid rule). */
function area(points: readonly PairPoint[], y: (p: PairPoint) => number): number {
  let total = 0;
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1] as PairPoint;
    const b = points[i] as PairPoint;
    total += ((b.strongShare - a.strongShare) * (y(a) + y(b))) / 2;
  }
  return total;
}

/** The first x at which a piecewise-linear curve reaches `target` (linear interpolation), or undefined. */
function firstCrossing(points: readonly PairPoint[], y: (p: PairPoint) => number, target: number): number | undefined {
  const eps = 1e-12;
  for (let i = 0; i < points.length; i++) {
    const b = points[i] as PairPoint;
    if (y(b) >= target - eps) {
      if (i === 0) return b.strongShare;
      const a = points[i - 1] as PairPoint;
      const dy = y(b) - y(a);
      return dy > 0 ? a.strongShare + ((target - y(a)) / dy) * (b.strongShare - a.strongShare) : b.strongShare;
    }
  }
  return undefined;
}

/** Interpolated mean cost at strong share x. */
function costAt(points: readonly PairPoint[], x: number): number {
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1] as PairPoint;
    const b = points[i] as PairPoint;
    if (x <= b.strongShare) {
      const span = b.strongShare - a.strongShare;
      return span > 0 ? a.cost + ((x - a.strongShare) / span) * (b.cost - a.cost) : b.cost;
    }
  }
  return points.length > 0 ? (points[points.length - 1] as PairPoint).cost : 0;
}

/** APGR, CPT(50%), CPT(80%) and the 95%-quality point for a two-model routing. */
export function pairMetrics(items: readonly PairItem[]): PairMetrics {
  const curve = pairCurve(items);
  const n = items.length;
  if (n === 0) {
    return { n, strongQuality: 0, weakQuality: 0, apgr: 0, cpt50: undefined, cpt80: undefined, strongShareAt95: undefined, callSavingAt95: undefined, costSavingAt95: undefined, curve };
  }
  const first = curve[0] as PairPoint;
  const last = curve[curve.length - 1] as PairPoint;
  const weakQuality = first.quality;
  const strongQuality = last.quality;
  const apgr = area(curve, (p) => p.pgr);
  const at95 = firstCrossing(curve, (p) => p.quality, 0.95 * strongQuality);
  const allStrongCost = last.cost;
  return {
    n,
    strongQuality,
    weakQuality,
    apgr,
    cpt50: firstCrossing(curve, (p) => p.pgr, 0.5),
    cpt80: firstCrossing(curve, (p) => p.pgr, 0.8),
    strongShareAt95: at95,
    callSavingAt95: at95 === undefined ? undefined : 1 - at95,
    costSavingAt95: at95 === undefined || allStrongCost <= 0 ? undefined : 1 - costAt(curve, at95) / allStrongCost,
    curve,
  };
}

/** A (cost, quality) point: mean cost per prompt in USD and mean score. */
export interface CostQualityPoint {
  cost: number;
  quality: number;
}

/** A single model's point. */
export interface ModelPoint extends CostQualityPoint {
  model: string;
}

/** A point on the router's curve, with the λ that produced it. */
export interface RouterPoint extends CostQualityPoint {
  lambda: number;
}

/** One prompt for many-model evaluation: what the router predicted and what really happened. */
export interface MultiItem {
  /** Predicted score per model (model order of the evaluation). */
  predicted: ArrayLike<number>;
  /** Expected cost per model, as the router estimates it before the call. */
  expectedCost: ArrayLike<number>;
  /** Real score and cost per model. */
  score: ArrayLike<number>;
  cost: ArrayLike<number>;
}

/** Many-model metrics. */
export interface MultiMetrics {
  n: number;
  models: ModelPoint[];
  hull: ModelPoint[];
  curve: RouterPoint[];
  best: ModelPoint;
  /** The cheapest router point whose quality is at least the best single model's; undefined if none. */
  matchBest: RouterPoint | undefined;
  /** Its cost as a fraction of the best single model's cost. */
  matchBestCostRatio: number | undefined;
  /** The router's best quality at no more than the best single model's cost. */
  qualityAtBestCost: number;
  /** The cheapest router point at least as good as the best single model, on the router's own convex hull (mixing two λ at random). */
  matchBestMixedCost: number | undefined;
}

/** Mean cost and quality of every single model. */
export function singleModelPoints(items: readonly MultiItem[], models: readonly string[]): ModelPoint[] {
  return models.map((model, j) => {
    let cost = 0;
    let quality = 0;
    for (const it of items) {
      cost += it.cost[j] as number;
      quality += it.score[j] as number;
    }
    return { model, cost: cost / items.length, quality: quality / items.length };
  });
}

/** Upper-left convex hull of (cost, quality) points: the best quality any random mix reaches at each cost. */
export function convexHull<T extends CostQualityPoint>(points: readonly T[]): T[] {
  const sorted = [...points].sort((a, b) => a.cost - b.cost || b.quality - a.quality);
  const hull: T[] = [];
  for (const p of sorted) {
    if (hull.length > 0 && p.quality <= (hull[hull.length - 1] as T).quality) continue;
    while (hull.length >= 2) {
      const a = hull[hull.length - 2] as T;
      const b = hull[hull.length - 1] as T;
      const cross = (b.cost - a.cost) * (p.quality - a.quality) - (b.quality - a.quality) * (p.cost - a.cost);
      if (cross >= 0) hull.pop();
      else break;
    }
    hull.push(p);
  }
  return hull;
}

/** Quality of a hull (or any increasing piecewise-linear curve) at a cost; below its start, undefined. */
export function qualityAtCost(hull: readonly CostQualityPoint[], cost: number): number | undefined {
  if (hull.length === 0 || cost < (hull[0] as CostQualityPoint).cost) return undefined;
  for (let i = 1; i < hull.length; i++) {
    const a = hull[i - 1] as CostQualityPoint;
    const b = hull[i] as CostQualityPoint;
    if (cost <= b.cost) return a.quality + ((cost - a.cost) / (b.cost - a.cost || 1)) * (b.quality - a.quality);
  }
  return (hull[hull.length - 1] as CostQualityPoint).quality;
}

/** Cost at which an increasing piecewise-linear curve first reaches a quality; undefined if never. */
export function costAtQuality(curve: readonly CostQualityPoint[], quality: number): number | undefined {
  for (let i = 0; i < curve.length; i++) {
    const b = curve[i] as CostQualityPoint;
    if (b.quality >= quality - 1e-12) {
      if (i === 0) return b.cost;
      const a = curve[i - 1] as CostQualityPoint;
      return a.cost + ((quality - a.quality) / (b.quality - a.quality || 1)) * (b.cost - a.cost);
    }
  }
  return undefined;
}

/** The λ values swept: 0, then a geometric grid spanning the cost scale, then "cheapest only". */
export function lambdaGrid(items: readonly MultiItem[], steps = 240): number[] {
  let lo = Infinity;
  let hi = 0;
  for (const it of items) {
    for (let j = 0; j < it.expectedCost.length; j++) {
      const c = it.expectedCost[j] as number;
      if (c > 0) {
        lo = Math.min(lo, c);
        hi = Math.max(hi, c);
      }
    }
  }
  if (!Number.isFinite(lo)) return [0];
  const from = 1e-3 / hi;
  const to = 10 / lo;
  const grid = [0];
  for (let s = 0; s <= steps; s++) grid.push(from * Math.pow(to / from, s / steps));
  grid.push(Infinity);
  return grid;
}

/** The router's choice for one prompt at willingness-to-pay λ (ties: the cheaper, then the earlier model). */
export function chooseModel(predicted: ArrayLike<number>, expectedCost: ArrayLike<number>, lambda: number): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let j = 0; j < predicted.length; j++) {
    const c = expectedCost[j] as number;
    const value = lambda === Infinity ? -c : (predicted[j] as number) - lambda * c;
    if (value > bestValue || (value === bestValue && c < (expectedCost[best] as number))) {
      bestValue = value;
      best = j;
    }
  }
  return best;
}

/** The router's quality/cost curve over λ, every single model, their hull, and where the router matches the best model. */
export function multiMetrics(items: readonly MultiItem[], models: readonly string[], lambdas?: readonly number[]): MultiMetrics {
  const points = singleModelPoints(items, models);
  const hull = convexHull(points);
  const best = [...points].sort((a, b) => b.quality - a.quality || a.cost - b.cost)[0] as ModelPoint;
  const curve: RouterPoint[] = [];
  for (const lambda of lambdas ?? lambdaGrid(items)) {
    let cost = 0;
    let quality = 0;
    for (const it of items) {
      const j = chooseModel(it.predicted, it.expectedCost, lambda);
      cost += it.cost[j] as number;
      quality += it.score[j] as number;
    }
    curve.push({ lambda, cost: cost / items.length, quality: quality / items.length });
  }
  let matchBest: RouterPoint | undefined;
  let qualityAtBestCost = -Infinity;
  for (const p of curve) {
    if (p.quality >= best.quality - 1e-12 && (!matchBest || p.cost < matchBest.cost)) matchBest = p;
    if (p.cost <= best.cost + 1e-15) qualityAtBestCost = Math.max(qualityAtBestCost, p.quality);
  }
  const routerHull = convexHull(curve);
  return {
    n: items.length,
    models: points,
    hull,
    curve,
    best,
    matchBest,
    matchBestCostRatio: matchBest && best.cost > 0 ? matchBest.cost / best.cost : undefined,
    qualityAtBestCost,
    matchBestMixedCost: costAtQuality(routerHull, best.quality),
  };
}

/** One bin of a reliability table: predictions in [lo, hi), their mean and the mean observed score. */
export interface ReliabilityBin {
  lo: number;
  hi: number;
  n: number;
  predicted: number;
  observed: number;
}

/** A reliability table and its expected calibration error. */
export interface Reliability {
  n: number;
  bins: ReliabilityBin[];
  /** Expected calibration error: Σ (n_b / n) · |mean predicted_b − mean observed_b|. */
  ece: number;
}

/**
 * Reliability of predicted scores against observed ones, over `bins` equal-width bins of the
 * prediction (the last bin includes 1). Empty bins are listed with n = 0.
 */
export function reliability(predicted: ArrayLike<number>, observed: ArrayLike<number>, bins = 10): Reliability {
  const n = predicted.length;
  const sums = Array.from({ length: bins }, () => ({ n: 0, p: 0, y: 0 }));
  for (let i = 0; i < n; i++) {
    const p = predicted[i] as number;
    const b = Math.min(bins - 1, Math.max(0, Math.floor(p * bins)));
    const s = sums[b] as { n: number; p: number; y: number };
    s.n++;
    s.p += p;
    s.y += observed[i] as number;
  }
  let ece = 0;
  const table = sums.map((s, b) => {
    if (s.n > 0) ece += (s.n / n) * Math.abs(s.p / s.n - s.y / s.n);
    return { lo: b / bins, hi: (b + 1) / bins, n: s.n, predicted: s.n > 0 ? s.p / s.n : Number.NaN, observed: s.n > 0 ? s.y / s.n : Number.NaN };
  });
  return { n, bins: table, ece: n > 0 ? ece : 0 };
}
