/** Development aid: grouped 5-fold CV on arena_bench (GPT-4-1106 vs Mixtral), alone or with the other sources as extra training rows. */
import { applyAliases, readRows, readPrices, type RoutingRow } from "../src/data.js";
import { crossValidate } from "../src/cv.js";
import { featurizeRows } from "../src/train.js";
import { pairReport, PAIR_RANKINGS } from "../src/report.js";

const dir = process.env["SWITCHYARD_ROUTING_DATA"] ?? "/work/shared/data/routing";
const options = JSON.parse(process.argv[2] ?? "{}") as Record<string, unknown>;
const ALIASES = { "mistralai/mixtral-8x7b-chat": "mistralai/Mixtral-8x7B-Instruct-v0.1" };
const prices = await readPrices(`${dir}/prices.json`);
const all: Record<string, RoutingRow[]> = {};
for (const s of ["mmlu", "gsm8k", "routerbench", "arena_bench"]) all[s] = applyAliases(await readRows(`${dir}/${s}.jsonl`), ALIASES);
const S = "gpt-4-1106-preview";
const W = "mistralai/Mixtral-8x7B-Instruct-v0.1";
for (const extra of process.env["EXTRA"] === "0" ? [false] : process.env["EXTRA"] === "1" ? [true] : [false, true]) {
  const t0 = performance.now();
  const extraRows = extra ? ["mmlu", "gsm8k", "routerbench"].flatMap((s) => all[s]!) : [];
  const rows = all["arena_bench"]!;
  const cv = crossValidate(rows, 5, { ...options, prices, scheme: "grouped", extraRows, extraVectors: featurizeRows(extraRows), aliases: ALIASES });
  const line = PAIR_RANKINGS.map((r) => `${r}=${pairReport(rows, cv, S, W, r, prices).apgr.toFixed(4)}`).join(" ");
  console.log(`arena extra=${extra} ${JSON.stringify(options)} ${line} (${((performance.now() - t0) / 1000).toFixed(1)}s)`);
}
