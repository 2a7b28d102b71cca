/**
 * Training: one logistic head per model, fitted with FTRL-Proximal (per-coordinate learning rates,
 * L1 + L2), the standard learner for hashed sparse features. L1 keeps the stored router small.
 * Deterministic: a seeded shuffle per epoch, fixed iteration order, no parallelism, so the same rows
 * and options give a byte-identical router.
 */
import { extractFeatures, HASH_BITS, LATEST_FEATURE_VERSION, type FeatureSet, type FeatureVersion, type SparseVector } from "./features.js";
import { buildKnn, DEFAULT_KNN_SETTINGS, KnnIndex, type KnnJSON, type KnnSettings, type RowFeatures } from "./knn.js";
import { FEATURE_DIM } from "./features.js";
import { seededRandom, shuffleInPlace, toBase64 } from "./hash.js";
import { fitCostRates } from "./cost.js";
import { applyAliases, groupKey, modelsOf, scoreOf, type PriceTable, type RoutingRow } from "./data.js";
import { routerVersion, RouterModel, type CalibrationJSON, type FallbackJSON, type HeadJSON, type PairHeadJSON, type RouterJSON, type Tier } from "./model.js";

/** Training settings; every field has a default. */
export interface TrainOptions {
  /** Passes over the data (default 4). */
  epochs?: number;
  /** FTRL learning-rate scale (default 0.05). */
  alpha?: number;
  /** FTRL learning-rate smoothing (default 1). */
  beta?: number;
  /** L1 strength of the per-model weights: larger gives sparser, smaller routers. */
  l1?: number;
  /** L2 strength of the per-model weights. */
  l2?: number;
  /** Seed of the per-epoch shuffles (default 7). */
  seed?: number;
  featureSet?: FeatureSet;
  /** Prices for models without per-call costs in the data. */
  prices?: PriceTable;
  /** Models to train heads for (default: every model with outcomes, in first-seen order). */
  models?: string[];
  /** Quantile cut points of the default tiers (default [0.4, 0.8] → simple, standard, complex). */
  tierQuantiles?: number[];
  /** Tier names, one more than cut points (default simple, standard, complex). */
  tierNames?: string[];
  /**
   * Balance sources: weight each row by sqrt(mean group size / its group's size), the group being the
   * row's task family (`task` up to the first "/"), so a large file does not drown a small one.
   * The task is only used for this weight, never as a feature. Default true.
   */
  balanceSources?: boolean;
  /**
   * Neighbour estimates (see knn.ts): true (default, with the "full" feature set) stores a neighbour
   * index in the router, whose similarity-weighted outcomes of the most similar training prompts are
   * averaged with the heads' predictions in logit space; false gives a heads-only router.
   */
  knn?: boolean | Partial<KnnSettings>;
  /** Weight of the neighbour estimate in that average (default 0.5: a plain average, not tuned). */
  knnWeight?: number;
  /**
   * Model aliases `{ FROM: TO }` (the same model under two names): outcomes under FROM are trained as
   * TO's (see {@link applyAliases}); FROM never appears in the router's models. Stored in the router.
   */
  aliases?: Record<string, string>;
  /**
   * Pair heads: for each (strong, weak) pair, a logistic head on the rows where exactly one of the
   * two is right, predicting "strong right, weak wrong", and one on every row with both outcomes,
   * predicting "they differ" (see {@link RouterModel.predictPair}). Default none.
   */
  pairs?: readonly (readonly [string, string])[];
  /**
   * Multipliers of the training weight of rows by their `source` field (default 1 for every source),
   * applied on top of the family balance: how much one source's outcomes may move heads that other
   * sources share. Used for the heads only, not the neighbour index.
   */
  sourceWeights?: Record<string, number>;
  /**
   * The learned difficulty averages the predicted scores of the models with at least this many
   * training rows (default 0: every model). Heads fitted on a few hundred rows add noise to a
   * difficulty that the well-trained heads estimate.
   */
  difficultyMinRows?: number;
  /** Feature version (default {@link LATEST_FEATURE_VERSION}; 1 reproduces routers trained before it). */
  featureVersion?: FeatureVersion;
  /**
   * Stage 2, fitted on out-of-fold predictions (see stage2.ts) and stored as is: the difficulty
   * fallback and per-model calibration maps. Default none.
   */
  stage2?: { fallback?: FallbackJSON; calibration?: Record<string, CalibrationJSON> };
}

