/** Development aid: cross-validated metrics per data file for a given set of training options (JSON in argv[2]). */
import { readRows, readPrices } from "../src/data.js";
import { crossValidate } from "../src/cv.js";
import { defaultPair, pairReport, multiReport, PAIR_RANKINGS } from "../src/report.js";

const dir = process.env["SWITCHYARD_ROUTING_DATA"] ?? "/work/shared/data/routing";
const options = JSON.parse(process.argv[2] ?? "{}") as Record<string, unknown>;
const files = (process.argv[3] ?? "mmlu,gsm8k,routerbench").split(",");
const prices = await readPrices(`${dir}/prices.json`);
const all = Object.fromEntries(await Promise.all(["mmlu", "gsm8k", "routerbench"].map(async (f) => [f, await readRows(`${dir}/${f}.jsonl`)] as const)));
const withExtra = process.env["EXTRA"] === "1";
for (const file of files) {
  const rows = all[file]!;
  const t0 = performance.now();
  const extraRows = withExtra ? Object.entries(all).filter(([f]) => f !== file).flatMap(([, r]) => r) : [];
  const cv = crossValidate(rows, 5, { ...options, prices, extraRows });
  const pair = defaultPair(rows, cv.models, prices, cv.rates)!;
  const line = PAIR_RANKINGS.map((r) => `${r}=${pairReport(rows, cv, pair.strong, pair.weak, r, prices).apgr.toFixed(4)}`).join(" ");
  let extra = "";
  if (cv.models.length > 2) {
    const { metrics } = multiReport(rows, cv, prices);
    if (metrics) extra = ` best=${metrics.best.model} q=${metrics.best.quality.toFixed(4)} c=${metrics.best.cost.toExponential(3)} match=${metrics.matchBest?.cost.toExponential(3)} ratio=${metrics.matchBestCostRatio?.toFixed(3)} mixed=${metrics.matchBestMixedCost?.toExponential(3)} qAtBestCost=${metrics.qualityAtBestCost.toFixed(4)}`;
  }
  const p = pairReport(rows, cv, pair.strong, pair.weak, "gap", prices);
  console.log(`${file} [${pair.strong} vs ${pair.weak}] ${line} cpt50=${p.cpt50?.toFixed(3)} cpt80=${p.cpt80?.toFixed(3)} at95=${p.strongShareAt95?.toFixed(3)} save95=${p.costSavingAt95?.toFixed(3)}${extra} (${((performance.now() - t0) / 1000).toFixed(1)}s)`);
}
