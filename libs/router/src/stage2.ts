/**
 * Stage 2 of the router, fitted on out-of-fold predictions of stage 1 (heads and neighbours):
 *
 * - the difficulty fallback: per model, a logistic response of its score to the request's learned
 *   difficulty (`logit = intercept + slope · (difficulty − 0.5)`), leaned on in proportion to how
 *   little neighbour evidence backs the heads (`share = weight · c / (c + W)`). The heads know
 *   which benchmark subjects are hard; the difficulty knows that a harder request widens the gap
 *   between strong and weak models, which is what carries over to prompts unlike the training ones;
 * - calibration: per model, an isotonic map from the stage-2 score to the observed mean score, so a
 *   predicted 0.8 means about 0.8.
 *
 * Everything is fitted with every source weighted alike (a 300-row chat file counts as much as
 * 9,000 MMLU rows), and deterministically.
 */
import type { CalibrationJSON, FallbackJSON } from "./model.js";
import { interpolate } from "./model.js";

/** One row's stage-1 out-of-fold prediction and its outcomes (model order). */
export interface Stage1Row {
  source: string;
  /** Cross-validation fold of the row (for cross-fitting stage 2). */
  fold: number;
  raw: ArrayLike<number>;
  difficulty: number;
  evidence: number;
  /** Task type the features detected (the "kind" of request), where known. */
  taskType?: string | undefined;
  /** Observed score per model, undefined where the model has no outcome. */
  scores: readonly (number | undefined)[];
}

/**
 * The fallback's gate: its share of the average is weight · evidence / (evidence + W + K), W the
 * neighbours' evidence, K the training rows of the request's kind / 1000 (when `kinds` is set).
 */
export interface FallbackGate {
  weight: number;
  evidence: number;
  /** Count the kind of request's training rows as evidence (default false). */
  kinds?: boolean;
}

/** A fitted stage 2, as stored in the router file. */
export interface Stage2 {
  fallback?: FallbackJSON;
  calibration?: Record<string, CalibrationJSON>;
}

function logit(p: number): number {
  const q = Math.min(1 - 1e-6, Math.max(1e-6, p));
  return Math.log(q / (1 - q));
}

function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

/** The fallback's share for a row with neighbour evidence W (plus its kind's evidence, when given). */
export function fallbackShare(gate: Pick<FallbackGate, "weight" | "evidence">, evidence: number, kindEvidence = 0): number {
  if (gate.weight <= 0) return 0;
  const denominator = gate.evidence + evidence + kindEvidence;
  return denominator > 0 ? (gate.weight * gate.evidence) / denominator : gate.weight;
}

/** Row weights giving every source the same total weight. */
export function sourceBalance(rows: readonly Stage1Row[]): number[] {
  const counts = new Map<string, number>();
  for (const row of rows) counts.set(row.source, (counts.get(row.source) ?? 0) + 1);
  const sources = counts.size;
  return rows.map((row) => rows.length / sources / (counts.get(row.source) as number));
}

/**
 * Weighted logistic regression of a score in [0, 1] on one input (Newton's method, a little ridge
 * on the slope): returns intercept and slope.
 */
export function fitLogistic1(x: readonly number[], y: readonly number[], w: readonly number[], ridge = 1e-3): { intercept: number; slope: number } {
  let a = 0;
  let b = 0;
  let sw = 0;
  let sy = 0;
  for (let i = 0; i < x.length; i++) {
    sw += w[i] as number;
    sy += (w[i] as number) * (y[i] as number);
  }
  if (sw <= 0) return { intercept: 0, slope: 0 };
  a = logit(sy / sw);
  for (let iter = 0; iter < 50; iter++) {
    let ga = 0;
    let gb = 0;
    let haa = 0;
    let hab = 0;
    let hbb = ridge * sw;
    for (let i = 0; i < x.length; i++) {
      const xi = x[i] as number;
      const wi = w[i] as number;
      const p = sigmoid(a + b * xi);
      const r = wi * (p - (y[i] as number));
      ga += r;
      gb += r * xi;
      const v = wi * p * (1 - p);
      haa += v;
      hab += v * xi;
      hbb += v * xi * xi;
    }
    gb += ridge * sw * b;
    const det = haa * hbb - hab * hab;
    if (!(det > 0)) break;
    const da = (hbb * ga - hab * gb) / det;
    const db = (haa * gb - hab * ga) / det;
    a -= da;
    b -= db;
    if (Math.abs(da) + Math.abs(db) < 1e-9) break;
  }
  return { intercept: a, slope: b };
}