/** The resolved training settings stored in the router file. */
export interface TrainSettings {
  epochs: number;
  alpha: number;
  beta: number;
  l1: number;
  l2: number;
  seed: number;
  featureSet: FeatureSet;
}

/** Default training settings. */
export const DEFAULT_TRAIN_SETTINGS: TrainSettings = { epochs: 4, alpha: 0.05, beta: 1, l1: 0.5, l2: 4, seed: 7, featureSet: "full" };

const KNOTS = 101;

/** Sorts a vector's indices and merges repeated ones (training wants one entry per coordinate). */
export function compactVector(vector: SparseVector): SparseVector {
  const n = vector.indices.length;
  // Sort (index, position) pairs packed into one float64 key: index * 2^20 + position is exact below 2^53.
  const keys = new Float64Array(n);
  for (let i = 0; i < n; i++) keys[i] = (vector.indices[i] as number) * 1048576 + i;
  keys.sort();
  const indices = new Int32Array(n);
  const values = new Float32Array(n);
  let k = -1;
  for (let s = 0; s < n; s++) {
    const key = keys[s] as number;
    const index = Math.floor(key / 1048576);
    const value = vector.values[key - index * 1048576] as number;
    if (k >= 0 && indices[k] === index) values[k] = (values[k] as number) + value;
    else {
      k++;
      indices[k] = index;
      values[k] = value;
    }
  }
  return { indices: indices.slice(0, k + 1), values: values.slice(0, k + 1) };
}

/** Feature vectors of rows, compacted for training, each carrying its focus terms for neighbour search. */
export function featurizeRows(rows: readonly RoutingRow[], featureSet: FeatureSet = "full", version: FeatureVersion = LATEST_FEATURE_VERSION): RowFeatures[] {
  return rows.map((row) => {
    const terms: number[] = [];
    const vector: RowFeatures = compactVector(extractFeatures(row.messages, featureSet, terms, version).vector);
    vector.terms = Uint32Array.from(terms);
    return vector;
  });
}

/**
 * A neighbour index over training rows, and each row's leave-one-out estimate (never counting
 * itself or a row with the same question), for calibrating the difficulty of the blended router.
 */
function leaveOneOutKnn(rows: readonly RoutingRow[], features: readonly RowFeatures[], models: readonly string[], settings: KnnSettings, version: FeatureVersion): { knn: KnnJSON; estimates: { scores: Float64Array; weight: number }[] } {
  const terms = features.map((v, r) => v.terms ?? termsOf(rows[r] as RoutingRow, version));
  const knn = buildKnn(terms, rows.map((row) => models.map((m) => scoreOf(row, m))), models.length, settings);
  const index = new KnnIndex(knn, models.length);
  const ids = new Map<string, number>();
  const group = Int32Array.from(rows, (row) => {
    const key = groupKey(row);
    let id = ids.get(key);
    if (id === undefined) {
      id = ids.size;
      ids.set(key, id);
    }
    return id;
  });
  const estimates = terms.map((t, r) => {
    const g = group[r] as number;
    const estimate = index.estimate(t, (d) => group[d] === g);
    return { scores: Float64Array.from(estimate.scores), weight: estimate.weight };
  });
  return { knn, estimates };
}

function termsOf(row: RoutingRow, version: FeatureVersion): Uint32Array {
  const terms: number[] = [];
  extractFeatures(row.messages, "full", terms, version);
  return Uint32Array.from(terms);
}

function logit(p: number): number {
  const q = Math.min(1 - 1e-4, Math.max(1e-4, p));
  return Math.log(q / (1 - q));
}

/**
 * Fits every head at once with FTRL-Proximal. State (z, n, w) of all heads is interleaved by feature,
 * so one row's coordinates for every head are a few cache lines apart. Rows without a model's outcome
 * skip that head.
 */
