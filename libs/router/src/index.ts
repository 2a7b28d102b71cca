/** @switchyard/router: request features, per-model quality prediction, training, scoring and evaluation. */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export { extractFeatures, normalisePrompt, FEATURE_DIM, HASH_BITS, TASK_TYPES, LANGUAGES, DENSE_FEATURE_NAMES, CHAT_FEATURE_NAMES, LATEST_FEATURE_VERSION } from "./features.js";
export type { ChatMessage, FeatureSet, FeatureSummary, FeatureVersion, Language, PromptFeatures, SparseVector, TaskType } from "./features.js";
export { RouterModel, loadRouter, tierFor, quantileOf, priorDifficulty, learnedWeight, interpolate } from "./model.js";
export { buildKnn, KnnIndex, DEFAULT_KNN_SETTINGS } from "./knn.js";
export type { KnnJSON, KnnSettings, KnnEstimate, RowFeatures } from "./knn.js";
export type { RouterJSON, RouterPrediction, Tier, HeadJSON, PairHeadJSON, PairPrediction, FallbackJSON, CalibrationJSON } from "./model.js";
export { trainRouter, featurizeRows, DEFAULT_TRAIN_SETTINGS } from "./train.js";
export type { TrainOptions, TrainSettings } from "./train.js";
export { parseRows, readRows, readPrices, scoreOf, modelsOf, applyAliases, parseAliases, RouterInputError } from "./data.js";
export type { RoutingRow, Outcome, PriceTable, ModelPrice } from "./data.js";
export { rowCost, fitCostRates, estimateTokens, DEFAULT_OUTPUT_TOKENS } from "./cost.js";
export type { CostRate, CostRates } from "./cost.js";
export { reliability, pairCurve, pairMetrics, multiMetrics, singleModelPoints, convexHull, chooseModel, lambdaGrid, qualityAtCost, costAtQuality } from "./evaluate.js";
export type { PairItem, PairPoint, PairMetrics, MultiItem, MultiMetrics, ModelPoint, RouterPoint, CostQualityPoint, Reliability, ReliabilityBin } from "./evaluate.js";
export { crossValidate, assignFolds, predictRows, groupKey } from "./cv.js";
export { fitStage2, applyStage2, crossFitStage2, fitIsotonic, fitLogistic1, fallbackShare, stage2Score, sourceBalance } from "./stage2.js";
export type { Stage1Row, Stage2, Stage2Options, FallbackGate } from "./stage2.js";
export type { FoldScheme } from "./cv.js";
export { pairReport, multiReport, calibrationReport, defaultPair, modelAverages, pairKey, PAIR_RANKINGS, PAIR_HEAD_RANKINGS } from "./report.js";
export type { PairRanking, RowPredictions } from "./report.js";
export { renderChart, qualityCostSvg, pairSvg } from "./svg.js";
export type { Chart, Series } from "./svg.js";
export { trainCommand, scoreCommand, evalCommand } from "./commands.js";

/**
 * Path of the shipped default router (`libs/router/models/default-router.json`), found by walking up
 * from this module to the package folder, so it works from `src/` (tests, tsx) and `dist/src/` alike.
 */
export function defaultRouterPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, "package.json"))) return join(dir, "models", "default-router.json");
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return fileURLToPath(new URL("../../models/default-router.json", import.meta.url));
}