/**
 * Isotonic regression (pool adjacent violators) of y on p with weights, returned as knots for
 * piecewise-linear interpolation: each pooled block becomes a knot at its weighted mean p; blocks are
 * first merged until each holds at least `minWeight` (so sparse ends do not make steps of one row),
 * and the knots are thinned to at most `maxKnots`.
 */
export function fitIsotonic(p: readonly number[], y: readonly number[], w: readonly number[], minWeight = 20, maxKnots = 40): CalibrationJSON {
  const order = p.map((_, i) => i).sort((a, b) => (p[a] as number) - (p[b] as number) || a - b);
  // Blocks: weighted sums of p and y, and weight.
  const bp: number[] = [];
  const by: number[] = [];
  const bw: number[] = [];
  for (const i of order) {
    bp.push((p[i] as number) * (w[i] as number));
    by.push((y[i] as number) * (w[i] as number));
    bw.push(w[i] as number);
    while (bw.length >= 2) {
      const k = bw.length - 1;
      const violates = (by[k - 1] as number) / (bw[k - 1] as number) >= (by[k] as number) / (bw[k] as number);
      const small = (bw[k - 1] as number) < minWeight;
      if (!violates && !small) break;
      bp[k - 1] = (bp[k - 1] as number) + (bp[k] as number);
      by[k - 1] = (by[k - 1] as number) + (by[k] as number);
      bw[k - 1] = (bw[k - 1] as number) + (bw[k] as number);
      bp.pop();
      by.pop();
      bw.pop();
    }
  }
  // A light last block is merged into its neighbour (then monotonicity is restored again).
  while (bw.length >= 2 && ((bw[bw.length - 1] as number) < minWeight || (by[bw.length - 2] as number) / (bw[bw.length - 2] as number) >= (by[bw.length - 1] as number) / (bw[bw.length - 1] as number))) {
    const k = bw.length - 1;
    bp[k - 1] = (bp[k - 1] as number) + (bp[k] as number);
    by[k - 1] = (by[k - 1] as number) + (by[k] as number);
    bw[k - 1] = (bw[k - 1] as number) + (bw[k] as number);
    bp.pop();
    by.pop();
    bw.pop();
  }
  let x = bp.map((s, k) => s / (bw[k] as number));
  let v = by.map((s, k) => s / (bw[k] as number));
  if (x.length > maxKnots) {
    const keep = Array.from({ length: maxKnots }, (_, i) => Math.round((i * (x.length - 1)) / (maxKnots - 1)));
    x = keep.map((k) => x[k] as number);
    v = keep.map((k) => v[k] as number);
  }
  return { x: x.map((n) => Number(n.toPrecision(6))), y: v.map((n) => Number(n.toPrecision(6))) };
}

/** Stage-2 score of one model from its stage-1 score (see {@link Stage2}). */
export function stage2Score(raw: number, difficulty: number, share: number, response: { intercept: number; slope: number } | undefined, calibration: CalibrationJSON | undefined): number {
  let p = raw;
  if (share > 0 && response) p = sigmoid((1 - share) * logit(p) + share * (response.intercept + response.slope * (difficulty - 0.5)));
  return calibration ? interpolate(p, calibration.x, calibration.y) : p;
}

/** Options of {@link fitStage2}. */
export interface Stage2Options {
  gate: FallbackGate;
  /**
   * Calibration maps: "platt" (default: a logistic map of the score's logit, smooth, so it reorders
   * little), "isotonic" (pool adjacent violators) or "none".
   */
  calibration?: "platt" | "isotonic" | "none";
}

/** A Platt map (logit → logistic), sampled as knots for piecewise-linear interpolation. */
export function fitPlatt(p: readonly number[], y: readonly number[], w: readonly number[]): CalibrationJSON {
  const fit = fitLogistic1(p.map(logit), y, w);
  const x: number[] = [];
  const v: number[] = [];
  for (let t = -8; t <= 8 + 1e-9; t += 0.25) {
    x.push(Number(sigmoid(t).toPrecision(6)));
    v.push(Number(sigmoid(fit.intercept + fit.slope * t).toPrecision(6)));
  }
  return { x, y: v };
}

