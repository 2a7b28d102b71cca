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
  /** L1 strength of the per-model weights: larger gives sparser, smaller routers. */
  l1?: number;
  /** L2 strength of the per-model weights. */
  l2?: number;
  /** L1 strength of the weights shared by all models. */
  sharedL1?: number;
  /** L2 strength of the shared weights; negative disables them (independent heads). */
  sharedL2?: number;
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
}

/** The resolved training settings stored in the router file. */
export interface TrainSettings {
  epochs: number;
  alpha: number;
  beta: number;
  l1: number;
  l2: number;
  sharedL1: number;
  sharedL2: number;
  seed: number;
  featureSet: FeatureSet;
}

/** Default training settings. */
export const DEFAULT_TRAIN_SETTINGS: TrainSettings = { epochs: 6, alpha: 0.05, beta: 1, l1: 0.5, l2: 4, sharedL1: 0.5, sharedL2: 1, seed: 7, featureSet: "full" };

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

/** FTRL-Proximal state of one weight vector (z and the sum of squared gradients per coordinate). */
class FtrlVector {
  readonly z = new Float64Array(FEATURE_DIM);
  readonly n = new Float64Array(FEATURE_DIM);
  constructor(
    private readonly alpha: number,
    private readonly beta: number,
    private readonly l1: number,
    private readonly l2: number,
  ) {}

  /** The current weight of a coordinate (0 while L1 holds it there). */
  weight(i: number): number {
    const zi = this.z[i] as number;
    if (Math.abs(zi) <= this.l1) return 0;
    return -(zi - Math.sign(zi) * this.l1) / ((this.beta + Math.sqrt(this.n[i] as number)) / this.alpha + this.l2);
  }

  /** Applies gradient g at coordinate i whose weight was w when the prediction was made. */
  update(i: number, g: number, w: number): void {
    const ni = this.n[i] as number;
    const sigma = (Math.sqrt(ni + g * g) - Math.sqrt(ni)) / this.alpha;
    this.z[i] = (this.z[i] as number) + g - sigma * w;
    this.n[i] = ni + g * g;
  }

  /** The non-zero weights, as float32, indices ascending. */
  export(): { indices: string; weights: string; count: number } {
    const kept: number[] = [];
    const weights: number[] = [];
    for (let i = 0; i < FEATURE_DIM; i++) {
      if (this.n[i] === 0) continue;
      const wi = Math.fround(this.weight(i));
      if (wi === 0) continue;
      kept.push(i);
      weights.push(wi);
    }
    return { indices: toBase64(Int32Array.from(kept)), weights: toBase64(Float32Array.from(weights)), count: kept.length };
  }
}

/**
 * Fits every head at once. Each model's logit is prior + bias_m + (shared + own_m) · x: the shared
 * weights learn what makes a prompt hard for every model, the per-model weights (regularised harder)
 * only how a model differs, so the differences between models, which routing depends on, are not
 * drowned in the noise of fitting each head alone. Rows without a model's outcome skip that head.
 */
