/**
 * Trains the shipped default router on every shared routing file (benchmarks and chat) and
 * cross-validates it per source and leaving each source out.
 *
 * Writes libs/router/models/{default-router.json, cv-results.json, CV.md, routerbench-curve.svg,
 * arena_bench-curve.svg, mmlu-pgr.svg, gsm8k-pgr.svg, arena_bench-pgr.svg}. Data:
 * $SWITCHYARD_ROUTING_DATA, else ../shared/data/routing from the repository root. Deterministic:
 * same data, same files.
 *
 * 1. Stage 1 (heads and neighbours), per source: k grouped folds (near-duplicate questions share a
 *    fold); each fold predicted by a router trained on the other folds plus every row of the other
 *    files. These out-of-fold predictions are the only thing stage 2 is fitted on.
 * 2. Stage 2 (difficulty fallback and per-model calibration): its gate is chosen on the out-of-fold
 *    rows, and every reported figure is cross-fitted (each fold's stage 2 fitted on the other folds).
 * 3. Leave one source out: a router trained on the other sources predicts the one left out, with a
 *    stage 2 fitted on the other sources' out-of-fold rows (the closest stand-in for traffic unlike
 *    every training file, such as the held-back chat data).
 * 4. The shipped router: stage 1 on every row, stage 2 fitted on every out-of-fold row.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { applyAliases, readPrices, readRows, scoreOf, type PriceTable, type RoutingRow } from "../src/data.js";
import { trainRouter, featurizeRows, DEFAULT_TRAIN_SETTINGS, type TrainOptions } from "../src/train.js";
import { crossValidate, type FoldScheme } from "../src/cv.js";
import { RouterModel } from "../src/model.js";
import { calibrationReport, multiReport, pairReport, type PairRanking, type RowPredictions } from "../src/report.js";
import { pairSvg, qualityCostSvg } from "../src/svg.js";
import { qualityAtCost, type MultiMetrics, type PairMetrics, type Reliability } from "../src/evaluate.js";
import { applyStage2, crossFitStage2, fitStage2, type FallbackGate, type Stage1Row, type Stage2Options } from "../src/stage2.js";
import { LATEST_FEATURE_VERSION } from "../src/features.js";

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const repoRoot = resolve(packageDir, "../..");
const dataDir = process.env["SWITCHYARD_ROUTING_DATA"] ?? resolve(repoRoot, "../shared/data/routing");
const outDir = join(packageDir, "models");
const K = Number(process.env["SWITCHYARD_CV_FOLDS"] ?? 5);
const SCHEME: FoldScheme = process.env["SWITCHYARD_CV_SCHEME"] === "plain" ? "plain" : "grouped";
const SOURCES = ["mmlu", "gsm8k", "routerbench", "arena_bench"] as const;
type Source = (typeof SOURCES)[number];
/**
 * The one documented alias (data README): RouterBench's Mixtral rows train the RouteLLM Mixtral head
 * (arena_bench uses the RouteLLM name already). Rows are aliased at load.
 */
const ALIASES: Record<string, string> = { "mistralai/mixtral-8x7b-chat": "mistralai/Mixtral-8x7B-Instruct-v0.1" };
const STRONG = "gpt-4-1106-preview";
const MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1";
/** The pair each source is judged on (RouterBench: the cheapest model, as before). */
const PAIRS: Record<Source, [string, string]> = {
  mmlu: [STRONG, MIXTRAL],
  gsm8k: [STRONG, MIXTRAL],
  routerbench: [STRONG, "mistralai/mistral-7b-chat"],
  arena_bench: [STRONG, MIXTRAL],
};
/** Stage-2 gates tried under cross-validation (weight 0: no fallback). */
const GATES: FallbackGate[] = [{ weight: 0, evidence: 0 }, ...[0.25, 0.5, 0.75, 1].flatMap((weight) => [0.03, 0.1, 0.3, 1, 3].map((evidence) => ({ weight, evidence, kinds: true })))];
/** Gates whose mean APGR is this close to the best count as equal (far below the folds' noise). */
const GATE_TOLERANCE = 0.002;
const CALIBRATION: Stage2Options["calibration"] = "platt";
/** The difficulty averages the heads with at least this many training rows (the 11 benchmark-trained models, not the chat-only ones). */
const DIFFICULTY_MIN_ROWS = 1000;