/** Fits stage 2 on stage-1 out-of-fold rows (every source weighted alike). */
export function fitStage2(rows: readonly Stage1Row[], models: readonly string[], options: Stage2Options): Stage2 {
  const weights = sourceBalance(rows);
  const response: FallbackJSON["response"] = {};
  const useFallback = options.gate.weight > 0;
  let kindEvidence: Record<string, number> | undefined;
  if (options.gate.kinds) {
    const counts: Record<string, number> = {};
    for (const row of rows) if (row.taskType !== undefined) counts[row.taskType] = (counts[row.taskType] ?? 0) + 1;
    kindEvidence = Object.fromEntries(Object.keys(counts).sort().map((k) => [k, Number(((counts[k] as number) / 1000).toPrecision(6))]));
  }
  const kindOf = (row: Stage1Row): number => (kindEvidence && row.taskType !== undefined ? (kindEvidence[row.taskType] ?? 0) : 0);
  models.forEach((model, j) => {
    const x: number[] = [];
    const y: number[] = [];
    const w: number[] = [];
    rows.forEach((row, r) => {
      const s = row.scores[j];
      if (s === undefined) return;
      x.push(row.difficulty - 0.5);
      y.push(s);
      w.push(weights[r] as number);
    });
    if (x.length < 20) return;
    const fit = fitLogistic1(x, y, w);
    response[model] = { intercept: Number(fit.intercept.toPrecision(8)), slope: Number(fit.slope.toPrecision(8)) };
  });
  const fallback: FallbackJSON | undefined = useFallback
    ? {
        definition: "logit of a model's score = intercept + slope · (difficulty − 0.5); its share of the logit average with the heads = weight · evidence / (evidence + W), W = the neighbours' summed weight",
        weight: options.gate.weight,
        evidence: options.gate.evidence,
        ...(kindEvidence ? { kindEvidence } : {}),
        response,
      }
    : undefined;
  const method = options.calibration ?? "platt";
  if (method === "none") return fallback ? { fallback } : {};
  const calibration: Record<string, CalibrationJSON> = {};
  models.forEach((model, j) => {
    const p: number[] = [];
    const y: number[] = [];
    const w: number[] = [];
    rows.forEach((row, r) => {
      const s = row.scores[j];
      if (s === undefined) return;
      const share = useFallback ? fallbackShare(options.gate, row.evidence, kindOf(row)) : 0;
      p.push(stage2Score(row.raw[j] as number, row.difficulty, share, response[model], undefined));
      y.push(s);
      w.push(weights[r] as number);
    });
    if (p.length < 20) return;
    // Weights are relative to a mean of 1 per row, so minWeight is about a number of rows.
    calibration[model] = method === "isotonic" ? fitIsotonic(p, y, w, 20) : fitPlatt(p, y, w);
  });
  return { ...(fallback ? { fallback } : {}), calibration };
}

/** Applies a fitted stage 2 to one stage-1 row (model order). */
export function applyStage2(row: Pick<Stage1Row, "raw" | "difficulty" | "evidence" | "taskType">, models: readonly string[], stage2: Stage2): Float64Array {
  const kind = row.taskType !== undefined ? (stage2.fallback?.kindEvidence?.[row.taskType] ?? 0) : 0;
  const share = stage2.fallback ? fallbackShare(stage2.fallback, row.evidence, kind) : 0;
  return Float64Array.from(models, (model, j) => stage2Score(row.raw[j] as number, row.difficulty, share, stage2.fallback?.response[model], stage2.calibration?.[model]));
}

/**
 * Cross-fitted stage 2: each fold's rows get a stage 2 fitted on every other fold's rows (all
 * sources), so no row's stage-2 score was fitted on its own outcome. Returns final scores per row.
 */
export function crossFitStage2(rows: readonly Stage1Row[], models: readonly string[], options: Stage2Options): Float64Array[] {
  const folds = [...new Set(rows.map((r) => r.fold))].sort((a, b) => a - b);
  const out: Float64Array[] = new Array(rows.length);
  for (const fold of folds) {
    const stage2 = fitStage2(rows.filter((r) => r.fold !== fold), models, options);
    rows.forEach((row, i) => {
      if (row.fold === fold) out[i] = applyStage2(row, models, stage2);
    });
  }
  return out;
}
