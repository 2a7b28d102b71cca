import { describe, it, expect } from "vitest";
import { mkdtemp, writeFile, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { trainRouter } from "../src/train.js";
import { RouterModel } from "../src/model.js";
import { applyAliases, parseAliases, type RoutingRow } from "../src/data.js";
import { crossValidate } from "../src/cv.js";
import { multiReport, pairReport } from "../src/report.js";
import { evalCommand, trainCommand } from "../src/commands.js";
import { capture, syntheticRows, toJsonl } from "./fixtures.js";

/** The synthetic rows with "middle" renamed to "middle-alt" on even rows (the same model under two names). */
function splitNames(rows: readonly RoutingRow[]): RoutingRow[] {
  return rows.map((row, i) => {
    if (i % 2 !== 0 || !row.outcomes["middle"]) return row;
    const { middle, ...rest } = row.outcomes;
    return { ...row, outcomes: { ...rest, "middle-alt": { ...middle!, cost_usd: 0.002 } } };
  });
}

describe("model aliases", () => {
  const rows = splitNames(syntheticRows(300));

  it("moves outcomes to the canonical name, keeping each row's own cost, and never overwrites", () => {
    const aliased = applyAliases(rows, { "middle-alt": "middle" });
    expect(aliased).toHaveLength(rows.length);
    expect(aliased.some((r) => r.outcomes["middle-alt"] !== undefined)).toBe(false);
    const moved = aliased.filter((r, i) => rows[i]!.outcomes["middle-alt"] !== undefined);
    expect(moved.length).toBeGreaterThan(50);
    for (const r of moved) expect(r.outcomes["middle"]!.cost_usd).toBe(0.002);
    const both: RoutingRow = { id: "x", messages: [{ role: "user", content: "q" }], outcomes: { a: { score: 1 }, b: { score: 0 } } };
    expect(applyAliases([both], { b: "a" })[0]!.outcomes).toEqual({ a: { score: 1 } });
    // Rows are not mutated.
    expect(rows.some((r) => r.outcomes["middle-alt"] !== undefined)).toBe(true);
  });

  it("parses FROM=TO and rejects chains and malformed specs", () => {
    expect(parseAliases(["a=b", "c=b"])).toEqual({ a: "b", c: "b" });
    expect(() => parseAliases(["a=b", "b=c"])).toThrow(/itself aliased/);
    expect(() => parseAliases(["ab"])).toThrow(/FROM=TO/);
    expect(() => parseAliases(["a=a"])).toThrow(/itself/);
  });

  it("trains one head for the merged model, on both names' rows, and keeps the alias out of the models", () => {
    const plain = trainRouter(rows, { epochs: 2 });
    expect(plain.models).toContain("middle-alt");
    const merged = trainRouter(rows, { epochs: 2, aliases: { "middle-alt": "middle" }, models: ["strong", "weak", "middle", "middle-alt"] });
    expect(merged.models).toEqual(["strong", "weak", "middle"]);
    expect(merged.heads["middle"]!.rows).toBe(200);
    expect(merged.aliases).toEqual({ "middle-alt": "middle" });
    expect(Object.keys(merged.costs)).not.toContain("middle-alt");
    expect(RouterModel.fromJSON(merged).aliases).toEqual({ "middle-alt": "middle" });
    expect(JSON.stringify(trainRouter(rows, { epochs: 2, aliases: { "middle-alt": "middle" } }))).toBe(JSON.stringify(trainRouter(rows, { epochs: 2, aliases: { "middle-alt": "middle" } })));
  });

  it("cross-validates on the aliased rows: the many-model report sees every row, with its own cost", () => {
    const cv = crossValidate(rows, 3, { epochs: 2, aliases: { "middle-alt": "middle" } });
    expect(cv.models).toEqual(["strong", "weak", "middle"]);
    const aliased = applyAliases(rows, { "middle-alt": "middle" });
    const { metrics, skipped } = multiReport(aliased, cv, undefined, cv.models);
    expect(metrics!.n).toBe(200);
    expect(skipped).toBe(100);
    const middle = metrics!.models.find((m) => m.model === "middle")!;
    // Half of the rows cost 0.001, the other half (the renamed ones) 0.002.
    expect(middle.cost).toBeGreaterThan(0.0013);
    expect(middle.cost).toBeLessThan(0.0017);
  });

  it("train and eval --kfold take --alias FROM=TO", async () => {
    const dir = await mkdtemp(join(tmpdir(), "router-alias-"));
    const data = join(dir, "data.jsonl");
    const out = join(dir, "router.json");
    await writeFile(data, toJsonl(rows.slice(0, 150)));
    const trained = await capture(() => trainCommand(["--data", data, "--out", out, "--epochs", "2", "--alias", "middle-alt=middle"]));
    expect(trained.code).toBe(0);
    expect(trained.stdout).toContain("3 models (strong, weak, middle)");
    const json = JSON.parse(await readFile(out, "utf8")) as { models: string[]; aliases: Record<string, string> };
    expect(json.aliases).toEqual({ "middle-alt": "middle" });
    const cv = await capture(() => evalCommand(["--data", data, "--kfold", "3", "--epochs", "2", "--alias=middle-alt=middle"]));
    expect(cv.code).toBe(0);
    expect(cv.stdout).not.toContain("middle-alt");
    expect(cv.stdout).toMatch(/quality\/cost over 100 rows/);
    const fixed = await capture(() => evalCommand(["--data", data, "--router", out]));
    expect(fixed.code).toBe(0);
    expect(fixed.stdout).toMatch(/quality\/cost over 100 rows/);
    const bad = await capture(() => evalCommand(["--data", data, "--kfold", "3", "--alias", "nonsense"]));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/FROM=TO/);
  });
});

