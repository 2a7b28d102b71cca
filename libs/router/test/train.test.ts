import { describe, it, expect } from "vitest";
import { trainRouter } from "../src/train.js";
import { RouterModel, tierFor, quantileOf } from "../src/model.js";
import { crossValidate, assignFolds, predictRows } from "../src/cv.js";
import { pairReport } from "../src/report.js";
import { syntheticRows } from "./fixtures.js";

describe("trainRouter", () => {
  const rows = syntheticRows(300);

  it("is deterministic: same rows, byte-identical router", () => {
    const a = JSON.stringify(trainRouter(rows, { epochs: 3 }));
    const b = JSON.stringify(trainRouter(rows, { epochs: 3 }));
    expect(a).toBe(b);
    expect(JSON.parse(a).version).toMatch(/^[0-9a-f]{16}$/);
  });

  it("finds a learnable signal and routes the hard topic to the strong model on unseen prompts", () => {
    // The heads alone (the neighbour estimate is averaged in by default and dilutes a single-word signal).
    const router = RouterModel.fromJSON(trainRouter(rows, { epochs: 8, knn: false }));
    const hard = router.predict([{ role: "user", content: "Question 9999: tell me something interesting about quantum and how it relates to music." }]);
    const easy = router.predict([{ role: "user", content: "Question 9999: tell me something interesting about travel and how it relates to music." }]);
    expect(hard.predicted["strong"]! - hard.predicted["weak"]!).toBeGreaterThan(0.3);
    const hardGap = hard.predicted["strong"]! - hard.predicted["weak"]!;
    const easyGap = easy.predicted["strong"]! - easy.predicted["weak"]!;
    expect(hardGap - easyGap).toBeGreaterThan(0.25);
    expect(hard.difficulty).toBeGreaterThan(easy.difficulty);
    const cv = crossValidate(rows, 5, { epochs: 4 });
    // About 28% of prompts need the strong model, so even an oracle's APGR is about 0.86.
    expect(pairReport(rows, cv, "strong", "weak", "gap").apgr).toBeGreaterThan(0.8);
    expect(pairReport(rows, cv, "strong", "weak", "random").apgr).toBeCloseTo(0.5, 9);
  });

  it("trains a head for a model missing on some rows, from the rows that have it", () => {
    const json = trainRouter(rows, { epochs: 2 });
    expect(json.models).toEqual(["strong", "weak", "middle"]);
    expect(json.heads["middle"]!.rows).toBe(200);
    expect(json.heads["strong"]!.rows).toBe(300);
    const p = RouterModel.fromJSON(json).predict([{ role: "user", content: "anything" }]);
    for (const model of json.models) expect(p.predicted[model]).toBeGreaterThanOrEqual(0);
    for (const model of json.models) expect(p.predicted[model]).toBeLessThanOrEqual(1);
  });

  it("ships tiers calibrated as difficulty quantiles", () => {
    const json = trainRouter(rows, { epochs: 2 });
    expect(json.tiers.map((t) => t.name)).toEqual(["simple", "standard", "complex"]);
    expect(json.tiers[2]!.maxDifficulty).toBe(1);
    expect(json.difficulty.knots).toHaveLength(101);
    const router = RouterModel.fromJSON(json);
    // The learned difficulty is calibrated on (leave-one-out predictions for) the training rows: the
    // median of fresh prompts from the same distribution sits near 0.5.
    const fresh = syntheticRows(300, 99);
    const difficulties = predictRows(router, fresh).difficulty.sort((a, b) => a - b);
    expect(difficulties[150]!).toBeGreaterThan(0.3);
    expect(difficulties[150]!).toBeLessThan(0.7);
  });
});

describe("tierFor and quantileOf", () => {
  const tiers = [
    { name: "simple", maxDifficulty: 0.4 },
    { name: "standard", maxDifficulty: 0.8 },
    { name: "complex", maxDifficulty: 0.95 },
  ];
  it("picks the first tier whose maxDifficulty covers the difficulty, else the last", () => {
    expect(tierFor(0, tiers)).toBe("simple");
    expect(tierFor(0.4, tiers)).toBe("simple");
    expect(tierFor(0.41, tiers)).toBe("standard");
    expect(tierFor(0.99, tiers)).toBe("complex");
    expect(() => tierFor(0.5, [])).toThrow(/at least one tier/);
  });
  it("maps raw values through quantile knots", () => {
    expect(quantileOf(0.5, [0, 0.5, 1])).toBe(0.5);
    expect(quantileOf(0.25, [0, 0.5, 1])).toBe(0.25);
    expect(quantileOf(-1, [0, 0.5, 1])).toBe(0);
    expect(quantileOf(2, [0, 0.5, 1])).toBe(1);
  });
});

describe("assignFolds", () => {
  it("is deterministic, balanced, and keeps duplicate questions together when grouped", () => {
    const rows = syntheticRows(100);
    rows.push({ ...rows[0]!, id: "dup" });
    expect(assignFolds(rows, 5, 1)).toEqual(assignFolds(rows, 5, 1));
    const counts = [0, 0, 0, 0, 0];
    for (const f of assignFolds(rows, 5, 1)) counts[f]!++;
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
    const grouped = assignFolds(rows, 5, 1, "grouped");
    expect(grouped[100]).toBe(grouped[0]);
  });
});
