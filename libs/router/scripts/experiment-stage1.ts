/**
 * Development aid: stage-1 out-of-fold predictions (grouped 5-fold CV per source, the other sources
 * as extra training rows) for every source, written to a JSON file for stage-2 experiments.
 * argv: featureVersion (1 | 2), output path, [training options JSON].
 */
import { writeFile } from "node:fs/promises";
import { applyAliases, readRows, readPrices, scoreOf, type RoutingRow } from "../src/data.js";
import { crossValidate } from "../src/cv.js";
import { featurizeRows } from "../src/train.js";
import type { FeatureVersion } from "../src/features.js";

const dir = process.env["SWITCHYARD_ROUTING_DATA"] ?? "/work/shared/data/routing";
const version = Number(process.argv[2] ?? 2) as FeatureVersion;
const out = process.argv[3] ?? `/tmp/oof-v${version}.json`;
const options = JSON.parse(process.argv[4] ?? "{}") as Record<string, unknown>;
const ALIASES = { "mistralai/mixtral-8x7b-chat": "mistralai/Mixtral-8x7B-Instruct-v0.1" };
const SOURCES = (process.env["SOURCES"] ?? "mmlu,gsm8k,routerbench,arena_bench").split(",");
const prices = await readPrices(`${dir}/prices.json`);
const all: Record<string, RoutingRow[]> = {};
for (const s of SOURCES) all[s] = applyAliases(await readRows(`${dir}/${s}.jsonl`), ALIASES);
const vectors = Object.fromEntries(SOURCES.map((s) => [s, featurizeRows(all[s]!, "full", version)]));
const models = [...new Set(SOURCES.flatMap((s) => all[s]!.flatMap((r) => Object.keys(r.outcomes))))];
const rows: unknown[] = [];
const CV_SOURCES = (process.env["CV_SOURCES"] ?? SOURCES.join(",")).split(",");
for (const source of CV_SOURCES) {
  const t0 = performance.now();
  const others = SOURCES.filter((s) => s !== source);
  const cv = crossValidate(all[source]!, 5, { ...options, prices, scheme: "grouped", extraRows: others.flatMap((s) => all[s]!), extraVectors: others.flatMap((s) => vectors[s]!), models, aliases: ALIASES, featureVersion: version });
  all[source]!.forEach((row, i) => {
    rows.push({ source, fold: cv.folds[i], raw: Array.from(cv.raw![i]!, (x) => Number(x.toFixed(6))), difficulty: cv.difficulty[i], evidence: cv.evidence![i], taskType: cv.taskTypes![i], scores: models.map((m) => scoreOf(row, m) ?? null) });
  });
  console.log(`${source}: ${((performance.now() - t0) / 1000).toFixed(0)}s`);
}
// Leave one source out: a router trained on every other source predicts the one left out.
import { RouterModel } from "../src/model.js";
import { trainRouter } from "../src/train.js";
const loso: unknown[] = [];
if (process.env["LOSO"] !== "0") {
  for (const source of SOURCES) {
    const others = SOURCES.filter((s) => s !== source);
    const router = RouterModel.fromJSON(trainRouter(others.flatMap((s) => all[s]!), { ...options, prices, models, aliases: ALIASES, featureVersion: version }, others.flatMap((s) => vectors[s]!)));
    all[source]!.forEach((row, i) => {
      const parts = router.scoreParts(vectors[source]![i]!);
      loso.push({ source, fold: 0, raw: Array.from(parts.raw, (x) => Number(x.toFixed(6))), difficulty: parts.difficulty, evidence: parts.evidence, taskType: parts.taskType, scores: models.map((m) => scoreOf(row, m) ?? null) });
    });
    console.log(`loso ${source} done`);
  }
}
await writeFile(out, JSON.stringify({ version, models, rows, loso }));
