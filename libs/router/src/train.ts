/**
 * Training: one logistic head per model, fitted with FTRL-Proximal (per-coordinate learning rates,
 * L1 + L2), the standard learner for hashed sparse features. L1 keeps the stored router small.
 * Deterministic: a seeded shuffle per epoch, fixed iteration order, no parallelism, so the same rows
 * and options give a byte-identical router.
 */
import { extractFeatures, FEATURE_DIM, HASH_BITS, type FeatureSet, type SparseVector } from "./features.js";
import { seededRandom, shuffleInPlace, toBase64 } from "./hash.js";
import { fitCostRates } from "./cost.js";
import { modelsOf, scoreOf, type PriceTable, type RoutingRow } from "./data.js";
import { routerVersion, RouterModel, type HeadJSON, type RouterJSON, type Tier } from "./model.js";

/** Training settings; every field has a default. */
export interface TrainOptions {
  /** Passes over the data (default 6). */
  epochs?: number;
  /** FTRL learning-rate scale (default 0.05). */
  alpha?: number;
  /** FTRL learning-rate smoothing (default 1). */
  beta?: number;
  /** L1 strength: larger gives sparser, smaller routers (default 0.5). */
  l1?: number;
  /** L2 strength (default 4). */
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
export const DEFAULT_TRAIN_SETTINGS: TrainSettings = { epochs: 6, alpha: 0.05, beta: 1, l1: 0.5, l2: 4, seed: 7, featureSet: "full" };

const KNOTS = 101;

/** Sorts a vector's indices and merges repeated ones (training wants one entry per coordinate). */
export function compactVector(vector: SparseVector): SparseVector {
  const n = vector.indices.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => (vector.indices[a] as number) - (vector.indices[b] as number));
  const indices = new Int32Array(n);
  const values = new Float32Array(n);
  let k = -1;
  for (const i of order) {
    const index = vector.indices[i] as number;
    if (k >= 0 && indices[k] === index) values[k] = (values[k] as number) + (vector.values[i] as number);
    else {
      k++;
      indices[k] = index;
      values[k] = vector.values[i] as number;
    }
  }
  return { indices: indices.slice(0, k + 1), values: values.slice(0, k + 1) };
}

/** Feature vectors of rows, compacted for training. */
export function featurizeRows(rows: readonly RoutingRow[], featureSet: FeatureSet = "full"): SparseVector[] {
  return rows.map((row) => compactVector(extractFeatures(row.messages, featureSet).vector));
}

function logit(p: number): number {
  const q = Math.min(1 - 1e-4, Math.max(1e-4, p));
  return Math.log(q / (1 - q));
}

