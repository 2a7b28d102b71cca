/** Development aid: grouped 5-fold CV of the alias option and pair heads (argv: aliases JSON, sources). */
import { readRows, readPrices, applyAliases, type RoutingRow } from "../src/data.js";
import { crossValidate } from "../src/cv.js";
import { featurizeRows } from "../src/train.js";
import { defaultPair, pairReport, multiReport, PAIR_HEAD_RANKINGS } from "../src/report.js";

const dir = process.env["SWITCHYARD_ROUTING_DATA"] ?? "/work/shared/data/routing";
const aliases = JSON.parse(process.argv[2] ?? "{}") as Record<string, string>;
const files = (process.argv[3] ?? "mmlu,gsm8k,routerbench").split(",");
const prices = await readPrices(`${dir}/prices.json`);
const SOURCES = ["mmlu", "gsm8k", "routerbench"];
const all: Record<string, RoutingRow[]> = {};
for (const s of SOURCES) all[s] = applyAliases(await readRows(`${dir}/${s}.jsonl`), aliases);
const feats = Object.fromEntries(SOURCES.map((s) => [s, featurizeRows(all[s]!)]));
const MIX = aliases["mistralai/mixtral-8x7b-chat"] ?? "mistralai/mixtral-8x7b-chat";
const pairs: [string, string][] = [
  ["gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"],
  ["gpt-4-1106-preview", "mistralai/mistral-7b-chat"],
];
if (MIX !== "mistralai/Mixtral-8x7B-Instruct-v0.1") pairs.push(["gpt-4-1106-preview", MIX]);
for (const source of files) {
  const t0 = performance.now();
  const rows = all[source]!;
  const others = SOURCES.filter((s) => s !== source);
  const cv = crossValidate(rows, 5, { prices, scheme: "grouped", aliases, pairs, extraRows: others.flatMap((s) => all[s]!), extraVectors: others.flatMap((s) => feats[s]!) });
  const present = cv.models.filter((m) => rows.some((r) => r.outcomes[m] !== undefined));
  const pair = defaultPair(rows, present, prices, cv.rates)!;
  let s = `${source} ${JSON.stringify(aliases) !== "{}" ? "alias" : "noalias"} models=${present.length} ${pair.strong} vs ${pair.weak}: gap=${pairReport(rows, cv, pair.strong, pair.weak, "gap", prices).apgr.toFixed(4)}`;
  for (const r of PAIR_HEAD_RANKINGS) s += ` ${r}=${pairReport(rows, cv, pair.strong, pair.weak, r, prices).apgr.toFixed(4)}`;
  if (source === "routerbench") {
    for (const [a, b] of pairs.slice(0)) {
      if (a === pair.strong && b === pair.weak) continue;
      s += `\n   ${a} vs ${b}: gap=${pairReport(rows, cv, a, b, "gap", prices).apgr.toFixed(4)} pair-gain=${pairReport(rows, cv, a, b, "pair-gain", prices).apgr.toFixed(4)} pair=${pairReport(rows, cv, a, b, "pair", prices).apgr.toFixed(4)}`;
    }
  }
  if (present.length > 2) {
    const { metrics, skipped } = multiReport(rows, cv, prices, present);
    if (metrics) s += `\n   multi n=${metrics.n} skipped=${skipped} best=${metrics.best.model} ${metrics.best.quality.toFixed(4)} qBest=${metrics.qualityAtBestCost.toFixed(4)} qHalf=${Math.max(...metrics.curve.filter((p) => p.cost <= metrics.best.cost / 2).map((p) => p.quality)).toFixed(4)} match=${metrics.matchBest ? metrics.matchBest.cost.toExponential(2) : "no"}`;
  }
  console.log(s, `(${((performance.now() - t0) / 1000).toFixed(0)}s)`);
}