function log(message: string): void {
  process.stdout.write(`${message}\n`);
}

const r4 = (x: number | undefined | null): number | null => (x === undefined || x === null || !Number.isFinite(x) ? null : Number(x.toFixed(4)));
const fmt = (x: number | null | undefined, digits = 3): string => (x === null || x === undefined || !Number.isFinite(x) ? "n/a" : x.toFixed(digits));
const pct = (x: number | null | undefined): string => (x === null || x === undefined ? "n/a" : `${(100 * x).toFixed(1)}%`);
const usd = (x: number | undefined): string => (x === undefined ? "n/a" : `$${x.toExponential(2)}`);

function pairSummary(m: PairMetrics): Record<string, number | null> {
  return { apgr: r4(m.apgr), cpt50: r4(m.cpt50), cpt80: r4(m.cpt80), strongShareAt95: r4(m.strongShareAt95), callSavingAt95: r4(m.callSavingAt95), costSavingAt95: r4(m.costSavingAt95) };
}

const halfBest = (m: MultiMetrics): number => Math.max(...m.curve.filter((p) => p.cost <= m.best.cost / 2).map((p) => p.quality));

function multiSummary(m: MultiMetrics): Record<string, unknown> {
  return {
    rows: m.n,
    best: { model: m.best.model, quality: r4(m.best.quality), cost: Number(m.best.cost.toPrecision(4)) },
    matchBestCost: m.matchBest ? Number(m.matchBest.cost.toPrecision(4)) : null,
    matchBestCostRatio: r4(m.matchBestCostRatio),
    matchBestMixedCost: m.matchBestMixedCost === undefined ? null : Number(m.matchBestMixedCost.toPrecision(4)),
    qualityAtBestCost: r4(m.qualityAtBestCost),
    qualityAtHalfBestCost: r4(halfBest(m)),
    hullQualityAtHalfBestCost: r4(qualityAtCost(m.hull, m.best.cost / 2)),
    models: m.models.map((p) => ({ model: p.model, quality: r4(p.quality), cost: Number(p.cost.toPrecision(4)) })),
    hull: m.hull.map((p) => p.model),
    curve: m.curve.filter((_, i) => i % 4 === 0).map((p) => ({ lambda: p.lambda === Infinity ? "cheapest" : Number(p.lambda.toPrecision(4)), cost: Number(p.cost.toPrecision(4)), quality: r4(p.quality) })),
  };
}

function reliabilitySummary(r: Reliability): Record<string, unknown> {
  return { n: r.n, ece: r4(r.ece), bins: r.bins.filter((b) => b.n > 0).map((b) => ({ bin: `${b.lo.toFixed(1)}-${b.hi.toFixed(1)}`, n: b.n, predicted: r4(b.predicted), observed: r4(b.observed) })) };
}

const started = performance.now();
const sharedPrices = await readPrices(join(dataDir, "prices.json"));
// Chat models' list prices (models/chat-prices.json) cost the arena_bench rows; the shared table wins where both name a model.
const prices: PriceTable = { ...(await readPrices(join(outDir, "chat-prices.json"))), ...sharedPrices };
const bySource = {} as Record<Source, RoutingRow[]>;
for (const source of SOURCES) bySource[source] = applyAliases(await readRows(join(dataDir, `${source}.jsonl`)), ALIASES);
const allRows = SOURCES.flatMap((s) => bySource[s]);
const models = [...new Set(allRows.flatMap((row) => Object.keys(row.outcomes).filter((m) => scoreOf(row, m) !== undefined)))];
log(`data: ${SOURCES.map((s) => `${s} ${bySource[s].length}`).join(", ")} rows, ${models.length} models, from ${dataDir}`);
const TRAIN: TrainOptions = { prices, aliases: ALIASES, featureVersion: LATEST_FEATURE_VERSION, models, difficultyMinRows: DIFFICULTY_MIN_ROWS };

