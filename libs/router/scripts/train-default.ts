/**
 * Trains the shipped default router on every shared routing file and cross-validates it per source.
 *
 * Writes libs/router/models/{default-router.json, cv-results.json, CV.md, routerbench-curve.svg,
 * mmlu-pgr.svg, gsm8k-pgr.svg}. Data: $SWITCHYARD_ROUTING_DATA, else ../shared/data/routing from the
 * repository root. Deterministic: same data, same files.
 *
 * Cross-validation mirrors how the shipped router is used: for each source file, its rows are split
 * into k grouped folds (near-duplicate questions share a fold); each fold is predicted by a router
 * trained on the other folds plus every row of the other files (never on the fold itself).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { readPrices, readRows, type RoutingRow } from "../src/data.js";
import { trainRouter, featurizeRows, DEFAULT_TRAIN_SETTINGS } from "../src/train.js";
import { crossValidate, type FoldScheme } from "../src/cv.js";
import { defaultPair, multiReport, pairReport, PAIR_RANKINGS, type PairRanking, type RowPredictions } from "../src/report.js";
import { pairSvg, qualityCostSvg } from "../src/svg.js";
import type { MultiMetrics, PairMetrics } from "../src/evaluate.js";

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const repoRoot = resolve(packageDir, "../..");
const dataDir = process.env["SWITCHYARD_ROUTING_DATA"] ?? resolve(repoRoot, "../shared/data/routing");
const outDir = join(packageDir, "models");
const K = Number(process.env["SWITCHYARD_CV_FOLDS"] ?? 5);
const SCHEME: FoldScheme = process.env["SWITCHYARD_CV_SCHEME"] === "plain" ? "plain" : "grouped";
const SOURCES = ["mmlu", "gsm8k", "routerbench"] as const;

function log(message: string): void {
  process.stdout.write(`${message}\n`);
}

function pairSummary(m: PairMetrics): Record<string, number | null> {
  const r = (x: number | undefined): number | null => (x === undefined ? null : Number(x.toFixed(4)));
  return {
    apgr: r(m.apgr),
    cpt50: r(m.cpt50),
    cpt80: r(m.cpt80),
    strongShareAt95: r(m.strongShareAt95),
    callSavingAt95: r(m.callSavingAt95),
    costSavingAt95: r(m.costSavingAt95),
  };
}

function multiSummary(m: MultiMetrics): Record<string, unknown> {
  return {
    rows: m.n,
    best: { model: m.best.model, quality: Number(m.best.quality.toFixed(4)), cost: Number(m.best.cost.toPrecision(4)) },
    matchBestCost: m.matchBest ? Number(m.matchBest.cost.toPrecision(4)) : null,
    matchBestCostRatio: m.matchBestCostRatio === undefined ? null : Number(m.matchBestCostRatio.toFixed(4)),
    matchBestMixedCost: m.matchBestMixedCost === undefined ? null : Number(m.matchBestMixedCost.toPrecision(4)),
    qualityAtBestCost: Number(m.qualityAtBestCost.toFixed(4)),
    qualityAtHalfBestCost: Number(Math.max(...m.curve.filter((p) => p.cost <= m.best.cost / 2).map((p) => p.quality)).toFixed(4)),
    models: m.models.map((p) => ({ model: p.model, quality: Number(p.quality.toFixed(4)), cost: Number(p.cost.toPrecision(4)) })),
    hull: m.hull.map((p) => p.model),
    curve: m.curve.filter((_, i) => i % 4 === 0).map((p) => ({ lambda: p.lambda === Infinity ? "cheapest" : Number(p.lambda.toPrecision(4)), cost: Number(p.cost.toPrecision(4)), quality: Number(p.quality.toFixed(4)) })),
  };
}

const fmt = (x: number | null | undefined, digits = 3): string => (x === null || x === undefined ? "n/a" : x.toFixed(digits));
const pct = (x: number | null | undefined): string => (x === null || x === undefined ? "n/a" : `${(100 * x).toFixed(1)}%`);

const started = performance.now();
const prices = await readPrices(join(dataDir, "prices.json"));
const bySource: Record<string, RoutingRow[]> = {};
for (const source of SOURCES) bySource[source] = await readRows(join(dataDir, `${source}.jsonl`));
const allRows = SOURCES.flatMap((s) => bySource[s] as RoutingRow[]);
log(`data: ${SOURCES.map((s) => `${s} ${(bySource[s] as RoutingRow[]).length}`).join(", ")} rows from ${dataDir}`);

await mkdir(outDir, { recursive: true });
const router = trainRouter(allRows, { prices });
const routerText = JSON.stringify(router) + "\n";
await writeFile(join(outDir, "default-router.json"), routerText);
log(`default router ${router.version}: ${router.models.length} models, ${(routerText.length / 1e6).toFixed(2)} MB (${((performance.now() - started) / 1000).toFixed(0)}s)`);

const vectors = new Map<string, ReturnType<typeof featurizeRows>>();
for (const source of SOURCES) vectors.set(source, featurizeRows(bySource[source] as RoutingRow[]));

const results: Record<string, unknown> = {
  folds: K,
  scheme: SCHEME,
  protocol:
    "per source: k grouped folds (rows with the same normalised final question share a fold); each fold predicted by a router trained on the other folds plus all rows of the other sources",
  settings: DEFAULT_TRAIN_SETTINGS,
  sources: {},
};
const md: string[] = [
  "# Router cross-validation",
  "",
  `${K}-fold cross-validation per source, ${SCHEME} folds (rows whose normalised final question is the same share a fold), deterministic seeds.`,
  "Each fold is predicted by a router trained on the other folds **plus every row of the other sources**, as the shipped router is trained on all files.",
  "Regenerate with `npm run train:default-router` (libs/router/scripts/train-default.ts).",
  "",
  "## Two models: APGR (area under the PGR curve; random = 0.5)",
  "",
  "| source | strong vs weak | random | prompt length (rank) | length-only router | weak-wrong ranking | router (gap) | CPT(50%) | CPT(80%) | strong share @95% | cost saving @95% |",
  "|---|---|---|---|---|---|---|---|---|---|---|",
];
let curveSvgWritten = false;
const multiLines: string[] = [];

for (const source of SOURCES) {
  const rows = bySource[source] as RoutingRow[];
  const otherSources = SOURCES.filter((s) => s !== source);
  const extraRows = otherSources.flatMap((s) => bySource[s] as RoutingRow[]);
  const extraVectors = otherSources.flatMap((s) => vectors.get(s) ?? []);
  const t0 = performance.now();
  const cv = crossValidate(rows, K, { prices, scheme: SCHEME, extraRows, extraVectors, models: router.models });
  const lengthCv = crossValidate(rows, K, { prices, scheme: SCHEME, extraRows, featureSet: "length", models: router.models });
  log(`${source}: cross-validated in ${((performance.now() - t0) / 1000).toFixed(0)}s`);
  const present = router.models.filter((m) => rows.some((row) => row.outcomes[m] !== undefined));
  const pair = defaultPair(rows, present, prices, cv.rates);
  if (!pair) continue;
  const report = (p: RowPredictions, ranking: PairRanking): PairMetrics => pairReport(rows, p, pair.strong, pair.weak, ranking, prices);
  const rankings = Object.fromEntries(PAIR_RANKINGS.map((r) => [r, report(cv, r)])) as Record<PairRanking, PairMetrics>;
  const lengthRouter = report(lengthCv, "gap");
  const gap = rankings.gap;
  const entry: Record<string, unknown> = {
    rows: rows.length,
    strong: pair.strong,
    weak: pair.weak,
    strongQuality: Number(gap.strongQuality.toFixed(4)),
    weakQuality: Number(gap.weakQuality.toFixed(4)),
    router: pairSummary(gap),
    baselines: {
      random: pairSummary(rankings.random),
      promptLengthRank: pairSummary(rankings.length),
      lengthOnlyRouter: pairSummary(lengthRouter),
      weakWrongRanking: pairSummary(rankings["weak-wrong"]),
      difficultyRanking: pairSummary(rankings.difficulty),
    },
  };
  md.push(
    `| ${source} (${rows.length}) | ${pair.strong} vs ${pair.weak} | ${fmt(rankings.random.apgr)} | ${fmt(rankings.length.apgr)} | ${fmt(lengthRouter.apgr)} | ${fmt(rankings["weak-wrong"].apgr)} | **${fmt(gap.apgr)}** | ${pct(gap.cpt50)} | ${pct(gap.cpt80)} | ${pct(gap.strongShareAt95)} | ${pct(gap.costSavingAt95)} |`,
  );
  if (source !== "routerbench") {
    await writeFile(join(outDir, `${source}-pgr.svg`), pairSvg([{ name: "router", curve: gap.curve }, { name: "prompt length", curve: rankings.length.curve }], `${source}: ${pair.strong} vs ${pair.weak} (${K}-fold CV)`));
  }
  if (present.length > 2) {
    const multi = multiReport(rows, cv, prices, present).metrics;
    const lengthMulti = multiReport(rows, lengthCv, prices, present).metrics;
    if (multi && lengthMulti) {
      entry["multi"] = multiSummary(multi);
      entry["multiLengthOnly"] = multiSummary(lengthMulti);
      if (!curveSvgWritten) {
        await writeFile(join(outDir, `${source}-curve.svg`), qualityCostSvg(multi, `${source}: router quality vs cost (${K}-fold CV, ${multi.n} prompts)`));
        curveSvgWritten = true;
      }
      const halfBest = (m: MultiMetrics): number => Math.max(...m.curve.filter((p) => p.cost <= m.best.cost / 2).map((p) => p.quality));
      multiLines.push(
        `| ${source} (${multi.n}) | ${multi.best.model}: ${fmt(multi.best.quality)} at $${multi.best.cost.toExponential(2)} | ${fmt(lengthMulti.qualityAtBestCost)} / ${fmt(halfBest(lengthMulti))} | ${fmt(multi.qualityAtBestCost)} / ${fmt(halfBest(multi))} | ${multi.matchBest ? `$${multi.matchBest.cost.toExponential(2)} (${pct(multi.matchBestCostRatio)})` : "not reached"} | ${multi.hull.map((h) => h.model).join(" → ")} |`,
      );
      const table = multi.models
        .slice()
        .sort((a, b) => a.cost - b.cost)
        .map((m) => {
          const routerQ = Math.max(...multi.curve.filter((p) => p.cost <= m.cost + 1e-15).map((p) => p.quality));
          return `| ${m.model} | ${fmt(m.quality)} | $${m.cost.toExponential(2)} | ${Number.isFinite(routerQ) ? fmt(routerQ) : "n/a"} |`;
        });
      multiLines.push("", `Every single model on ${source} against the router at no more than its cost:`, "", "| model | quality | mean cost | router quality at ≤ that cost |", "|---|---|---|---|", ...table, "");
    }
  }
  (results["sources"] as Record<string, unknown>)[source] = entry;
}

md.push(
  "",
  "\"router (gap)\" ranks prompts by predicted strong score minus predicted weak score; \"weak-wrong\" by 1 - predicted weak score; \"prompt length (rank)\" sends the longest prompts to the strong model; the \"length-only router\" is this trainer restricted to length features.",
  "",
  "## Many models: quality / cost",
  "",
  "| source | best single model | length-only router: quality at its cost / at half | router: quality at its cost / at half | router cost matching its quality | hull (zero router) |",
  "|---|---|---|---|---|---|",
  ...multiLines,
);
await writeFile(join(outDir, "cv-results.json"), JSON.stringify(results, null, 2) + "\n");
await writeFile(join(outDir, "CV.md"), md.join("\n") + "\n");
log(md.join("\n"));
log(`done in ${((performance.now() - started) / 1000).toFixed(0)}s`);