function trainHeads(
  vectors: readonly SparseVector[],
  labels: readonly (readonly (number | undefined)[])[],
  settings: TrainSettings,
  rowWeights: readonly number[],
): HeadJSON[] {
  const { alpha, beta, l1, l2 } = settings;
  const m = labels.length;
  const stride = 3 * m;
  const state = new Float64Array(FEATURE_DIM * stride);
  const biasZ = new Float64Array(m);
  const biasN = new Float64Array(m);
  const priors: number[] = [];
  const counts: number[] = [];
  const means: number[] = [];
  for (const column of labels) {
    let sum = 0;
    let count = 0;
    for (const y of column) {
      if (y === undefined) continue;
      sum += y;
      count++;
    }
    const mean = count > 0 ? sum / count : 0.5;
    counts.push(count);
    means.push(mean);
    priors.push(logit(mean));
  }
  const solve = (z: number, n: number): number => (Math.abs(z) <= l1 ? 0 : -(z - Math.sign(z) * l1) / ((beta + Math.sqrt(n)) / alpha + l2));
  const biasWeight = (j: number): number => -(biasZ[j] as number) / ((beta + Math.sqrt(biasN[j] as number)) / alpha);
  const random = seededRandom(settings.seed);
  const order = vectors.map((_, i) => i).filter((r) => labels.some((column) => column[r] !== undefined));
  const active = new Int32Array(m);
  const margins = new Float64Array(m);
  const grads = new Float64Array(m);
  for (let epoch = 0; epoch < settings.epochs; epoch++) {
    shuffleInPlace(order, random);
    for (const r of order) {
      const { indices, values } = vectors[r] as SparseVector;
      const nnz = indices.length;
      let na = 0;
      for (let j = 0; j < m; j++) {
        if ((labels[j] as (number | undefined)[])[r] === undefined) continue;
        active[na++] = j;
        margins[j] = (priors[j] as number) + biasWeight(j);
      }
      for (let k = 0; k < nnz; k++) {
        const base = (indices[k] as number) * stride;
        const v = values[k] as number;
        for (let a = 0; a < na; a++) {
          const j = active[a] as number;
          margins[j] = (margins[j] as number) + (state[base + 3 * j + 2] as number) * v;
        }
      }
      const weight = rowWeights[r] as number;
      for (let a = 0; a < na; a++) {
        const j = active[a] as number;
        const margin = margins[j] as number;
        const p = margin >= 0 ? 1 / (1 + Math.exp(-margin)) : Math.exp(margin) / (1 + Math.exp(margin));
        const g = (p - ((labels[j] as (number | undefined)[])[r] as number)) * weight;
        grads[j] = g;
        const wBias = biasWeight(j);
        const nb = biasN[j] as number;
        biasZ[j] = (biasZ[j] as number) + g - ((Math.sqrt(nb + g * g) - Math.sqrt(nb)) / alpha) * wBias;
        biasN[j] = nb + g * g;
      }
      for (let k = 0; k < nnz; k++) {
        const base = (indices[k] as number) * stride;
        const v = values[k] as number;
        for (let a = 0; a < na; a++) {
          const o = base + 3 * (active[a] as number);
          const gi = (grads[active[a] as number] as number) * v;
          const ni = state[o + 1] as number;
          const nNew = ni + gi * gi;
          const z = (state[o] as number) + gi - ((Math.sqrt(nNew) - Math.sqrt(ni)) / alpha) * (state[o + 2] as number);
          state[o] = z;
          state[o + 1] = nNew;
          state[o + 2] = solve(z, nNew);
        }
      }
    }
  }
  return labels.map((_, j) => {
    const kept: number[] = [];
    const weights: number[] = [];
    for (let i = 0; i < FEATURE_DIM; i++) {
      const wi = Math.fround(state[i * stride + 3 * j + 2] as number);
      if (wi === 0) continue;
      kept.push(i);
      weights.push(wi);
    }
    return {
      bias: Number(((priors[j] as number) + biasWeight(j)).toPrecision(10)),
      indices: toBase64(Int32Array.from(kept)),
      weights: toBase64(Float32Array.from(weights)),
      rows: counts[j] as number,
      meanScore: Number((means[j] as number).toPrecision(6)),
    };
  });
}