describe("pair heads", () => {
  const rows = syntheticRows(300);

  it("stores a win and a differ head per pair, leaves the model heads unchanged, and is deterministic", () => {
    const plain = trainRouter(rows, { epochs: 3 });
    const withPairs = trainRouter(rows, { epochs: 3, pairs: [["strong", "weak"]] });
    expect(withPairs.heads).toEqual(plain.heads);
    expect(withPairs.pairs).toHaveLength(1);
    const pair = withPairs.pairs![0]!;
    expect([pair.strong, pair.weak]).toEqual(["strong", "weak"]);
    // The win head sees only the rows where exactly one of the two is right.
    const differing = rows.filter((r) => r.outcomes["strong"]!.score !== r.outcomes["weak"]!.score).length;
    expect(pair.win.rows).toBe(differing);
    expect(pair.differ.rows).toBe(rows.length);
    expect(withPairs.version).not.toBe(plain.version);
    expect(JSON.stringify(trainRouter(rows, { epochs: 3, pairs: [["strong", "weak"]] }))).toBe(JSON.stringify(withPairs));
  });

  it("predicts a larger gain on the hard topic, answers the reverse pair, and says nothing of unknown pairs", () => {
    const router = RouterModel.fromJSON(trainRouter(rows, { epochs: 8, pairs: [["strong", "weak"]] }));
    expect(router.pairs).toEqual([["strong", "weak"]]);
    const hard = [{ role: "user", content: "Question 9999: tell me something interesting about quantum and how it relates to music." }];
    const easy = [{ role: "user", content: "Question 9999: tell me something interesting about travel and how it relates to music." }];
    const h = router.predictPair(hard, "strong", "weak")!;
    const e = router.predictPair(easy, "strong", "weak")!;
    expect(h.gain).toBeGreaterThan(e.gain + 0.2);
    expect(h.differ).toBeGreaterThan(e.differ);
    const reverse = router.predictPair(hard, "weak", "strong")!;
    expect(reverse.win).toBeCloseTo(1 - h.win, 12);
    expect(reverse.differ).toBeCloseTo(h.differ, 12);
    expect(router.predictPair(hard, "strong", "middle")).toBeUndefined();
  });

  it("ranks the pair metric under cross-validation", () => {
    const cv = crossValidate(rows, 5, { epochs: 4, pairs: [["strong", "weak"]] });
    expect(cv.pairScores).toBeDefined();
    expect(pairReport(rows, cv, "strong", "weak", "pair-gain").apgr).toBeGreaterThan(0.8);
    expect(pairReport(rows, cv, "strong", "weak", "pair").apgr).toBeGreaterThan(0.8);
    // Without a head for the pair, the pair rankings fall back to the gap.
    expect(pairReport(rows, cv, "strong", "middle", "pair-gain").apgr).toBe(pairReport(rows, cv, "strong", "middle", "gap").apgr);
  });
});
