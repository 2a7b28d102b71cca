/**
 * The router at inference: per-model logistic heads over the request's features, averaged in logit
 * space with a nearest-neighbour estimate (knn.ts) in proportion to how much neighbour evidence there is.
 *
 * `predicted[m]` is the probability that model m answers the request correctly (its expected score).
 * Routers trained with a stage 2 (stage2.ts, in the file as `fallback` and `calibration`) then lean
 * on a difficulty fallback where the heads have little evidence, and map each model's score through
 * its calibration, so that a predicted 0.8 means about 0.8.
 * `difficulty` blends two things:
 * - learned: raw = 1 - mean over models (the file's `difficulty.models`, else all) of the stage-1 score, mapped through the empirical distribution of
 *   raw over the training prompts (quantile knots, from leave-one-out neighbour estimates), so 0.3
 *   means "harder than about 30% of the training prompts";
 * - a hand-set prior (`priorDifficulty`: length, task type, reasoning and hard cues), because the
 *   training prompts are all benchmark questions and say nothing about "hi" or a request for a
 *   concurrent cache implementation.
 * The learned part weighs up to 0.5, scaled by the request's similarity to its nearest training
 * prompt (`learnedWeight`); out-of-distribution traffic is tiered by the prior. Default tiers:
 * simple ≤ 0.4 < standard ≤ 0.8 < complex.
 */
import { readFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { extractFeatures, taskTypeOfVector, HASH_BITS, type ChatMessage, type FeatureSet, type FeatureSummary, type FeatureVersion, type SparseVector, type TaskType } from "./features.js";
import { FEATURE_DIM } from "./features.js";
import { KnnIndex, type KnnJSON, type RowFeatures } from "./knn.js";
import { fromBase64 } from "./hash.js";
import type { CostRates } from "./cost.js";
import { RouterInputError } from "./data.js";

/** A complexity tier: requests with difficulty up to `maxDifficulty` belong to it. */
export interface Tier {
  name: string;
  maxDifficulty: number;
}

/** One model's logistic head, as stored: bias plus the non-zero weights (sorted indices). */
export interface HeadJSON {
  bias: number;
  /** base64 of little-endian Int32 feature indices, ascending. */
  indices: string;
  /** base64 of little-endian Float32 weights, one per index. */
  weights: string;
  /** Rows this head was trained on, and their mean score. */
  rows: number;
  meanScore: number;
}

/**
 * A dedicated head pair for one (strong, weak) pair: `win` is P(strong right, weak wrong | exactly one
 * is right), trained on the rows where they differ; `differ` is P(they differ), on every row with both.
 */
export interface PairHeadJSON {
  strong: string;
  weak: string;
  win: HeadJSON;
  differ: HeadJSON;
}

/** What a pair head says about one request (see {@link RouterModel.predictPair}). */
export interface PairPrediction {
  /** P(strong right, weak wrong | exactly one of them is right). */
  win: number;
  /** P(exactly one of them is right). */
  differ: number;
  /** Expected gain of sending the request to the strong model: differ · (2·win − 1), in [-1, 1]. */
  gain: number;
}

/**
 * The difficulty fallback (stage 2): each model's expected score as a logistic function of the
 * request's learned difficulty, `logit = intercept + slope · (difficulty − 0.5)`, fitted on
 * out-of-fold predictions. The router leans on it where the heads have little evidence: its share of
 * the logit-space average is `weight · evidence / (evidence + W)`, W the neighbours' summed weight
 * (0 without a neighbour index), so a request unlike every training prompt is scored by its
 * difficulty, and one with many close neighbours by its heads. Chosen under cross-validation.
 */
export interface FallbackJSON {
  definition?: string;
  weight: number;
  evidence: number;
  /**
   * Evidence the training data holds for each kind of request (task type): its training rows / 1000,
   * added to W. Absent: W alone.
   */
  kindEvidence?: Record<string, number>;
  /** By model; a model without an entry keeps its heads' score. */
  response: Record<string, { intercept: number; slope: number }>;
}

/**
 * A per-model calibration map (isotonic, fitted on out-of-fold predictions): the stage-2 score is
 * mapped piecewise-linearly through the knots (x ascending, y non-decreasing), flat outside them.
 */
export interface CalibrationJSON {
  x: number[];
  y: number[];
}

/** The router file: everything `RouterModel.fromJSON` needs. */
export interface RouterJSON {
  format: "switchyard-router/1";
  /** Hash of the weights and feature settings. */
  version: string;
  featureSet: FeatureSet;
  hashBits: number;
  models: string[];
  heads: Record<string, HeadJSON>;
  /** Weights every model shares (added to each head's own), when trained with them. */
  shared?: { indices: string; weights: string };
  /** Expected cost per call by model (USD), for cost-aware choice. */
  costs: CostRates;
  difficulty: {
    definition: string;
    /** Raw difficulty (1 - mean predicted score) at quantiles 0, 1/(n-1), ..., 1 of the training prompts. */
    knots: number[];
    /** The models whose predicted scores the mean is over (absent: every model). */
    models?: string[];
  };
  tiers: Tier[];
  training: Record<string, unknown>;
  /** Neighbour index (see knn.ts); absent in routers trained without it. */
  knn?: KnnJSON;
  /** Weight of the neighbour estimate in the logit-space average with the heads (default 0.5). */
  knnWeight?: number;
  /** Model aliases the router was trained with (`{ FROM: TO }`): FROM's outcomes were trained as TO's. */
  aliases?: Record<string, string>;
  /** Pair heads, for (strong, weak) pairs trained with them. */
  pairs?: PairHeadJSON[];
  /** Feature version the router was trained with (absent: 1, the original features). */
  featureVersion?: FeatureVersion;
  /** The difficulty fallback (absent: the heads and neighbours alone). */
  fallback?: FallbackJSON;
  /** Per-model calibration of the final score (absent: uncalibrated). */
  calibration?: Record<string, CalibrationJSON>;
}

/** What the router says about one request. */
export interface RouterPrediction {
  /** In [0, 1]: the request's difficulty quantile among the training prompts. */
  difficulty: number;
  taskType: TaskType;
  /** Expected score in [0, 1] by model. */
  predicted: Record<string, number>;
  estimatedInputTokens: number;
}

/**
 * The tier for a difficulty: the first tier whose `maxDifficulty` is at least `difficulty`, or the
 * last tier when none is. Throws on an empty tier list.
 */
export function tierFor(difficulty: number, tiers: readonly Tier[]): string {
  if (tiers.length === 0) throw new RouterInputError("tierFor needs at least one tier");
  for (const tier of tiers) if (difficulty <= tier.maxDifficulty) return tier.name;
  return (tiers[tiers.length - 1] as Tier).name;
}

const TASK_PRIOR: Record<TaskType, number> = { chat: 0, creative: 0.1, extraction: 0.15, translation: 0.15, multiple_choice: 0.25, math: 0.35, code: 0.4 };

/**
 * A hand-set prior difficulty in [0, 1] from readable features, for traffic unlike the benchmark
 * prompts the heads were trained on: length (log words, 400 words = full), task type, reasoning cues
 * ("explain", "step", ...) and hard cues ("prove", "derive", "concurrency", ...). "hi" scores about
 * 0.05; "prove by induction ..., step by step" or a long concurrent-code request about 1.
 */
export function priorDifficulty(summary: Pick<FeatureSummary, "words" | "taskType" | "reasoningCues" | "hardCues">): number {
  const length = Math.min(1, Math.log2(1 + summary.words) / Math.log2(401));
  const z = 0.5 * length + TASK_PRIOR[summary.taskType] + 0.12 * Math.min(3, summary.reasoningCues) + 0.6 * Math.min(2, summary.hardCues ?? 0);
  return Math.min(1, Math.max(0, z));
}

/**
 * How much the learned difficulty counts against the prior: up to 0.5, in proportion to how similar
 * the request is to its nearest training prompt (full weight from cosine 0.5). Routers without a
 * neighbour index always give it 0.5.
 */
export function learnedWeight(maxSimilarity: number | undefined): number {
  return maxSimilarity === undefined ? 0.5 : 0.5 * Math.min(1, maxSimilarity / 0.5);
}

function logit(p: number): number {
  const q = Math.min(1 - 1e-6, Math.max(1e-6, p));
  return Math.log(q / (1 - q));
}

function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

/** Piecewise-linear interpolation through knots (x ascending), flat outside them. */
export function interpolate(value: number, x: ArrayLike<number>, y: ArrayLike<number>): number {
  const n = x.length;
  if (n === 0) return value;
  if (value <= (x[0] as number)) return y[0] as number;
  if (value >= (x[n - 1] as number)) return y[n - 1] as number;
  let lo = 0;
  let hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if ((x[mid] as number) <= value) lo = mid;
    else hi = mid;
  }
  const x0 = x[lo] as number;
  const x1 = x[hi] as number;
  const y0 = y[lo] as number;
  return x1 > x0 ? y0 + ((value - x0) / (x1 - x0)) * ((y[hi] as number) - y0) : y0;
}

