/**
 * Development aid: how far ranking arena_bench prompts can go for GPT-4-1106 vs Mixtral, with
 * knowledge no router has at inference (in-sample outcomes): the true gap, Mixtral's true score, and
 * a perfect difficulty (the true mean score of the 13 other chat models), against prompt length.
 */
import { readRows, scoreOf } from "../src/data.js";
import { pairMetrics } from "../src/evaluate.js";
import { promptChars } from "../src/cost.js";

const dir = process.env["SWITCHYARD_ROUTING_DATA"] ?? "/work/shared/data/routing";
const S = "gpt-4-1106-preview";
const W = "mistralai/Mixtral-8x7B-Instruct-v0.1";
const rows = (await readRows(`${dir}/arena_bench.jsonl`)).filter((r) => scoreOf(r, S) !== undefined && scoreOf(r, W) !== undefined);
const others = [...new Set(rows.flatMap((r) => Object.keys(r.outcomes)))].filter((m) => m !== S && m !== W).sort();
const apgr = (rank: (r: (typeof rows)[number]) => number): string => pairMetrics(rows.map((r) => ({ routeScore: rank(r), strong: scoreOf(r, S)!, weak: scoreOf(r, W)! }))).apgr.toFixed(3);
const meanOthers = (r: (typeof rows)[number]): number => {
  const s = others.map((m) => scoreOf(r, m)).filter((x): x is number => x !== undefined);
  return s.reduce((a, b) => a + b, 0) / s.length;
};
console.log(`arena_bench, ${rows.length} rows with both models`);
console.log(`oracle: true gap ${apgr((r) => scoreOf(r, S)! - scoreOf(r, W)!)}, Mixtral wrong ${apgr((r) => 1 - scoreOf(r, W)!)}, perfect difficulty (1 - mean of the ${others.length} other models) ${apgr((r) => 1 - meanOthers(r))}`);
console.log(`prompt length ${apgr((r) => promptChars(r.messages))}`);
console.log(`one other model's true score as the difficulty: ${others.map((m) => `${m} ${apgr((r) => 1 - (scoreOf(r, m) ?? 0.5))}`).join(", ")}`);