/** Fits one head with FTRL-Proximal on the rows where the model has a score. */
function trainHead(vectors: readonly SparseVector[], labels: readonly (number | undefined)[], settings: TrainSettings): HeadJSON {
  const { alpha, beta, l1, l2 } = settings;
  const rowsWithLabel: number[] = [];
  let sum = 0;
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (y === undefined) continue;
    rowsWithLabel.push(i);
    sum += y;
  }
  const meanScore = rowsWithLabel.length > 0 ? sum / rowsWithLabel.length : 0.5;
  const prior = logit(meanScore);
  const z = new Float64Array(FEATURE_DIM);
  const nsq = new Float64Array(FEATURE_DIM);
  let zBias = 0;
  let nBias = 0;
  const random = seededRandom(settings.seed);
  const order = [...rowsWithLabel];
  for (let epoch = 0; epoch < settings.epochs; epoch++) {
    shuffleInPlace(order, random);
    for (const r of order) {
      const { indices, values } = vectors[r] as SparseVector;
      const y = labels[r] as number;
      const wBias = -zBias / ((beta + Math.sqrt(nBias)) / alpha);
      let margin = prior + wBias;
      const w = new Float64Array(indices.length);
      for (let k = 0; k < indices.length; k++) {
        const i = indices[k] as number;
        const zi = z[i] as number;
        if (Math.abs(zi) <= l1) continue;
        const wi = -(zi - Math.sign(zi) * l1) / ((beta + Math.sqrt(nsq[i] as number)) / alpha + l2);
        w[k] = wi;
        margin += wi * (values[k] as number);
      }
      const p = margin >= 0 ? 1 / (1 + Math.exp(-margin)) : Math.exp(margin) / (1 + Math.exp(margin));
      const g = p - y;
      const sigmaBias = (Math.sqrt(nBias + g * g) - Math.sqrt(nBias)) / alpha;
      zBias += g - sigmaBias * wBias;
      nBias += g * g;
      for (let k = 0; k < indices.length; k++) {
        const i = indices[k] as number;
        const gi = g * (values[k] as number);
        const ni = nsq[i] as number;
        const sigma = (Math.sqrt(ni + gi * gi) - Math.sqrt(ni)) / alpha;
        z[i] = (z[i] as number) + gi - sigma * (w[k] as number);
        nsq[i] = ni + gi * gi;
      }
    }
  }
  const kept: number[] = [];
  const weights: number[] = [];
  for (let i = 0; i < FEATURE_DIM; i++) {
    const zi = z[i] as number;
    if (Math.abs(zi) <= l1) continue;
    const wi = Math.fround(-(zi - Math.sign(zi) * l1) / ((beta + Math.sqrt(nsq[i] as number)) / alpha + l2));
    if (wi === 0) continue;
    kept.push(i);
    weights.push(wi);
  }
  const bias = prior - zBias / ((beta + Math.sqrt(nBias)) / alpha);
  return {
    bias: Number(bias.toPrecision(10)),
    indices: toBase64(Int32Array.from(kept)),
    weights: toBase64(Float32Array.from(weights)),
    rows: rowsWithLabel.length,
    meanScore: Number(meanScore.toPrecision(6)),
  };
}

/**
 * Trains a router from routing-outcome rows: a head per model (rows where a model has no outcome
 * are skipped for its head), expected-cost rates, difficulty quantile knots and default tiers.
 * @param vectors precomputed {@link featurizeRows} output for these rows (saves time in cross-validation).
 */
export function trainRouter(rows: readonly RoutingRow[], options: TrainOptions = {}, vectors?: readonly SparseVector[]): RouterJSON {
  const settings: TrainSettings = {
    epochs: options.epochs ?? DEFAULT_TRAIN_SETTINGS.epochs,
    alpha: options.alpha ?? DEFAULT_TRAIN_SETTINGS.alpha,
    beta: options.beta ?? DEFAULT_TRAIN_SETTINGS.beta,
    l1: options.l1 ?? DEFAULT_TRAIN_SETTINGS.l1,
    l2: options.l2 ?? DEFAULT_TRAIN_SETTINGS.l2,
    seed: options.seed ?? DEFAULT_TRAIN_SETTINGS.seed,
    featureSet: options.featureSet ?? DEFAULT_TRAIN_SETTINGS.featureSet,
  };
  const models = options.models ?? modelsOf(rows);
  if (rows.length === 0) throw new Error("no training rows");
  if (models.length === 0) throw new Error("no model has any outcome in the training rows");
  const features = vectors ?? featurizeRows(rows, settings.featureSet);

  const heads: Record<string, HeadJSON> = {};
  for (const model of models) {
    const labels = rows.map((row) => scoreOf(row, model));
    heads[model] = trainHead(features, labels, settings);
  }
  const partial = { featureSet: settings.featureSet, hashBits: HASH_BITS, models, heads };
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
    training: { rows: rows.length, ...settings, tierQuantiles },
  };
  const router = RouterModel.fromJSON(json);
  const raws = features.map((vector) => {
    const scores = router.scoreVector(vector);
    let sum = 0;
    for (const s of scores) sum += s;
    return 1 - sum / scores.length;
  });
  raws.sort((a, b) => a - b);
  json.difficulty.knots = Array.from({ length: KNOTS }, (_, i) => {
    const at = (i / (KNOTS - 1)) * (raws.length - 1);
    const lo = Math.floor(at);
    const hi = Math.min(raws.length - 1, lo + 1);
    const value = (raws[lo] as number) + ((raws[hi] as number) - (raws[lo] as number)) * (at - lo);
    return Number(value.toPrecision(6));
  });
  return json;
}