/** Maps a raw value through quantile knots to its quantile in [0, 1] (piecewise linear). */
export function quantileOf(raw: number, knots: readonly number[]): number {
  const n = knots.length;
  if (n === 0) return Math.min(1, Math.max(0, raw));
  if (n === 1 || raw <= (knots[0] as number)) return 0;
  if (raw >= (knots[n - 1] as number)) return 1;
  let lo = 0;
  let hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if ((knots[mid] as number) <= raw) lo = mid;
    else hi = mid;
  }
  const a = knots[lo] as number;
  const b = knots[hi] as number;
  const frac = b > a ? (raw - a) / (b - a) : 0;
  return (lo + frac) / (n - 1);
}

/** Hash of a router's weights and feature settings: its version. */
export function routerVersion(json: Pick<RouterJSON, "featureSet" | "hashBits" | "models" | "heads" | "shared" | "knn" | "knnWeight" | "pairs" | "featureVersion" | "fallback" | "calibration">): string {
  const hash = createHash("sha256");
  hash.update(JSON.stringify([json.featureSet, json.hashBits, json.models]));
  if (json.featureVersion !== undefined && json.featureVersion !== 1) hash.update(`features ${json.featureVersion}\n`);
  if (json.fallback) hash.update(`fallback ${JSON.stringify(json.fallback)}\n`);
  if (json.calibration) hash.update(`calibration ${JSON.stringify(json.calibration)}\n`);
  if (json.shared) hash.update(`shared\n${json.shared.indices}\n${json.shared.weights}\n`);
  for (const model of json.models) {
    const head = json.heads[model];
    if (head) hash.update(`${model}\n${head.bias}\n${head.indices}\n${head.weights}\n`);
  }
  if (json.knn) hash.update(`knn ${json.knnWeight ?? 0.5}\n${JSON.stringify(json.knn)}\n`);
  for (const pair of json.pairs ?? []) {
    for (const head of [pair.win, pair.differ]) hash.update(`pair ${pair.strong}\n${pair.weak}\n${head.bias}\n${head.indices}\n${head.weights}\n`);
  }
  return hash.digest("hex").slice(0, 16);
}

