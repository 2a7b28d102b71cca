/**
 * Development aid: stage-2 choices (difficulty-fallback gate, calibration) on stage-1 out-of-fold
 * predictions written by experiment-stage1, cross-fitted by fold. argv: the OOF file.
 */
import { readFile } from "node:fs/promises";
import { pairMetrics, reliability } from "../src/evaluate.js";
import { applyStage2, crossFitStage2, fitStage2, type Stage1Row } from "../src/stage2.js";

const file = process.argv[2] ?? "/tmp/oof-v2.json";
type Stored = Omit<Stage1Row, "scores"> & { scores: (number | null)[] };
const { models, rows: stored, loso: storedLoso } = JSON.parse(await readFile(file, "utf8")) as { models: string[]; rows: Stored[]; loso?: Stored[] };
const parse = (r: Stored): Stage1Row => ({ ...r, scores: r.scores.map((s) => (s === null ? undefined : s)) });
const cvRows: Stage1Row[] = stored.map(parse);
const losoRows: Stage1Row[] = (storedLoso ?? []).map(parse);
let rows: Stage1Row[] = cvRows;
// Older OOF files have no task types: fill them in from the data, in file order.
if (cvRows.some((r) => r.taskType === undefined)) {
  const { readRows } = await import("../src/data.js");
  const { extractFeatures } = await import("../src/features.js");
  const dir = process.env["SWITCHYARD_ROUTING_DATA"] ?? "/work/shared/data/routing";
  for (const list of [cvRows, losoRows]) {
    const counters = new Map<string, number>();
    for (const r of list) {
      if (!counters.has(r.source)) counters.set(r.source, 0);
    }
    const cache = new Map<string, string[]>();
    for (const r of list) {
      if (!cache.has(r.source)) cache.set(r.source, (await readRows(`${dir}/${r.source}.jsonl`)).map((row) => extractFeatures(row.messages, "full", undefined, 2).summary.taskType));
      const k = counters.get(r.source)!;
      r.taskType = cache.get(r.source)![k];
      counters.set(r.source, k + 1);
    }
  }
}
const calibration = (process.env["CAL"] ?? "platt") as "platt" | "isotonic" | "none";
const kinds = process.env["KINDS"] === "1";
const sources = [...new Set(rows.map((r) => r.source))];
const G4 = models.indexOf("gpt-4-1106-preview");
const pairOf: Record<string, [number, number]> = {
  mmlu: [G4, models.indexOf("mistralai/Mixtral-8x7B-Instruct-v0.1")],
  gsm8k: [G4, models.indexOf("mistralai/Mixtral-8x7B-Instruct-v0.1")],
  routerbench: [G4, models.indexOf("mistralai/mistral-7b-chat")],
  arena_bench: [G4, models.indexOf("mistralai/Mixtral-8x7B-Instruct-v0.1")],
};
function apgr(source: string, score: (i: number) => number): number {
  const [s, w] = pairOf[source]!;
  const items = [];
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (r.source !== source || r.scores[s] === undefined || r.scores[w] === undefined) continue;
    items.push({ routeScore: score(i), strong: r.scores[s]!, weak: r.scores[w]! });
  }
  return pairMetrics(items).apgr;
}
function ece(source: string, predicted: (i: number) => ArrayLike<number>): number {
  const p: number[] = [];
  const y: number[] = [];
  rows.forEach((r, i) => {
    if (r.source !== source) return;
    const q = predicted(i);
    r.scores.forEach((s, j) => {
      if (s === undefined) return;
      p.push(q[j] as number);
      y.push(s);
    });
  });
  return reliability(p, y).ece;
}
const gap = (pred: (i: number) => ArrayLike<number>, source: string) => (i: number) => (pred(i)[pairOf[source]![0]] as number) - (pred(i)[pairOf[source]![1]] as number);
const base = sources.map((s) => `${s}: stage1 ${apgr(s, gap((i) => rows[i]!.raw, s)).toFixed(4)} diff ${apgr(s, (i) => rows[i]!.difficulty).toFixed(4)} ece ${ece(s, (i) => rows[i]!.raw).toFixed(3)}`);
console.log(`${file}: ${base.join(" | ")}`);
const ev = (s: string) => rows.filter((r) => r.source === s).map((r) => r.evidence).sort((a, b) => a - b);
for (const s of sources) { const e = ev(s); console.log(`evidence ${s}: q10 ${e[Math.floor(e.length * 0.1)]!.toFixed(3)} q50 ${e[Math.floor(e.length * 0.5)]!.toFixed(3)} q90 ${e[Math.floor(e.length * 0.9)]!.toFixed(3)}`); }
const weights = (process.env["WEIGHTS"] ?? "0,0.25,0.5,0.75,1").split(",").map(Number);
const evidences = (process.env["EVIDENCES"] ?? "0.03,0.1,0.3,1,3").split(",").map(Number);
for (const weight of weights) {
  for (const evidence of weight === 0 ? [0] : evidences) {
    rows = cvRows;
    const final = crossFitStage2(rows, models, { gate: { weight, evidence, kinds }, calibration });
    const parts = sources.map((s) => `${s} ${apgr(s, gap((i) => final[i]!, s)).toFixed(4)} ece ${ece(s, (i) => final[i]!).toFixed(3)}`);
    const mean = sources.reduce((a, s) => a + apgr(s, gap((i) => final[i]!, s)), 0) / sources.length;
    let losoLine = "";
    if (losoRows.length > 0) {
      rows = losoRows;
      const l = sources.map((s) => {
        const stage2 = fitStage2(cvRows.filter((r) => r.source !== s), models, { gate: { weight, evidence, kinds }, calibration });
        const fin = rows.map((r) => applyStage2(r, models, stage2));
        return `${s} ${apgr(s, gap((i) => fin[i]!, s)).toFixed(4)}/${apgr(s, gap((i) => rows[i]!.raw, s)).toFixed(4)}/d${apgr(s, (i) => rows[i]!.difficulty).toFixed(4)} ece ${ece(s, (i) => fin[i]!).toFixed(3)}`;
      });
      losoLine = ` || LOSO ${l.join(" | ")}`;
    }
    console.log(`w=${weight} c=${evidence}: mean ${mean.toFixed(4)} | ${parts.join(" | ")}${losoLine}`);
  }
}
