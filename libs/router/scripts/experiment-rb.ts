/** Development aid: the RouterBench curve under cross-validation. */
import { readRows, readPrices } from "../src/data.js";
import { crossValidate } from "../src/cv.js";
import { multiReport } from "../src/report.js";

const dir = process.env["SWITCHYARD_ROUTING_DATA"] ?? "/work/shared/data/routing";
const options = JSON.parse(process.argv[2] ?? "{}") as Record<string, unknown>;
const prices = await readPrices(`${dir}/prices.json`);
const rows = await readRows(`${dir}/routerbench.jsonl`);
const cv = crossValidate(rows, 5, { ...options, prices });
const { metrics } = multiReport(rows, cv, prices);
if (!metrics) throw new Error("no metrics");
for (const m of metrics.models) console.log(m.model.padEnd(40), m.cost.toExponential(3), m.quality.toFixed(4));
console.log("hull", metrics.hull.map((h) => h.model).join(", "));
let last = "";
for (const p of metrics.curve) {
  const key = `${p.cost.toExponential(3)} ${p.quality.toFixed(4)}`;
  if (key !== last) console.log(p.lambda.toExponential(2), key);
  last = key;
}