function trainHeads(
  vectors: readonly SparseVector[],
  labels: readonly (readonly (number | undefined)[])[],
  settings: TrainSettings,
  rowWeights: readonly number[],
): { heads: HeadJSON[]; shared: { indices: string; weights: string } | undefined } {
  const { alpha, beta } = settings;
  const m = labels.length;
  const useShared = settings.sharedL2 >= 0;
  const shared = useShared ? new FtrlVector(alpha, beta, settings.sharedL1, settings.sharedL2) : undefined;
  const own = labels.map(() => new FtrlVector(alpha, beta, settings.l1, settings.l2));
  const bias = labels.map(() => new FtrlVector(alpha, beta, 0, 0));
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
  const random = seededRandom(settings.seed);
  const order = vectors.map((_, i) => i).filter((r) => labels.some((column) => column[r] !== undefined));
  const wShared = new Float64Array(4096);
  let wOwn = new Float64Array(4096);
  for (let epoch = 0; epoch < settings.epochs; epoch++) {
    shuffleInPlace(order, random);
    for (const r of order) {
      const { indices, values } = vectors[r] as SparseVector;
      const nnz = indices.length;
      if (nnz > wOwn.length) wOwn = new Float64Array(nnz * 2);
      const sharedWeights = nnz > wShared.length ? new Float64Array(nnz) : wShared;
      let sharedMargin = 0;
      if (shared) {
        for (let k = 0; k < nnz; k++) {
          const w = shared.weight(indices[k] as number);
          sharedWeights[k] = w;
          sharedMargin += w * (values[k] as number);
        }
      }
      for (let j = 0; j < m; j++) {
        const y = (labels[j] as (number | undefined)[])[r];
        if (y === undefined) continue;
        const head = own[j] as FtrlVector;
        const b = bias[j] as FtrlVector;
        const wBias = b.weight(0);
        let margin = (priors[j] as number) + wBias + sharedMargin;
        for (let k = 0; k < nnz; k++) {
          const w = head.weight(indices[k] as number);
          wOwn[k] = w;
          margin += w * (values[k] as number);
        }
        const p = margin >= 0 ? 1 / (1 + Math.exp(-margin)) : Math.exp(margin) / (1 + Math.exp(margin));
        const g = (p - y) * (rowWeights[r] as number);
        b.update(0, g, wBias);
        for (let k = 0; k < nnz; k++) {
          const i = indices[k] as number;
          const gi = g * (values[k] as number);
          head.update(i, gi, wOwn[k] as number);
          if (shared) shared.update(i, gi, sharedWeights[k] as number);
        }
      }
    }
  }
  const heads = own.map((head, j) => {
    const exported = head.export();
    return {
      bias: Number(((priors[j] as number) + (bias[j] as FtrlVector).weight(0)).toPrecision(10)),
      indices: exported.indices,
      weights: exported.weights,
      rows: counts[j] as number,
      meanScore: Number((means[j] as number).toPrecision(6)),
    };
  });
  const sharedExport = shared?.export();
  return { heads, shared: sharedExport ? { indices: sharedExport.indices, weights: sharedExport.weights } : undefined };
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
export function trainRouter(rows: readonly RoutingRow[], options: TrainOptions = {}, vectors?: readonly SparseVector[]): RouterJSON {
  const settings: TrainSettings = {
    epochs: options.epochs ?? DEFAULT_TRAIN_SETTINGS.epochs,
    alpha: options.alpha ?? DEFAULT_TRAIN_SETTINGS.alpha,
    beta: options.beta ?? DEFAULT_TRAIN_SETTINGS.beta,
    l1: options.l1 ?? DEFAULT_TRAIN_SETTINGS.l1,
    l2: options.l2 ?? DEFAULT_TRAIN_SETTINGS.l2,
    sharedL1: options.sharedL1 ?? DEFAULT_TRAIN_SETTINGS.sharedL1,
    sharedL2: options.sharedL2 ?? DEFAULT_TRAIN_SETTINGS.sharedL2,
    seed: options.seed ?? DEFAULT_TRAIN_SETTINGS.seed,
    featureSet: options.featureSet ?? DEFAULT_TRAIN_SETTINGS.featureSet,
  };
  const models = options.models ?? modelsOf(rows);
  if (rows.length === 0) throw new Error("no training rows");
  if (models.length === 0) throw new Error("no model has any outcome in the training rows");
  const features = vectors ?? featurizeRows(rows, settings.featureSet);

  const labels = models.map((model) => rows.map((row) => scoreOf(row, model)));
  const trained = trainHeads(features, labels, settings, sourceWeights(rows, options.balanceSources ?? true));
  const heads: Record<string, HeadJSON> = {};
  models.forEach((model, j) => {
    heads[model] = trained.heads[j] as HeadJSON;
  });
  const partial = { featureSet: settings.featureSet, hashBits: HASH_BITS, models, heads, ...(trained.shared ? { shared: trained.shared } : {}) };
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
    ...(trained.shared ? { shared: trained.shared } : {}),
    costs: fitCostRates(rows, models, options.prices),
    difficulty: {
      definition:
        "raw = 1 - mean over models of the predicted score; difficulty = quantile of raw among the training prompts (piecewise linear between knots)",
      knots: [],
    },
    tiers,
    training: { rows: rows.length, ...settings, balanceSources: options.balanceSources ?? true, tierQuantiles },
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