const vectors = {} as Record<Source, ReturnType<typeof featurizeRows>>;
for (const source of SOURCES) vectors[source] = featurizeRows(bySource[source], "full", LATEST_FEATURE_VERSION);

// 1. Stage 1 out of fold, per source.
const cv = {} as Record<Source, RowPredictions & { folds: number[] }>;
const lengthCv = {} as Record<Source, RowPredictions>;
const stage1: Stage1Row[] = [];
const stage1Index = {} as Record<Source, number>;
for (const source of SOURCES) {
  const t0 = performance.now();
  const others = SOURCES.filter((s) => s !== source);
  const extraRows = others.flatMap((s) => bySource[s]);
  cv[source] = crossValidate(bySource[source], K, { ...TRAIN, scheme: SCHEME, extraRows, extraVectors: others.flatMap((s) => vectors[s]) });
  lengthCv[source] = crossValidate(bySource[source], K, { ...TRAIN, scheme: SCHEME, extraRows, featureSet: "length" });
  stage1Index[source] = stage1.length;
  bySource[source].forEach((row, i) => {
    stage1.push({ source, fold: cv[source].folds[i] as number, raw: cv[source].raw![i]!, difficulty: cv[source].difficulty[i] as number, evidence: cv[source].evidence![i] as number, taskType: cv[source].taskTypes![i], scores: models.map((m) => scoreOf(row, m)) });
  });
  log(`${source}: stage 1 cross-validated in ${((performance.now() - t0) / 1000).toFixed(0)}s`);
}

/** Predictions with stage-2 scores in place of the stage-1 ones. */
function withScores(p: RowPredictions, source: Source, scores: readonly Float64Array[], offset: number): RowPredictions {
  return { ...p, predicted: bySource[source].map((_, i) => scores[offset + i] as Float64Array) };
}
const pair = (source: Source, p: RowPredictions, ranking: PairRanking): PairMetrics => pairReport(bySource[source], p, PAIRS[source][0], PAIRS[source][1], ranking, prices);

// 3. Leave one source out, stage 1: a router trained on the other sources predicts the one left out.
const losoStage1 = {} as Record<Source, { rows: Stage1Row[]; base: RowPredictions }>;
for (const source of SOURCES) {
  const others = SOURCES.filter((s) => s !== source);
  const router = RouterModel.fromJSON(trainRouter(others.flatMap((s) => bySource[s]), TRAIN, others.flatMap((s) => vectors[s])));
  const rows: Stage1Row[] = bySource[source].map((row, i) => {
    const parts = router.scoreParts(vectors[source][i]!);
    return { source, fold: 0, raw: Float64Array.from(parts.raw), difficulty: parts.difficulty, evidence: parts.evidence, taskType: parts.taskType, scores: models.map((m) => scoreOf(row, m)) };
  });
  losoStage1[source] = { rows, base: { models: router.models, predicted: rows.map((r) => r.raw as Float64Array), difficulty: rows.map((r) => r.difficulty), rates: router.costs } };
  log(`${source}: left out`);
}
/** Leave-one-source-out predictions with a stage 2 fitted on the other sources' out-of-fold rows. */
function losoFinal(source: Source, options: Stage2Options): RowPredictions {
  const stage2 = fitStage2(stage1.filter((r) => r.source !== source), models, options);
  const l = losoStage1[source];
  return { ...l.base, predicted: l.rows.map((r) => applyStage2(r, models, stage2)) };
}

