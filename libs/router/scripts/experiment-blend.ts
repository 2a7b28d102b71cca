/** Development aid: out-of-fold blends of the logistic router and kNN estimates (grouped CV, other sources as extra training rows). */
import { readRows, readPrices, modelsOf, scoreOf, type RoutingRow } from "../src/data.js";
import { assignFolds, crossValidate } from "../src/cv.js";
import { buildKnn, KnnIndex, DEFAULT_KNN_SETTINGS } from "../src/knn.js";
import { featurizeRows } from "../src/train.js";
import { defaultPair, pairReport, multiReport, type RowPredictions } from "../src/report.js";

const dir = process.env["SWITCHYARD_ROUTING_DATA"] ?? "/work/shared/data/routing";
const options = JSON.parse(process.argv[2] ?? "{}") as Record<string, unknown>;
const files = (process.argv[3] ?? "mmlu,gsm8k,routerbench").split(",");
const prices = await readPrices(`${dir}/prices.json`);
const SOURCES = ["mmlu", "gsm8k", "routerbench"];
const all: Record<string, RoutingRow[]> = {};
for (const s of SOURCES) all[s] = await readRows(`${dir}/${s}.jsonl`);
const models = modelsOf(SOURCES.flatMap((s) => all[s]!));
const feats = Object.fromEntries(SOURCES.map((s) => [s, featurizeRows(all[s]!)]));
const logit = (p: number): number => Math.log(Math.max(1e-4, Math.min(1 - 1e-4, p)) / (1 - Math.max(1e-4, Math.min(1 - 1e-4, p))));
for (const source of files) {
  const rows = all[source]!;
  const others = SOURCES.filter((s) => s !== source);
  const lr = crossValidate(rows, 5, { ...options, prices, scheme: "grouped", extraRows: others.flatMap((s) => all[s]!), extraVectors: others.flatMap((s) => feats[s]!), models });
  const folds = assignFolds(rows, 5, 2024, "grouped");
  const knn: Float64Array[] = new Array(rows.length);
  const evidence: number[] = new Array(rows.length).fill(0);
  for (let f = 0; f < 5; f++) {
    const train = rows.map((_, i) => i).filter((i) => folds[i] !== f);
    const docRows = [...train.map((i) => rows[i]!), ...others.flatMap((s) => all[s]!)];
    const docTerms = [...train.map((i) => feats[source]![i]!.terms!), ...others.flatMap((s) => feats[s]!.map((v) => v.terms!))];
    const index = new KnnIndex(buildKnn(docTerms, docRows.map((r) => models.map((m) => scoreOf(r, m))), models.length, DEFAULT_KNN_SETTINGS), models.length);
    rows.forEach((_, i) => {
      if (folds[i] !== f) return;
      const e = index.estimate(feats[source]![i]!.terms!);
      knn[i] = Float64Array.from(e.scores);
      evidence[i] = e.weight;
    });
  }
  const present = models.filter((m) => rows.some((r) => r.outcomes[m] !== undefined));
  const pair = defaultPair(rows, present, prices, lr.rates)!;
  const out: string[] = [];
  for (const beta0 of [0.5, 1]) {
    const predicted = lr.predicted.map((p, i) => {
      const beta = (beta0 * evidence[i]!) / (evidence[i]! + DEFAULT_KNN_SETTINGS.shrink);
      return Float64Array.from(p, (x, j) => 1 / (1 + Math.exp(-((1 - beta) * logit(x) + beta * logit(knn[i]![j]!)))));
    });
    const beta = `gated${beta0}`;
    const cv: RowPredictions = { ...lr, predicted };
    let s = `b=${beta} gap=${pairReport(rows, cv, pair.strong, pair.weak, "gap", prices).apgr.toFixed(4)}`;
    if (present.length > 2) {
      const { metrics } = multiReport(rows, cv, prices, present);
      if (metrics) s += ` qBest=${metrics.qualityAtBestCost.toFixed(4)} qHalf=${Math.max(...metrics.curve.filter((p) => p.cost <= metrics.best.cost / 2).map((p) => p.quality)).toFixed(4)}`;
    }
    out.push(s);
  }
  console.log(source, JSON.stringify(options), out.join(" | "));
}