/** Per-row training weights that balance task families (see {@link TrainOptions.balanceSources}). */
export function sourceWeights(rows: readonly RoutingRow[], balance: boolean): number[] {
  if (!balance) return rows.map(() => 1);
  const family = (row: RoutingRow): string => `${row.source ?? ""}:${(row.task ?? "").split("/")[0]}`;
  const sizes = new Map<string, number>();
  for (const row of rows) sizes.set(family(row), (sizes.get(family(row)) ?? 0) + 1);
  const mean = rows.length / sizes.size;
  return rows.map((row) => Number(Math.sqrt(mean / (sizes.get(family(row)) as number)).toPrecision(6)));
}

/**
 * Trains a router from routing-outcome rows: a head per model (rows where a model has no outcome
 * are skipped for its head), expected-cost rates, difficulty quantile knots and default tiers.
 * @param vectors precomputed {@link featurizeRows} output for these rows (saves time in cross-validation).
 */
export function trainRouter(inputRows: readonly RoutingRow[], options: TrainOptions = {}, vectors?: readonly SparseVector[]): RouterJSON {
  const aliases = options.aliases && Object.keys(options.aliases).length > 0 ? options.aliases : undefined;
  const rows = applyAliases(inputRows, aliases);
  const settings: TrainSettings = {
    epochs: options.epochs ?? DEFAULT_TRAIN_SETTINGS.epochs,
    alpha: options.alpha ?? DEFAULT_TRAIN_SETTINGS.alpha,
    beta: options.beta ?? DEFAULT_TRAIN_SETTINGS.beta,
    l1: options.l1 ?? DEFAULT_TRAIN_SETTINGS.l1,
    l2: options.l2 ?? DEFAULT_TRAIN_SETTINGS.l2,
    seed: options.seed ?? DEFAULT_TRAIN_SETTINGS.seed,
    featureSet: options.featureSet ?? DEFAULT_TRAIN_SETTINGS.featureSet,
  };
  const models = options.models ? [...new Set(options.models.map((m) => aliases?.[m] ?? m))] : modelsOf(rows);
  if (rows.length === 0) throw new Error("no training rows");
  if (models.length === 0) throw new Error("no model has any outcome in the training rows");
  const featureVersion = options.featureVersion ?? LATEST_FEATURE_VERSION;
  const features = vectors ?? featurizeRows(rows, settings.featureSet, featureVersion);

  const labels = models.map((model) => rows.map((row) => scoreOf(row, model)));
  const pairs = (options.pairs ?? []).map(([strong, weak]) => [aliases?.[strong] ?? strong, aliases?.[weak] ?? weak] as const);
  for (const [strong, weak] of pairs) {
    if (strong === weak) throw new Error(`pair head ${strong} vs ${weak}: the two models must differ`);
    const s = rows.map((row) => scoreOf(row, strong));
    const w = rows.map((row) => scoreOf(row, weak));
    // "Strong wins" on rows where exactly one is better; "they differ" on every row with both.
    labels.push(s.map((x, r) => (x === undefined || w[r] === undefined || x === w[r] ? undefined : x > (w[r] as number) ? 1 : 0)));
    labels.push(s.map((x, r) => (x === undefined || w[r] === undefined ? undefined : x === w[r] ? 0 : 1)));
  }
  const knnOption = options.knn ?? true;
  const knnSettings: KnnSettings | undefined =
    knnOption === false || settings.featureSet !== "full" ? undefined : { ...DEFAULT_KNN_SETTINGS, ...(knnOption === true ? {} : knnOption) };
  const balance = sourceWeights(rows, options.balanceSources ?? true);
  const multipliers = options.sourceWeights;
  const rowWeights = multipliers ? balance.map((w, r) => w * (multipliers[rows[r]?.source ?? ""] ?? 1)) : balance;
  const trained = trainHeads(features, labels, settings, rowWeights);
  const withKnn = knnSettings ? leaveOneOutKnn(rows, features, models, knnSettings, featureVersion) : undefined;
  const knnWeight = options.knnWeight ?? 0.5;
  const heads: Record<string, HeadJSON> = {};
  models.forEach((model, j) => {
    heads[model] = trained[j] as HeadJSON;
  });
  const pairHeads: PairHeadJSON[] = pairs.map(([strong, weak], i) => ({
    strong,
    weak,
    win: trained[models.length + 2 * i] as HeadJSON,
    differ: trained[models.length + 2 * i + 1] as HeadJSON,
  }));
  const partial = {
    featureSet: settings.featureSet,
    hashBits: HASH_BITS,
    models,
    heads,
    ...(withKnn ? { knn: withKnn.knn, knnWeight } : {}),
    ...(pairHeads.length > 0 ? { pairs: pairHeads } : {}),
    ...(featureVersion !== 1 ? { featureVersion } : {}),
    ...(options.stage2?.fallback ? { fallback: options.stage2.fallback } : {}),
    ...(options.stage2?.calibration ? { calibration: options.stage2.calibration } : {}),
  };
  const version = routerVersion(partial);

  const tierQuantiles = options.tierQuantiles ?? [0.4, 0.8];
  const tierNames = options.tierNames ?? ["simple", "standard", "complex"];
  if (tierNames.length !== tierQuantiles.length + 1) throw new Error("tierNames needs one more entry than tierQuantiles");
  const tiers: Tier[] = tierNames.map((name, i) => ({ name, maxDifficulty: i < tierQuantiles.length ? (tierQuantiles[i] as number) : 1 }));

  const json: RouterJSON = {
    format: "switchyard-router/1",
    version,
    featureSet: settings.featureSet,
    hashBits: HASH_BITS,
    models,
    heads,
    costs: fitCostRates(rows, models, options.prices),
    difficulty: {
      definition:
        "raw = 1 - mean over models of the predicted score; difficulty = quantile of raw among the training prompts (piecewise linear between knots)",
      knots: [],
    },
    tiers,
    training: {
      rows: rows.length,
      ...settings,
      balanceSources: options.balanceSources ?? true,
      tierQuantiles,
      knn: knnSettings ?? false,
      ...(withKnn ? { knnWeight } : {}),
      ...(aliases ? { aliases } : {}),
      ...(featureVersion !== 1 ? { featureVersion } : {}),
      ...(multipliers ? { sourceWeights: multipliers } : {}),
    },
    ...(withKnn ? { knn: withKnn.knn, knnWeight } : {}),
    ...(aliases ? { aliases } : {}),
    ...(pairHeads.length > 0 ? { pairs: pairHeads } : {}),
    ...(featureVersion !== 1 ? { featureVersion } : {}),
  };
  // The knots describe stage 1 (heads and neighbours): the router is built without stage 2 here.
  const router = RouterModel.fromJSON(json);
  const difficultyModels = (options.difficultyMinRows ?? 0) > 0 ? models.filter((_, j) => (trained[j] as HeadJSON).rows >= (options.difficultyMinRows as number)) : undefined;
  if (difficultyModels && difficultyModels.length > 0 && difficultyModels.length < models.length) json.difficulty.models = difficultyModels;
  const difficultyIndex = (json.difficulty.models ?? models).map((m) => models.indexOf(m));
  const raws = features.map((vector, r) => {
    // Leave-one-out neighbour estimates: a row must not find itself.
    const heads = router.scoreParts(vector, undefined, null).raw;
    const scores = withKnn ? router.blendScores(heads, withKnn.estimates[r]!.scores, withKnn.estimates[r]!.weight) : heads;
    let sum = 0;
    for (const j of difficultyIndex) sum += scores[j] as number;
    return 1 - sum / difficultyIndex.length;
  });
  raws.sort((a, b) => a - b);
  json.difficulty.knots = Array.from({ length: KNOTS }, (_, i) => {
    const at = (i / (KNOTS - 1)) * (raws.length - 1);
    const lo = Math.floor(at);
    const hi = Math.min(raws.length - 1, lo + 1);
    const value = (raws[lo] as number) + ((raws[hi] as number) - (raws[lo] as number)) * (at - lo);
    return Number(value.toPrecision(6));
  });
  if (options.stage2?.fallback) json.fallback = options.stage2.fallback;
  if (options.stage2?.calibration) json.calibration = options.stage2.calibration;
  return json;
}