// 2. The stage-2 gate, chosen under cross-validation: the best mean APGR over the four sources,
// cross-validated and left out alike (both are out of sample; leaving out is the unlike-traffic case).
const gateResults: { gate: FallbackGate; apgr: Record<Source, number>; loso: Record<Source, number>; mean: number }[] = [];
for (const gate of GATES) {
  const options: Stage2Options = { gate, calibration: CALIBRATION };
  const final = crossFitStage2(stage1, models, options);
  const apgr = Object.fromEntries(SOURCES.map((s) => [s, pair(s, withScores(cv[s], s, final, stage1Index[s]), "gap").apgr])) as Record<Source, number>;
  const losoApgr = Object.fromEntries(SOURCES.map((s) => [s, pair(s, losoFinal(s, options), "gap").apgr])) as Record<Source, number>;
  gateResults.push({ gate, apgr, loso: losoApgr, mean: SOURCES.reduce((a, s) => a + (apgr[s] + losoApgr[s]) / 2, 0) / SOURCES.length });
}
// The settings differ by less than the folds' noise here, and no file here is like the held-back chat
// data, on which the issue measured the difficulty score far above the heads (0.69 against 0.45-0.57).
// So among the gates within GATE_TOLERANCE of the best mean, keep the one that leans most on the
// difficulty for a chat prompt without neighbours (the least-evidenced kind of request here).
const chatRows = stage1.filter((r) => r.taskType === "chat").length / 1000;
const chatShare = (g: FallbackGate): number => (g.weight * g.evidence) / (g.evidence + chatRows || 1);
const best = Math.max(...gateResults.map((g) => g.mean));
const chosen = gateResults.filter((g) => g.mean >= best - GATE_TOLERANCE).sort((a, b) => chatShare(b.gate) - chatShare(a.gate) || b.mean - a.mean)[0]!;
const STAGE2: Stage2Options = { gate: chosen.gate, calibration: CALIBRATION };
log(`stage 2 gate: weight ${chosen.gate.weight}, evidence ${chosen.gate.evidence} (mean APGR ${chosen.mean.toFixed(4)}, best ${best.toFixed(4)}; share for a chat prompt without neighbours ${chatShare(chosen.gate).toFixed(2)})`);
const crossFitted = crossFitStage2(stage1, models, STAGE2);
const uncalibrated = crossFitStage2(stage1, models, { ...STAGE2, calibration: "none" });
const loso = {} as Record<Source, { stage1: RowPredictions; final: RowPredictions }>;
for (const source of SOURCES) loso[source] = { stage1: losoStage1[source].base, final: losoFinal(source, STAGE2) };

// 4. The shipped router.
await mkdir(outDir, { recursive: true });
const shippedStage2 = fitStage2(stage1, models, STAGE2);
const router = trainRouter(allRows, { ...TRAIN, stage2: shippedStage2 });
const routerText = JSON.stringify(router) + "\n";
await writeFile(join(outDir, "default-router.json"), routerText);
log(`default router ${router.version}: ${router.models.length} models, ${(routerText.length / 1e6).toFixed(2)} MB`);

