/** k-fold cross-validation: deterministic folds, out-of-fold predictions for every row. */
import { extractFeatures, LATEST_FEATURE_VERSION, type SparseVector } from "./features.js";
import { hashString, seededRandom, shuffleInPlace } from "./hash.js";
import { applyAliases, groupKey, modelsOf, type RoutingRow } from "./data.js";

export { groupKey };
import { RouterModel } from "./model.js";
import { featurizeRows, trainRouter, type TrainOptions } from "./train.js";
import { pairKey, type RowPredictions } from "./report.js";
import { estimateTokens, fitCostRates, promptChars } from "./cost.js";

/**
 * How rows are split. "plain": a seeded shuffle of rows. "grouped": rows whose question is the same
 * after normalisation (the last 300 characters of the last user message, lowercased and
 * whitespace-collapsed, which is where few-shot prompts put the actual question) share a fold, so
 * near-duplicate prompts never sit on both sides of a split.
 */
export type FoldScheme = "plain" | "grouped";

/** Fold index (0..k-1) of each row, deterministic in the seed. */
export function assignFolds(rows: readonly RoutingRow[], k: number, seed: number, scheme: FoldScheme = "plain"): number[] {
  if (!Number.isInteger(k) || k < 2) throw new Error("k-fold needs k >= 2");
  const random = seededRandom(seed);
  const folds = new Array<number>(rows.length).fill(0);
  if (scheme === "plain") {
    const order = shuffleInPlace(rows.map((_, i) => i), random);
    order.forEach((row, position) => {
      folds[row] = position % k;
    });
    return folds;
  }
  const groups = new Map<string, number[]>();
  rows.forEach((row, i) => {
    const key = groupKey(row);
    const members = groups.get(key);
    if (members) members.push(i);
    else groups.set(key, [i]);
  });
  const keys = [...groups.keys()].sort((a, b) => hashString(a) - hashString(b) || (a < b ? -1 : a > b ? 1 : 0));
  shuffleInPlace(keys, random);
  keys.forEach((key, position) => {
    for (const row of groups.get(key) as number[]) folds[row] = position % k;
  });
  return folds;
}

/** Cross-validation settings on top of the training options. */
export interface CrossValidationOptions extends TrainOptions {
  scheme?: FoldScheme;
  /** Seed of the fold assignment (default 2024). */
  foldSeed?: number;
  /**
   * Rows added to every fold's training set and never evaluated (e.g. the other data files, as the
   * shipped router is trained on all of them), with their feature vectors if already computed.
   */
  extraRows?: readonly RoutingRow[];
  extraVectors?: readonly SparseVector[];
}

