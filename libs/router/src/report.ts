/** Glue between rows, a router's predictions and the metrics: what `eval` and cross-validation print. */
import { promptChars, rowCost, estimateTokens, type CostRates } from "./cost.js";
import { scoreOf, type PriceTable, type RoutingRow } from "./data.js";
import { multiMetrics, pairMetrics, reliability, type MultiItem, type MultiMetrics, type PairItem, type PairMetrics, type Reliability } from "./evaluate.js";

/**
 * How a two-model router ranks prompts for the strong model. The pair-head rankings need a pair head
 * for the pair (`pairScores`), else they fall back to "gap": "pair" = P(differ)·P(strong wins | differ),
 * "pair-gain" = P(differ)·(2·P(strong wins | differ) − 1) (the expected score gain), "pair-win" =
 * P(strong wins | differ) alone, "pair-indep" = the gain with P(differ) from the two model heads
 * taken as independent.
 */
export type PairRanking = "gap" | "weak-wrong" | "difficulty" | "length" | "random" | "pair" | "pair-gain" | "pair-win" | "pair-indep";

/** Every ranking `eval` reports; "gap" (predicted strong minus predicted weak) is the router's own. */
export const PAIR_RANKINGS: readonly PairRanking[] = ["gap", "weak-wrong", "difficulty", "length", "random"];

/** Rankings from a pair head, reported when the predictions carry one for the pair. */
export const PAIR_HEAD_RANKINGS: readonly PairRanking[] = ["pair", "pair-gain", "pair-win", "pair-indep"];

/** Key of a (strong, weak) pair in {@link RowPredictions.pairScores}. */
export function pairKey(strong: string, weak: string): string {
  return `${strong}\u0000${weak}`;
}

/** Per-row predictions of a router (model order as in `models`), e.g. out-of-fold in cross-validation. */
export interface RowPredictions {
  models: string[];
  /** predicted[row][model index] */
  predicted: Float64Array[];
  /** Stage-1 scores (heads and neighbours, before the difficulty fallback and calibration), where known. */
  raw?: Float64Array[];
  /** The neighbours' evidence behind each row's stage-1 scores, where known. */
  evidence?: number[];
  /** Task type (kind of request) of each row, where known. */
  taskTypes?: (string | undefined)[];
  /** Difficulty of each row (any monotone scale). */
  difficulty: number[];
  rates: CostRates;
  /** Expected cost per row and model, when the rates differ by row (cross-validation uses each fold's own rates). */
  expectedCost?: Float64Array[];
  /** Pair-head predictions per row, by {@link pairKey}(strong, weak), where trained. */
  pairScores?: Record<string, { win: Float64Array; differ: Float64Array }>;
}

/** Mean score and mean cost of each model over the rows where it has a score. */
export function modelAverages(rows: readonly RoutingRow[], models: readonly string[], prices?: PriceTable, rates?: CostRates): { model: string; quality: number; cost: number | undefined; n: number }[] {
  return models.map((model) => {
    let quality = 0;
    let cost = 0;
    let costKnown = true;
    let n = 0;
    for (const row of rows) {
      const s = scoreOf(row, model);
      if (s === undefined) continue;
      n++;
      quality += s;
      const c = rowCost(row, model, prices, rates);
      if (c === undefined) costKnown = false;
      else cost += c;
    }
    return { model, quality: n > 0 ? quality / n : 0, cost: costKnown && n > 0 ? cost / n : undefined, n };
  });
}

/** Default pair: strong = best mean score; weak = cheapest mean cost when every cost is known, else worst score. */
export function defaultPair(rows: readonly RoutingRow[], models: readonly string[], prices?: PriceTable, rates?: CostRates): { strong: string; weak: string } | undefined {
  const averages = modelAverages(rows, models, prices, rates).filter((a) => a.n > 0);
  if (averages.length < 2) return undefined;
  const strong = [...averages].sort((a, b) => b.quality - a.quality)[0]!.model;
  const others = averages.filter((a) => a.model !== strong);
  const allCosts = others.every((a) => a.cost !== undefined);
  const weak = allCosts
    ? [...others].sort((a, b) => (a.cost as number) - (b.cost as number) || a.quality - b.quality)[0]!.model
    : [...others].sort((a, b) => a.quality - b.quality)[0]!.model;
  return { strong, weak };
}