/** A loaded router: predicts per-model quality and difficulty for chat requests. */
export class RouterModel {
  /** The models this router predicts, in file order. */
  readonly models: string[];
  /** Hash of the weights. */
  readonly version: string;
  /** The default tiers, calibrated on the training data. */
  readonly tiers: Tier[];
  /** Expected cost rates by model, where known. */
  readonly costs: CostRates;
  readonly featureSet: FeatureSet;
  /** Feature version of this router's heads (1 for files without one). */
  readonly featureVersion: FeatureVersion;
  /** Weight rows, interleaved by feature: row r holds every model's weight of the feature whose slot is r. */
  private readonly weights: Float32Array;
  /** Feature index → weight row, -1 for features no head uses (most of the hashed space, after L1). */
  private readonly rowOf: Int32Array;
  private readonly biases: Float64Array;
  private readonly fallbackIntercepts: Float64Array | undefined;
  private readonly fallbackSlopes: Float64Array | undefined;
  private readonly fallbackWeight: number;
  private readonly fallbackEvidence: number;
  private readonly kindEvidence: Readonly<Record<string, number>>;
  private lastTaskType: TaskType | undefined;
  private readonly calibration: ({ x: Float64Array; y: Float64Array } | undefined)[];
  private lastDifficulty = 0.5;
  private lastEvidence = 0;
  private readonly knots: number[];
  /** Indices of the models the difficulty averages over (every model when the file names none). */
  private readonly difficultyModels: Int32Array;
  private readonly scratch: Float64Array;
  private readonly knn: KnnIndex | undefined;
  private readonly knnWeight: number;
  private readonly knnScratch: Float64Array;
  private readonly terms: number[] = [];
  private lastMaxSimilarity = 0;
  /** Model aliases the router was trained with (`{ FROM: TO }`). */
  readonly aliases: Readonly<Record<string, string>>;
  /** Pair heads by "strong\u0000weak": sparse weights (sorted indices) and biases. */
  private readonly pairHeads = new Map<string, { win: SparseHead; differ: SparseHead }>();

  private constructor(json: RouterJSON) {
    this.models = [...json.models];
    this.version = json.version;
    this.tiers = json.tiers.map((t) => ({ ...t }));
    this.costs = json.costs ?? {};
    this.featureSet = json.featureSet;
    this.knots = [...json.difficulty.knots];
    const named = json.difficulty.models;
    if (named) {
      for (const model of named) if (!json.models.includes(model)) throw new RouterInputError(`router difficulty names an unknown model "${model}"`);
    }
    this.difficultyModels = Int32Array.from(named ? named.map((model) => json.models.indexOf(model)) : json.models.map((_, j) => j));
    const m = this.models.length;
    this.featureVersion = json.featureVersion === 2 ? 2 : 1;
    this.biases = new Float64Array(m);
    this.scratch = new Float64Array(m);
    this.knnScratch = new Float64Array(m);
    this.knn = json.knn ? new KnnIndex(json.knn, m) : undefined;
    this.knnWeight = json.knnWeight ?? 0.5;
    const decoded: { what: string; indices: Int32Array; weights: Float32Array; j: number }[] = [];
    const decode = (what: string, stored: { indices: string; weights: string }, j: number): void => {
      const indices = new Int32Array(fromBase64(stored.indices));
      const weights = new Float32Array(fromBase64(stored.weights));
      if (indices.length !== weights.length) throw new RouterInputError(`router ${what}: ${indices.length} indices but ${weights.length} weights`);
      for (let k = 0; k < indices.length; k++) {
        const index = indices[k] as number;
        if (index < 0 || index >= FEATURE_DIM) throw new RouterInputError(`router ${what}: feature index ${index} out of range`);
      }
      decoded.push({ what, indices, weights, j });
    };
    this.aliases = { ...(json.aliases ?? {}) };
    for (const pair of json.pairs ?? []) {
      this.pairHeads.set(`${pair.strong}\u0000${pair.weak}`, { win: sparseHead(`pair head ${pair.strong} vs ${pair.weak}`, pair.win), differ: sparseHead(`pair head ${pair.strong} vs ${pair.weak}`, pair.differ) });
    }
    if (json.shared) decode("shared weights", json.shared, -1);
    this.models.forEach((model, j) => {
      const head = json.heads[model];
      if (!head) throw new RouterInputError(`router has no head for model "${model}"`);
      this.biases[j] = head.bias;
      decode(`head "${model}"`, head, j);
    });
    // Only features some head uses get a weight row (L1 leaves most of the hashed space empty): the
    // rows are interleaved by feature, so one feature's weights for every model sit side by side.
    this.rowOf = new Int32Array(FEATURE_DIM).fill(-1);
    let rows = 0;
    for (const d of decoded) for (const index of d.indices) if (this.rowOf[index] === -1) this.rowOf[index] = rows++;
    this.weights = new Float32Array(rows * m);
    for (const { indices, weights, j } of decoded) {
      for (let k = 0; k < indices.length; k++) {
        const base = (this.rowOf[indices[k] as number] as number) * m;
        if (j < 0) for (let jj = 0; jj < m; jj++) this.weights[base + jj] = (this.weights[base + jj] as number) + (weights[k] as number);
        else this.weights[base + j] = (this.weights[base + j] as number) + (weights[k] as number);
      }
    }
    const fallback = json.fallback;
    if (fallback) {
      if (!(fallback.weight >= 0 && fallback.weight <= 1) || !(fallback.evidence >= 0)) throw new RouterInputError("router fallback needs weight in [0, 1] and evidence >= 0");
      this.fallbackIntercepts = new Float64Array(m).fill(Number.NaN);
      this.fallbackSlopes = new Float64Array(m);
      this.models.forEach((model, j) => {
        const r = fallback.response[model];
        if (!r) return;
        this.fallbackIntercepts![j] = r.intercept;
        this.fallbackSlopes![j] = r.slope;
      });
    }
    this.fallbackWeight = fallback?.weight ?? 0;
    this.fallbackEvidence = fallback?.evidence ?? 0;
    this.kindEvidence = { ...(fallback?.kindEvidence ?? {}) };
    this.calibration = this.models.map((model) => {
      const c = json.calibration?.[model];
      if (!c) return undefined;
      if (!Array.isArray(c.x) || !Array.isArray(c.y) || c.x.length !== c.y.length || c.x.length === 0) throw new RouterInputError(`router calibration of "${model}": x and y must be arrays of one length`);
      return { x: Float64Array.from(c.x), y: Float64Array.from(c.y) };
    });
  }