// Reports.
const results: Record<string, unknown> = {
  folds: K,
  scheme: SCHEME,
  protocol:
    "stage 1 per source: k grouped folds, each predicted by a router trained on the other folds plus all rows of the other sources; stage 2 cross-fitted by fold on those out-of-fold rows (all sources); leave-one-source-out: trained on the other sources, stage 2 fitted on their out-of-fold rows",
  settings: { ...DEFAULT_TRAIN_SETTINGS, featureVersion: LATEST_FEATURE_VERSION },
  stage2: { gate: chosen.gate, calibration: CALIBRATION, gates: gateResults.map((g) => ({ ...g.gate, mean: r4(g.mean), cv: Object.fromEntries(SOURCES.map((s) => [s, r4(g.apgr[s])])), leaveOneOut: Object.fromEntries(SOURCES.map((s) => [s, r4(g.loso[s])])) })) },
  sources: {},
};
const pairRows: string[] = [];
const losoRows: string[] = [];
const eceRows: string[] = [];
const reliabilityBlocks: string[] = [];
const multiLines: string[] = [];
for (const source of SOURCES) {
  const rows = bySource[source];
  const final = withScores(cv[source], source, crossFitted, stage1Index[source]);
  const noCal = withScores(cv[source], source, uncalibrated, stage1Index[source]);
  const router = pair(source, final, "gap");
  const stage1Gap = pair(source, cv[source], "gap");
  const difficulty = pair(source, cv[source], "difficulty");
  const weakWrong = pair(source, final, "weak-wrong");
  const length = pair(source, cv[source], "length");
  const lengthRouter = pair(source, lengthCv[source], "gap");
  const [strong, weak] = PAIRS[source];
  pairRows.push(
    `| ${source} (${rows.length}) | ${strong} vs ${weak} | ${fmt(length.apgr)} | ${fmt(lengthRouter.apgr)} | ${fmt(difficulty.apgr)} | ${fmt(stage1Gap.apgr)} | ${fmt(pair(source, noCal, "gap").apgr)} | **${fmt(router.apgr)}** | ${pct(router.cpt50)} | ${pct(router.cpt80)} | ${pct(router.strongShareAt95)} | ${pct(router.costSavingAt95)} |`,
  );
  const l = loso[source];
  const losoRouter = pair(source, l.final, "gap");
  const losoStage1 = pair(source, l.stage1, "gap");
  const losoDifficulty = pair(source, l.stage1, "difficulty");
  losoRows.push(`| ${source} | ${fmt(pair(source, l.stage1, "length").apgr)} | ${fmt(losoDifficulty.apgr)} | ${fmt(losoStage1.apgr)} | **${fmt(losoRouter.apgr)}** | ${fmt(calibrationReport(rows, l.stage1, models).overall.ece)} | ${fmt(calibrationReport(rows, l.final, models).overall.ece)} |`);
  const calibrated = calibrationReport(rows, final, models);
  const before = calibrationReport(rows, cv[source], models);
  const worst = calibrated.perModel.filter((m) => m.n > 0).sort((a, b) => b.ece - a.ece)[0]!;
  eceRows.push(`| ${source} | ${calibrated.overall.n} | ${fmt(before.overall.ece)} | **${fmt(calibrated.overall.ece)}** | ${worst.model} ${fmt(worst.ece)} (${worst.n} rows) |`);
  reliabilityBlocks.push(
    `${source}:`,
    "",
    "| predicted | n | mean predicted | mean observed |",
    "|---|---|---|---|",
    ...calibrated.overall.bins.filter((b) => b.n > 0).map((b) => `| ${b.lo.toFixed(1)}-${b.hi.toFixed(1)} | ${b.n} | ${fmt(b.predicted)} | ${fmt(b.observed)} |`),
    "",
  );
  const entry: Record<string, unknown> = {
    rows: rows.length,
    strong,
    weak,
    router: pairSummary(router),
    baselines: { stage1Gap: pairSummary(stage1Gap), difficultyRanking: pairSummary(difficulty), weakWrongRanking: pairSummary(weakWrong), promptLengthRank: pairSummary(length), lengthOnlyRouter: pairSummary(lengthRouter) },
    leaveOneSourceOut: { router: pairSummary(losoRouter), stage1Gap: pairSummary(losoStage1), difficultyRanking: pairSummary(losoDifficulty) },
    calibration: { before: reliabilitySummary(before.overall), after: reliabilitySummary(calibrated.overall), perModel: calibrated.perModel.map((m) => ({ model: m.model, n: m.n, ece: r4(m.ece) })) },
  };
  if (source !== "routerbench") {
    await writeFile(join(outDir, `${source}-pgr.svg`), pairSvg([{ name: "router", curve: router.curve }, { name: "difficulty", curve: difficulty.curve }, { name: "prompt length", curve: length.curve }], `${source}: ${strong} vs ${weak} (${K}-fold CV)`));
  }
  const present = models.filter((m) => rows.some((row) => row.outcomes[m] !== undefined));
  if (present.length > 2) {
    const multi = multiReport(rows, final, prices, present).metrics;
    const lengthMulti = multiReport(rows, lengthCv[source], prices, present).metrics;
    if (multi && lengthMulti) {
      entry["multi"] = multiSummary(multi);
      entry["multiLengthOnly"] = multiSummary(lengthMulti);
      await writeFile(join(outDir, `${source}-curve.svg`), qualityCostSvg(multi, `${source}: router quality vs cost (${K}-fold CV, ${multi.n} prompts)`));
      const hullAtHalf = qualityAtCost(multi.hull, multi.best.cost / 2);
      multiLines.push(
        `### ${source} (${multi.n} prompts, ${present.length} models)`,
        "",
        `Best single model: ${multi.best.model}, quality ${fmt(multi.best.quality)} at ${usd(multi.best.cost)} a call. ` +
          (multi.matchBest
            ? `The router matches its quality at ${usd(multi.matchBest.cost)} (${pct(multi.matchBestCostRatio)} of its cost). `
            : `The router does not reach its quality at any λ (best at no more than its cost: ${fmt(multi.qualityAtBestCost)}). `) +
          `At half its cost the router reaches ${fmt(halfBest(multi))} (length-only router ${fmt(halfBest(lengthMulti))}; the convex hull of single models, the "zero router", ${fmt(hullAtHalf)}).` +
          (multi.matchBestMixedCost !== undefined ? ` Mixing two router settings at random reaches its quality at ${usd(multi.matchBestMixedCost)}.` : ""),
        "",
        `Hull (zero router): ${multi.hull.map((h) => h.model).join(" → ")}.`,
        "",
        "| model | quality | mean cost | router quality at ≤ that cost |",
        "|---|---|---|---|",
        ...multi.models
          .slice()
          .sort((a, b) => a.cost - b.cost)
          .map((m) => {
            const q = Math.max(...multi.curve.filter((p) => p.cost <= m.cost + 1e-15).map((p) => p.quality));
            return `| ${m.model} | ${fmt(m.quality)} | ${usd(m.cost)} | ${Number.isFinite(q) ? fmt(q) : "n/a"} |`;
          }),
        "",
      );
    }
  }
  (results["sources"] as Record<string, unknown>)[source] = entry;
}