/** Out-of-fold predictions for every row: each fold is predicted by a router trained on the other folds (plus any extra rows). */
export function crossValidate(inputRows: readonly RoutingRow[], k: number, options: CrossValidationOptions = {}): RowPredictions & { folds: number[] } {
  // Aliased rows (same order): evaluate them with the aliases applied too, so each row's cost_usd stays with its outcome.
  const rows = applyAliases(inputRows, options.aliases);
  const extraRows = applyAliases(options.extraRows ?? [], options.aliases);
  const models = options.models ? [...new Set(options.models.map((m) => options.aliases?.[m] ?? m))] : modelsOf([...rows, ...extraRows]);
  const featureSet = options.featureSet ?? "full";
  const featureVersion = options.featureVersion ?? LATEST_FEATURE_VERSION;
  const vectors: SparseVector[] = featurizeRows(rows, featureSet, featureVersion);
  const extraVectors = options.extraVectors ?? featurizeRows(extraRows, featureSet, featureVersion);
  const folds = assignFolds(rows, k, options.foldSeed ?? 2024, options.scheme ?? "plain");
  const predicted: Float64Array[] = new Array(rows.length);
  const raw: Float64Array[] = new Array(rows.length);
  const evidence: number[] = new Array(rows.length).fill(0);
  const taskTypes: (string | undefined)[] = new Array(rows.length);
  const difficulty: number[] = new Array(rows.length).fill(0);
  const expectedCost: Float64Array[] = new Array(rows.length);
  const pairScores: NonNullable<RowPredictions["pairScores"]> = {};
  for (const [strong, weak] of options.pairs ?? []) {
    pairScores[pairKey(options.aliases?.[strong] ?? strong, options.aliases?.[weak] ?? weak)] = { win: new Float64Array(rows.length), differ: new Float64Array(rows.length) };
  }
  for (let fold = 0; fold < k; fold++) {
    const trainIdx: number[] = [];
    const testIdx: number[] = [];
    folds.forEach((f, i) => (f === fold ? testIdx : trainIdx).push(i));
    if (testIdx.length === 0) continue;
    const router = RouterModel.fromJSON(
      trainRouter(
        [...trainIdx.map((i) => rows[i] as RoutingRow), ...extraRows],
        { ...options, models, featureSet, featureVersion },
        [...trainIdx.map((i) => vectors[i] as SparseVector), ...extraVectors],
      ),
    );
    for (const i of testIdx) {
      const parts = router.scoreParts(vectors[i] as SparseVector);
      raw[i] = Float64Array.from(parts.raw);
      evidence[i] = parts.evidence;
      predicted[i] = router.finishScores(parts.raw, parts.difficulty, parts.evidence, undefined, parts.taskType);
      difficulty[i] = parts.difficulty;
      taskTypes[i] = parts.taskType;
      expectedCost[i] = expectedCosts(router, rows[i] as RoutingRow);
      for (const [key, out] of Object.entries(pairScores)) {
        const [strong, weak] = key.split("\u0000") as [string, string];
        const p = router.scorePairVector(vectors[i] as SparseVector, strong, weak);
        if (p) {
          out.win[i] = p.win;
          out.differ[i] = p.differ;
        }
      }
    }
  }
  return { models, predicted, raw, evidence, taskTypes, difficulty, rates: fitCostRates(rows, models, options.prices), expectedCost, folds, ...(Object.keys(pairScores).length > 0 ? { pairScores } : {}) };
}

function expectedCosts(router: RouterModel, row: RoutingRow): Float64Array {
  const tokens = estimateTokens(promptChars(row.messages));
  return Float64Array.from(router.models, (model) => {
    const rate = router.costs[model];
    return rate ? rate.perInputToken * tokens + rate.perCall : Number.NaN;
  });
}

/** Predictions of a fixed router for rows (features extracted per row, as at inference). */
export function predictRows(router: RouterModel, rows: readonly RoutingRow[]): RowPredictions {
  const predicted: Float64Array[] = [];
  const raw: Float64Array[] = [];
  const evidence: number[] = [];
  const taskTypes: (string | undefined)[] = [];
  const difficulty: number[] = [];
  const pairs = router.pairs;
  const pairScores: NonNullable<RowPredictions["pairScores"]> = {};
  for (const [strong, weak] of pairs) pairScores[pairKey(strong, weak)] = { win: new Float64Array(rows.length), differ: new Float64Array(rows.length) };
  rows.forEach((row, i) => {
    const terms: number[] = [];
    const vector = extractFeatures(row.messages, router.featureSet, terms, router.featureVersion).vector;
    const parts = router.scoreParts(vector, undefined, terms);
    raw.push(Float64Array.from(parts.raw));
    evidence.push(parts.evidence);
    predicted.push(router.finishScores(parts.raw, parts.difficulty, parts.evidence, undefined, parts.taskType));
    taskTypes.push(parts.taskType);
    difficulty.push(parts.difficulty);
    for (const [strong, weak] of pairs) {
      const p = router.scorePairVector(vector, strong, weak);
      const out = pairScores[pairKey(strong, weak)];
      if (p && out) {
        out.win[i] = p.win;
        out.differ[i] = p.differ;
      }
    }
  });
  return { models: [...router.models], predicted, raw, evidence, taskTypes, difficulty, rates: router.costs, ...(pairs.length > 0 ? { pairScores } : {}) };
}