  /** Builds a router from its parsed JSON, checking the format. */
  static fromJSON(value: unknown): RouterModel {
    const json = value as Partial<RouterJSON> | null;
    if (typeof json !== "object" || json === null || json.format !== "switchyard-router/1") {
      throw new RouterInputError('not a router file (expected "format": "switchyard-router/1")');
    }
    if (json.hashBits !== HASH_BITS) throw new RouterInputError(`router uses ${json.hashBits} hash bits; this build expects ${HASH_BITS}`);
    if (!Array.isArray(json.models) || typeof json.heads !== "object" || !json.difficulty || !Array.isArray(json.tiers)) {
      throw new RouterInputError("router file is missing models, heads, difficulty or tiers");
    }
    return new RouterModel(json as RouterJSON);
  }

  /** Whether this router uses neighbour estimates (and so wants a request's focus terms). */
  get usesNeighbours(): boolean {
    return this.knn !== undefined;
  }

  /**
   * Per-model predicted scores for a precomputed feature vector, written into `out` (model order).
   * With a neighbour index, `terms` (a request's focus terms; by default the vector's own, as
   * `featurizeRows` attaches them; null for the heads alone) add the neighbour estimate.
   */
  scoreVector(vector: SparseVector, out: Float64Array = new Float64Array(this.models.length), terms: ArrayLike<number> | null | undefined = (vector as RowFeatures).terms): Float64Array {
    this.rawScores(vector, out, terms);
    return this.finishScores(out, this.lastDifficulty, this.lastEvidence, out, this.lastTaskType);
  }

  /**
   * Stage 1 only: the heads averaged with the neighbour estimate (see {@link scoreVector}), written
   * into `out`; also returns the learned difficulty of those scores and the neighbours' evidence.
   */
  scoreParts(vector: SparseVector, out: Float64Array = new Float64Array(this.models.length), terms: ArrayLike<number> | null | undefined = (vector as RowFeatures).terms): { raw: Float64Array; difficulty: number; evidence: number; taskType: TaskType | undefined } {
    this.rawScores(vector, out, terms);
    return { raw: out, difficulty: this.lastDifficulty, evidence: this.lastEvidence, taskType: this.lastTaskType };
  }