const gateTable = gateResults.map((g) => `| ${g.gate.weight} | ${g.gate.evidence} | ${SOURCES.map((s) => `${fmt(g.apgr[s])} / ${fmt(g.loso[s])}`).join(" | ")} | ${g === chosen ? `**${fmt(g.mean, 4)}**` : fmt(g.mean, 4)} |`);
const notes = await readFile(join(packageDir, "scripts", "cv-notes.md"), "utf8");
const md: string[] = [
  "# Router cross-validation",
  "",
  "Regenerate everything here (router, tables, plots) with `npm run train:default-router` (libs/router/scripts/train-default.ts, about 6 minutes on 2 cores); it is deterministic (byte-identical files).",
  "",
  "## Protocol (read this to judge optimism)",
  "",
  `- Stage 1 (per-model FTRL heads over hashed features, averaged with a nearest-neighbour estimate) is cross-validated per source: ${K} ${SCHEME} folds (rows with the same normalised final question share a fold), fold seed 2024, shuffle seed ${DEFAULT_TRAIN_SETTINGS.seed}. Each fold is predicted by a router trained on the other folds **plus every row of the other sources** (the shipped router is trained on all four files).`,
  "- Stage 2 (the difficulty fallback and per-model calibration) is fitted only on those out-of-fold stage-1 predictions, every source weighted alike. Every stage-2 figure below is cross-fitted: a fold's rows are scored by a stage 2 fitted on the other folds' rows of all sources.",
  `- The one choice made on these folds is the fallback's gate (weight, evidence), from the ${GATES.length} settings in the table below, by the mean APGR over the four sources, cross-validated and left out: expect an optimistic bias of about the spread between neighbouring settings. Head and neighbour settings are the earlier defaults, unchanged.`,
  "- Leave one source out: a router trained on the other three sources predicts the fourth; its stage 2 is fitted on the other sources' out-of-fold rows. Those rows come from routers that had seen the left-out source as extra training rows, a small leak into the stage-2 fit (a handful of numbers per model), none into stage 1.",
  `- Model aliases: ${Object.entries(ALIASES).map(([from, to]) => `\`${from}\` is trained and evaluated as \`${to}\``).join("; ")}. arena_bench uses the RouteLLM names for GPT-4-1106 and Mixtral, so its rows train the same heads as MMLU and GSM8K.`,
  "- arena_bench rows are costed with `models/chat-prices.json` (2024 list prices, assumptions) and each answer's `output_chars`; the other files as before (RouterBench's real per-call costs, `prices.json`).",
  "- The held-back chat data is not available here: no figure below is measured on it.",
  "",
  "## Two models: APGR (area under the PGR curve; random = 0.5), cross-validated",
  "",
  "| source | strong vs weak | prompt length | length-only router | difficulty score | stage 1 (heads + neighbours) | + fallback, uncalibrated | **router** (+ calibration) | CPT(50%) | CPT(80%) | strong share @95% | cost saving @95% |",
  "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ...pairRows,
  "",
  `"router" ranks prompts by predicted strong score minus predicted weak score, as \`switchyard eval\` does; "difficulty score" ranks by the router's learned difficulty (the quantile of 1 − the mean stage-1 score of the ${router.difficulty.models?.length ?? models.length} heads with at least ${DIFFICULTY_MIN_ROWS} training rows), the score the issue measured on held-back chat.`,
  "",
  "## Leave one source out (trained on the other sources)",
  "",
  "| left out | prompt length | difficulty score | stage 1 | **router** | ECE stage 1 | ECE router |",
  "|---|---|---|---|---|---|---|",
  ...losoRows,
  "",
  "## Calibration (cross-fitted; every (row, model) prediction with an outcome)",
  "",
  "Expected calibration error over 10 equal-width bins of the predicted score, per source; `switchyard eval` prints the same table for any router and data file.",
  "",
  "| source | predictions | ECE stage 1 | **ECE router** | worst model |",
  "|---|---|---|---|---|",
  ...eceRows,
  "",
  "Reliability tables (router, cross-fitted):",
  "",
  ...reliabilityBlocks,
  "## Many models: quality / cost (cross-validated, stage 2 cross-fitted)",
  "",
  ...multiLines,
  "## The fallback's gate (chosen under cross-validation)",
  "",
  "Share of the difficulty fallback in the logit average = weight · evidence / (evidence + W + K), W the neighbours' summed weight, K the training rows of the request's kind (task type) / 1000. APGR of the router (calibrated) per source, cross-validated / left out, and their mean. The settings differ by less than the folds' noise, and no file here is like the held-back chat data, on which the issue measured the difficulty score far above the heads (0.69 against 0.45-0.57); so among the gates within " + GATE_TOLERANCE + " of the best mean, the one that leans most on the difficulty for a chat prompt without neighbours is kept (in bold; its share for such a prompt: " + chatShare(chosen.gate).toFixed(2) + "; for a multiple-choice question about " + ((chosen.gate.weight * chosen.gate.evidence) / (chosen.gate.evidence + stage1.filter((r) => r.taskType === "multiple_choice").length / 1000)).toFixed(2) + ").",
  "",
  `| weight | evidence | ${SOURCES.join(" | ")} | mean |`,
  `|---|---|${SOURCES.map(() => "---").join("|")}|---|`,
  ...gateTable,
  "",
  notes.trim(),
  "",
];
await writeFile(join(outDir, "cv-results.json"), JSON.stringify(results, null, 2) + "\n");
await writeFile(join(outDir, "CV.md"), md.join("\n"));
log(md.join("\n"));
log(`done in ${((performance.now() - started) / 1000).toFixed(0)}s`);