/** Two-model metrics under one ranking, over rows where both models have a score. */
export function pairReport(rows: readonly RoutingRow[], predictions: RowPredictions, strong: string, weak: string, ranking: PairRanking, prices?: PriceTable): PairMetrics {
  const s = predictions.models.indexOf(strong);
  const w = predictions.models.indexOf(weak);
  const items: PairItem[] = [];
  const pair = predictions.pairScores?.[pairKey(strong, weak)];
  const reversed = pair ? undefined : predictions.pairScores?.[pairKey(weak, strong)];
  rows.forEach((row, i) => {
    const strongScore = scoreOf(row, strong);
    const weakScore = scoreOf(row, weak);
    if (strongScore === undefined || weakScore === undefined) return;
    const p = predictions.predicted[i] as Float64Array;
    let routeScore: number;
    switch (ranking) {
      case "gap":
        routeScore = s >= 0 && w >= 0 ? (p[s] as number) - (p[w] as number) : 0;
        break;
      case "weak-wrong":
        routeScore = w >= 0 ? 1 - (p[w] as number) : 0;
        break;
      case "difficulty":
        routeScore = predictions.difficulty[i] as number;
        break;
      case "length":
        routeScore = promptChars(row.messages);
        break;
      case "random":
        routeScore = 0;
        break;
      default: {
        const head = pair ?? reversed;
        if (!head || s < 0 || w < 0) {
          routeScore = s >= 0 && w >= 0 ? (p[s] as number) - (p[w] as number) : 0;
          break;
        }
        const win = pair ? (head.win[i] as number) : 1 - (head.win[i] as number);
        const ps = p[s] as number;
        const pw = p[w] as number;
        const differ = ranking === "pair-indep" ? ps * (1 - pw) + pw * (1 - ps) : (head.differ[i] as number);
        routeScore = ranking === "pair" ? differ * win : ranking === "pair-win" ? win : differ * (2 * win - 1);
      }
    }
    const strongCost = rowCost(row, strong, prices, predictions.rates);
    const weakCost = rowCost(row, weak, prices, predictions.rates);
    items.push({ routeScore, strong: strongScore, weak: weakScore, ...(strongCost !== undefined && weakCost !== undefined ? { strongCost, weakCost } : {}) });
  });
  return pairMetrics(items);
}

/** Many-model metrics over rows where every model has a score and a known cost; also says how many rows were skipped. */
export function multiReport(rows: readonly RoutingRow[], predictions: RowPredictions, prices?: PriceTable, models: readonly string[] = predictions.models): { metrics: MultiMetrics | undefined; skipped: number } {
  const indices = models.map((m) => predictions.models.indexOf(m));
  const items: MultiItem[] = [];
  let skipped = 0;
  rows.forEach((row, i) => {
    const score: number[] = [];
    const cost: number[] = [];
    const expectedCost: number[] = [];
    const predicted: number[] = [];
    const tokens = estimateTokens(promptChars(row.messages));
    for (let j = 0; j < models.length; j++) {
      const model = models[j] as string;
      const s = scoreOf(row, model);
      const c = rowCost(row, model, prices, predictions.rates);
      const rate = predictions.rates[model];
      if (s === undefined || c === undefined) {
        skipped++;
        return;
      }
      score.push(s);
      cost.push(c);
      const k = indices[j] as number;
      const ownEstimate = k >= 0 ? predictions.expectedCost?.[i]?.[k] : undefined;
      expectedCost.push(ownEstimate !== undefined && Number.isFinite(ownEstimate) ? ownEstimate : rate ? rate.perInputToken * tokens + rate.perCall : c);
      predicted.push(k >= 0 ? ((predictions.predicted[i] as Float64Array)[k] as number) : 0);
    }
    items.push({ predicted, expectedCost, score, cost });
  });
  return { metrics: items.length > 0 ? multiMetrics(items, models) : undefined, skipped };
}

/**
 * Calibration of predicted scores against outcomes: a reliability table over every (row, model)
 * prediction with an outcome, and each model's expected calibration error.
 */
export function calibrationReport(rows: readonly RoutingRow[], predictions: RowPredictions, models: readonly string[] = predictions.models, bins = 10): { overall: Reliability; perModel: { model: string; n: number; ece: number }[] } {
  const all: { p: number[]; y: number[] } = { p: [], y: [] };
  const perModel = models.map((model) => {
    const j = predictions.models.indexOf(model);
    const p: number[] = [];
    const y: number[] = [];
    rows.forEach((row, i) => {
      const s = scoreOf(row, model);
      const q = predictions.predicted[i]?.[j];
      if (s === undefined || q === undefined || j < 0) return;
      p.push(q);
      y.push(s);
    });
    all.p.push(...p);
    all.y.push(...y);
    return { model, n: p.length, ece: reliability(p, y, bins).ece };
  });
  return { overall: reliability(all.p, all.y, bins), perModel };
}