  private rawScores(vector: SparseVector, out: Float64Array, terms: ArrayLike<number> | null | undefined): void {
    const m = this.models.length;
    const w = this.weights;
    const rowOf = this.rowOf;
    out.set(this.biases);
    const { indices, values } = vector;
    for (let k = 0; k < indices.length; k++) {
      const row = rowOf[indices[k] as number] as number;
      if (row < 0) continue;
      const base = row * m;
      const v = values[k] as number;
      for (let j = 0; j < m; j++) out[j] = (out[j] as number) + (w[base + j] as number) * v;
    }
    for (let j = 0; j < m; j++) out[j] = sigmoid(out[j] as number);
    this.lastEvidence = 0;
    this.lastMaxSimilarity = 0;
    if (this.knn && terms) {
      const estimate = this.knn.estimate(terms, undefined, this.knnScratch);
      this.lastMaxSimilarity = estimate.maxSimilarity;
      this.lastEvidence = estimate.weight;
      this.blendScores(out, estimate.scores, estimate.weight);
    }
    this.lastDifficulty = this.difficultyOf(out);
    this.lastTaskType = taskTypeOfVector(vector);
  }

  /**
   * Stage 2, from stage-1 scores (model order): the difficulty fallback, weighted by how little
   * evidence backs the heads (the neighbours' weight, plus the training rows of the request's kind),
   * then each model's calibration map. Without either in the router file, returns the stage-1
   * scores. Writes into `out` (which may be `raw`).
   */
  finishScores(raw: ArrayLike<number>, difficulty: number, evidence: number, out: Float64Array = new Float64Array(this.models.length), taskType?: string): Float64Array {
    const m = this.models.length;
    const intercepts = this.fallbackIntercepts;
    const slopes = this.fallbackSlopes;
    const denominator = this.fallbackEvidence + evidence + (taskType === undefined ? 0 : (this.kindEvidence[taskType] ?? 0));
    const share = intercepts && this.fallbackWeight > 0 ? (denominator > 0 ? (this.fallbackWeight * this.fallbackEvidence) / denominator : this.fallbackWeight) : 0;
    for (let j = 0; j < m; j++) {
      let p = raw[j] as number;
      const a = intercepts?.[j];
      if (share > 0 && a !== undefined && !Number.isNaN(a)) p = sigmoid((1 - share) * logit(p) + share * (a + (slopes![j] as number) * (difficulty - 0.5)));
      const c = this.calibration[j];
      out[j] = c ? interpolate(p, c.x, c.y) : p;
    }
    return out;
  }

  /** Whether this router has a stage 2 (a difficulty fallback or calibration maps). */
  get hasStage2(): boolean {
    return this.fallbackIntercepts !== undefined || this.calibration.some((c) => c !== undefined);
  }

  /**
   * Averages the heads' scores with neighbour estimates in logit space (in place); returns `scores`.
   * The neighbours' share is knnWeight · W / (W + shrink), W being their summed weight (evidence):
   * with no close neighbour the heads speak alone, rather than being pulled towards the mean.
   */
  blendScores(scores: Float64Array, estimates: ArrayLike<number>, evidence: number): Float64Array {
    const shrink = this.knn?.settings.shrink ?? 0;
    const b = evidence > 0 ? (this.knnWeight * evidence) / (evidence + shrink) : 0;
    for (let j = 0; j < scores.length; j++) scores[j] = sigmoid((1 - b) * logit(scores[j] as number) + b * logit(estimates[j] as number));
    return scores;
  }

  /**
   * Difficulty in [0, 1] from per-model predicted scores (model order): the learned part only, the
   * quantile of 1 - mean predicted score among the training prompts.
   */
  difficultyOf(scores: ArrayLike<number>): number {
    const models = this.difficultyModels;
    if (scores.length === 0 || models.length === 0) return 0.5;
    let sum = 0;
    for (let k = 0; k < models.length; k++) sum += scores[models[k] as number] as number;
    return quantileOf(1 - sum / models.length, this.knots);
  }


  /** The (strong, weak) pairs with a pair head, in file order. */
  get pairs(): [string, string][] {
    return [...this.pairHeads.keys()].map((key) => key.split("\u0000") as [string, string]);
  }

