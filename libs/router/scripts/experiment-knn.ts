/** Development aid: kNN-only routing under the grouped CV protocol of train-default (JSON knn settings in argv[2]). */
import { readRows, readPrices, type RoutingRow } from "../src/data.js";
import { assignFolds } from "../src/cv.js";
import { extractFeatures } from "../src/features.js";
import { buildKnn, KnnIndex, DEFAULT_KNN_SETTINGS } from "../src/knn.js";
import { modelsOf, scoreOf } from "../src/data.js";
import { defaultPair, pairReport, multiReport } from "../src/report.js";
import { fitCostRates } from "../src/cost.js";

const dir = process.env["SWITCHYARD_ROUTING_DATA"] ?? "/work/shared/data/routing";
const settings = { ...DEFAULT_KNN_SETTINGS, ...(JSON.parse(process.argv[2] ?? "{}") as object) };
const prices = await readPrices(`${dir}/prices.json`);
const SOURCES = ["mmlu", "gsm8k", "routerbench"];
const all: Record<string, RoutingRow[]> = {};
for (const s of SOURCES) all[s] = await readRows(`${dir}/${s}.jsonl`);
const models = modelsOf(SOURCES.flatMap((s) => all[s]!));
const termsOf = (row: RoutingRow): number[] => {
  const t: number[] = [];
  extractFeatures(row.messages, "full", t);
  return t;
};
const terms: Record<string, number[][]> = {};
for (const s of SOURCES) terms[s] = all[s]!.map(termsOf);
for (const source of SOURCES) {
  const rows = all[source]!;
  const folds = assignFolds(rows, 5, 2024, "grouped");
  const predicted: Float64Array[] = new Array(rows.length);
  const others = SOURCES.filter((s) => s !== source);
  const t0 = performance.now();
  let queries = 0;
  let qTime = 0;
  for (let f = 0; f < 5; f++) {
    const train = rows.map((_, i) => i).filter((i) => folds[i] !== f);
    const docRows = [...train.map((i) => rows[i]!), ...others.flatMap((s) => all[s]!)];
    const docTerms = [...train.map((i) => terms[source]![i]!), ...others.flatMap((s) => terms[s]!)];
    const index = new KnnIndex(buildKnn(docTerms, docRows.map((r) => models.map((m) => scoreOf(r, m))), models.length, settings), models.length);
    rows.forEach((_, i) => {
      if (folds[i] !== f) return;
      const q0 = performance.now();
      predicted[i] = Float64Array.from(index.estimate(terms[source]![i]!).scores);
      qTime += performance.now() - q0;
      queries++;
    });
  }
  const cv = { models, predicted, difficulty: predicted.map((p) => 1 - p.reduce((a, b) => a + b, 0) / p.length), rates: fitCostRates(rows, models, prices) };
  const present = models.filter((m) => rows.some((r) => r.outcomes[m] !== undefined));
  const pair = defaultPair(rows, present, prices, cv.rates)!;
  const gap = pairReport(rows, cv, pair.strong, pair.weak, "gap", prices).apgr;
  const ww = pairReport(rows, cv, pair.strong, pair.weak, "weak-wrong", prices).apgr;
  let extra = "";
  if (present.length > 2) {
    const { metrics } = multiReport(rows, cv, prices, present);
    if (metrics) extra = ` qAtBest=${metrics.qualityAtBestCost.toFixed(4)} qAtHalf=${Math.max(...metrics.curve.filter((p) => p.cost <= metrics.best.cost / 2).map((p) => p.quality)).toFixed(4)} match=${metrics.matchBestCostRatio?.toFixed(3)}`;
  }
  console.log(`${source} knn gap=${gap.toFixed(4)} weak-wrong=${ww.toFixed(4)}${extra} query=${((qTime / queries) * 1000).toFixed(1)}us (${((performance.now() - t0) / 1000).toFixed(1)}s)`);
}
