/**
 * Latency and memory of the shipped router: load it, then time `predict` (features + every head) on
 * synthetic prompts of about 1-2 KB. Prints p50/p99 and heap/RSS; writes .bench/router-bench.json.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { defaultRouterPath, loadRouter, tierFor } from "../src/index.js";

const before = process.memoryUsage();
const path = process.argv[2] ?? defaultRouterPath();
const loadStart = performance.now();
const router = await loadRouter(path);
const loadMs = performance.now() - loadStart;
globalThis.gc?.();
const after = process.memoryUsage();

const sentences = [
  "Explain step by step how the following function handles an empty list and what it returns.",
  "A train leaves the station at 3 pm travelling at 60 km/h; how far has it gone by 5:30 pm?",
  "Which of the following best describes the role of mitochondria in eukaryotic cells?",
  "Summarize the customer's complaint below and extract the order number and the requested refund.",
  "Write a short poem about autumn in the style of a haiku sequence, then translate it to French.",
  "def merge(a, b):\n    return sorted(a + b)  # why is this O(n log n) and not O(n)?",
];
const prompts: { role: string; content: string }[][] = [];
for (let i = 0; i < 200; i++) {
  let text = "";
  let j = i;
  while (text.length < 1000 + (i % 5) * 200) text += sentences[j++ % sentences.length] + (j % 3 === 0 ? "\n\n" : " ");
  prompts.push(i % 4 === 0 ? [{ role: "system", content: "You are a helpful assistant." }, { role: "user", content: text }] : [{ role: "user", content: text }]);
}
for (let i = 0; i < 2000; i++) router.predict(prompts[i % prompts.length] as { role: string; content: string }[]);
const times: number[] = [];
let sink = 0;
for (let i = 0; i < 20000; i++) {
  const t0 = performance.now();
  const r = router.predict(prompts[i % prompts.length] as { role: string; content: string }[]);
  sink += tierFor(r.difficulty, router.tiers).length;
  times.push(performance.now() - t0);
}
times.sort((a, b) => a - b);
const q = (p: number): number => times[Math.min(times.length - 1, Math.floor(p * times.length))] as number;
const mb = (bytes: number): number => Number((bytes / 1e6).toFixed(1));
const result = {
  router: router.version,
  models: router.models.length,
  promptChars: { min: Math.min(...prompts.map((p) => p.map((m) => m.content.length).reduce((a, b) => a + b))), max: Math.max(...prompts.map((p) => p.map((m) => m.content.length).reduce((a, b) => a + b))) },
  loadMs: Number(loadMs.toFixed(1)),
  predictMs: { p50: Number(q(0.5).toFixed(4)), p90: Number(q(0.9).toFixed(4)), p99: Number(q(0.99).toFixed(4)) },
  memoryMB: { heapUsedBefore: mb(before.heapUsed), heapUsedAfterLoad: mb(after.heapUsed), arrayBuffersAfterLoad: mb(after.arrayBuffers), rssBefore: mb(before.rss), rssAfterLoad: mb(after.rss), rssAfterBench: mb(process.memoryUsage().rss) },
};
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
if (sink < 0) process.stdout.write("unreachable\n");
await mkdir(".bench", { recursive: true });
await writeFile(join(".bench", "router-bench.json"), JSON.stringify(result, null, 2) + "\n");
