import { describe, it, expect } from "vitest";
import { trainRouter } from "../src/train.js";
import { RouterModel } from "../src/model.js";
import { crossValidate } from "../src/cv.js";
import { reliability } from "../src/evaluate.js";
import { applyStage2, crossFitStage2, fitIsotonic, fitStage2, type Stage1Row } from "../src/stage2.js";
import { seededRandom } from "../src/hash.js";
import { extractFeatures } from "../src/features.js";
import { syntheticRows } from "./fixtures.js";

describe("reliability and expected calibration error", () => {
  it("is 0 for predictions that match the observed rate in every bin, and the gap otherwise", () => {
    expect(reliability([0.25, 0.25, 0.25, 0.25], [0, 0, 0, 1]).ece).toBeCloseTo(0, 12);
    const overconfident = reliability([0.9, 0.9, 0.9, 0.9], [1, 0, 1, 0]);
    expect(overconfident.ece).toBeCloseTo(0.4, 12);
    expect(overconfident.bins[9]).toMatchObject({ n: 4, predicted: 0.9, observed: 0.5 });
    expect(reliability([1], [1]).bins[9]!.n).toBe(1);
  });
});

describe("router files from before the chat work", () => {
  it("load and predict with the original features: no feature version, fallback or calibration in the file", () => {
    const rows = syntheticRows(200);
    const json = trainRouter(rows, { epochs: 2, featureVersion: 1 });
    expect(json.featureVersion).toBeUndefined();
    expect(json.fallback).toBeUndefined();
    expect(json.calibration).toBeUndefined();
    expect(json.difficulty.models).toBeUndefined();
    const router = RouterModel.fromJSON(JSON.parse(JSON.stringify(json)));
    expect(router.featureVersion).toBe(1);
    expect(router.hasStage2).toBe(false);
    // A follow-up turn is scored on version-1 features: the same vector as the version-1 extractor gives.
    const messages = [{ role: "user", content: "Question 1: tell me about quantum." }, { role: "assistant", content: "Sure." }, { role: "user", content: "More, please." }];
    const terms: number[] = [];
    const parts = router.scoreParts(extractFeatures(messages, "full", terms, 1).vector, undefined, terms);
    const p = router.predict(messages);
    router.models.forEach((m, j) => expect(p.predicted[m]).toBeCloseTo(parts.raw[j]!, 12));
  });
});

describe("stage 2", () => {
  it("calibrates an overconfident model: the isotonic map sends its 0.9s to what they are worth", () => {
    const random = seededRandom(3);
    const p: number[] = [];
    const y: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const truth = random();
      p.push(Math.min(1, truth * 0.5 + 0.5));
      y.push(random() < truth ? 1 : 0);
    }
    const map = fitIsotonic(p, y, p.map(() => 1));
    for (let k = 1; k < map.y.length; k++) expect(map.y[k]!).toBeGreaterThanOrEqual(map.y[k - 1]!);
    for (let k = 1; k < map.x.length; k++) expect(map.x[k]!).toBeGreaterThan(map.x[k - 1]!);
    expect(reliability(p, y).ece).toBeGreaterThan(0.15);
    const rows: Stage1Row[] = p.map((raw, i) => ({ source: "s", fold: i % 5, raw: [raw], difficulty: 0.5, evidence: 1, scores: [y[i]] }));
    for (const calibration of ["platt", "isotonic"] as const) {
      const calibrated = crossFitStage2(rows, ["m"], { gate: { weight: 0, evidence: 0 }, calibration });
      expect(reliability(calibrated.map((c) => c[0]!), y).ece).toBeLessThan(0.05);
    }
  });

  it("leans on the difficulty where neighbour evidence is thin, and the router file predicts exactly what stage 2 computes", () => {
    const rows = syntheticRows(300);
    const cv = crossValidate(rows, 5, { epochs: 3, featureVersion: 2 });
    const stage1: Stage1Row[] = rows.map((row, i) => ({ source: "syn", fold: cv.folds[i]!, raw: cv.raw![i]!, difficulty: cv.difficulty[i]!, evidence: cv.evidence![i]!, scores: cv.models.map((m) => row.outcomes[m]?.score) }));
    const stage2 = fitStage2(stage1, cv.models, { gate: { weight: 0.5, evidence: 0.3 } });
    // Harder prompts lower every model's fallback score, the weak model's most.
    const strong = stage2.fallback!.response["strong"]!;
    const weak = stage2.fallback!.response["weak"]!;
    expect(weak.slope).toBeLessThan(0);
    expect(weak.slope).toBeLessThan(strong.slope);

    const router = RouterModel.fromJSON(trainRouter(rows, { epochs: 3, featureVersion: 2, stage2 }));
    expect(router.hasStage2).toBe(true);
    const messages = [{ role: "user", content: "Question 77: tell me something interesting about topology and how it relates to cooking." }];
    const bare = RouterModel.fromJSON(trainRouter(rows, { epochs: 3, featureVersion: 2 }));
    expect(bare.hasStage2).toBe(false);
    const p = router.predict(messages);
    // Stage 1 of both routers is the same; stage 2 applied by hand gives the router's answer.
    const terms: number[] = [];
    const vector = extractFeatures(messages, "full", terms, 2).vector;
    const parts = bare.scoreParts(vector, undefined, terms);
    const expected = applyStage2(parts, router.models, stage2);
    router.models.forEach((m, j) => expect(p.predicted[m]).toBeCloseTo(expected[j]!, 12));
  });
});