  /**
   * A pair head's prediction for a precomputed feature vector, or undefined when the router has no
   * head for that pair (in either order; the reverse order is answered with win = 1 − win).
   * Aliased names are resolved.
   */
  scorePairVector(vector: SparseVector, strong: string, weak: string): PairPrediction | undefined {
    const s = this.aliases[strong] ?? strong;
    const w = this.aliases[weak] ?? weak;
    const direct = this.pairHeads.get(`${s}\u0000${w}`);
    const head = direct ?? this.pairHeads.get(`${w}\u0000${s}`);
    if (!head) return undefined;
    const p = sigmoid(sparseDot(head.win, vector));
    const win = direct ? p : 1 - p;
    const differ = sigmoid(sparseDot(head.differ, vector));
    return { win, differ, gain: differ * (2 * win - 1) };
  }

  /** The pair head's prediction for a conversation (see {@link scorePairVector}); undefined without a head for the pair. */
  predictPair(messages: readonly ChatMessage[], strong: string, weak: string): PairPrediction | undefined {
    if (!this.pairHeads.size) return undefined;
    return this.scorePairVector(extractFeatures(messages, this.featureSet, undefined, this.featureVersion).vector, strong, weak);
  }

  /** Predicts difficulty, task type and each model's expected score for a conversation. */
  predict(messages: readonly ChatMessage[]): RouterPrediction {
    const terms = this.knn ? this.terms : undefined;
    if (terms) terms.length = 0;
    const { vector, summary } = extractFeatures(messages, this.featureSet, terms, this.featureVersion);
    const scores = this.scoreVector(vector, this.scratch, terms);
    const predicted: Record<string, number> = {};
    for (let j = 0; j < this.models.length; j++) predicted[this.models[j] as string] = scores[j] as number;
    const a = learnedWeight(this.knn ? this.lastMaxSimilarity : undefined);
    return {
      difficulty: a * this.lastDifficulty + (1 - a) * priorDifficulty(summary),
      taskType: summary.taskType,
      predicted,
      estimatedInputTokens: summary.estimatedTokens,
    };
  }
}

interface SparseHead {
  bias: number;
  indices: Int32Array;
  weights: Float32Array;
}

function sparseHead(what: string, head: HeadJSON): SparseHead {
  const indices = new Int32Array(fromBase64(head.indices));
  const weights = new Float32Array(fromBase64(head.weights));
  if (indices.length !== weights.length) throw new RouterInputError(`router ${what}: ${indices.length} indices but ${weights.length} weights`);
  for (let k = 0; k < indices.length; k++) {
    const index = indices[k] as number;
    if (index < 0 || index >= FEATURE_DIM || (k > 0 && index <= (indices[k - 1] as number))) throw new RouterInputError(`router ${what}: feature indices must be ascending and in range`);
  }
  return { bias: head.bias, indices, weights };
}

/** Margin of a sparse head (sorted indices) on a sparse vector. */
function sparseDot(head: SparseHead, vector: SparseVector): number {
  let z = head.bias;
  const hi = head.indices;
  const vi = vector.indices;
  // The vector may not be sorted (features straight from extractFeatures): binary-search each entry.
  for (let k = 0; k < vi.length; k++) {
    const target = vi[k] as number;
    let lo = 0;
    let up = hi.length - 1;
    while (lo <= up) {
      const mid = (lo + up) >> 1;
      const x = hi[mid] as number;
      if (x === target) {
        z += (head.weights[mid] as number) * (vector.values[k] as number);
        break;
      }
      if (x < target) lo = mid + 1;
      else up = mid - 1;
    }
  }
  return z;
}

/** Loads a router from a JSON file; errors name the file and the problem. */
export async function loadRouter(path: string | URL): Promise<RouterModel> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new RouterInputError(code === "ENOENT" ? `router file not found: ${String(path)}` : `cannot read router file ${String(path)}: ${(error as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new RouterInputError(`router file ${String(path)} is not valid JSON: ${(error as Error).message}`);
  }
  try {
    return RouterModel.fromJSON(value);
  } catch (error) {
    throw new RouterInputError(`router file ${String(path)}: ${(error as Error).message}`);
  }
}
