import { describe, it, expect } from "vitest";
import { extractFeatures } from "../src/features.js";
import { buildKnn, KnnIndex, DEFAULT_KNN_SETTINGS } from "../src/knn.js";
import { trainRouter } from "../src/train.js";
import { RouterModel } from "../src/model.js";
import { syntheticRows } from "./fixtures.js";

const termsOf = (text: string): number[] => {
  const terms: number[] = [];
  extractFeatures([{ role: "user", content: text }], "full", terms);
  return terms;
};

const docs = [
  "What is the derivative of x squared with respect to x?",
  "What is the integral of x squared with respect to x?",
  "Name the capital city of France and its population.",
  "Name the capital city of Germany and its river.",
  "How many legs does a spider have, and how many eyes?",
];
// Model 0 solves the calculus questions only; model 1 solves everything but the last; model 2 has no outcome on doc 4.
const scores = [
  [1, 1, 0],
  [1, 1, 1],
  [0, 1, 1],
  [0, 1, 0],
  [0, 0, undefined],
];

describe("knn index", () => {
  const json = buildKnn(docs.map(termsOf), scores, 3, { ...DEFAULT_KNN_SETTINGS, k: 2, shrink: 0.01 });
  const index = new KnnIndex(JSON.parse(JSON.stringify(json)), 3);

  it("estimates a model's score from the most similar prompts", () => {
    const calculus = index.estimate(termsOf("What is the second derivative of x squared with respect to x?"));
    expect(calculus.scores[0]).toBeGreaterThan(0.9);
    expect(calculus.maxSimilarity).toBeGreaterThan(0.3);
    const capitals = index.estimate(termsOf("Name the capital city of Italy."));
    expect(capitals.scores[0]).toBeLessThan(0.1);
    expect(capitals.scores[1]).toBeGreaterThan(0.9);
  });

  it("falls back to the mean score with no similar prompt, and skips missing outcomes", () => {
    const none = index.estimate(termsOf("zebra xylophone quartz"));
    expect(none.maxSimilarity).toBe(0);
    expect(none.scores[0]).toBeCloseTo(json.priors[0]!, 6);
    expect(json.priors[2]).toBeCloseTo(0.5, 6);
  });

  it("leaves out excluded prompts (leave-one-out during training)", () => {
    const q = termsOf(docs[0]!);
    const self = index.estimate(q).maxSimilarity;
    expect(self).toBeGreaterThan(0.5);
    expect(index.estimate(q, (d) => d <= 1).maxSimilarity).toBeLessThan(self / 2);
  });

  it("is deterministic", () => {
    expect(JSON.stringify(buildKnn(docs.map(termsOf), scores, 3))).toBe(JSON.stringify(buildKnn(docs.map(termsOf), scores, 3)));
  });
});

describe("routers with neighbour features", () => {
  const rows = syntheticRows(200);
  it("store an index by default and none when disabled; both predict in [0, 1]", () => {
    const withKnn = trainRouter(rows, { epochs: 2 });
    const without = trainRouter(rows, { epochs: 2, knn: false });
    expect(withKnn.knn?.docs).toBe(200);
    expect(without.knn).toBeUndefined();
    expect(withKnn.version).not.toBe(without.version);
    for (const json of [withKnn, without]) {
      const p = RouterModel.fromJSON(json).predict([{ role: "user", content: "tell me something interesting about quantum and music" }]);
      for (const m of json.models) {
        expect(p.predicted[m]).toBeGreaterThanOrEqual(0);
        expect(p.predicted[m]).toBeLessThanOrEqual(1);
      }
      expect(p.difficulty).toBeGreaterThanOrEqual(0);
      expect(p.difficulty).toBeLessThanOrEqual(1);
    }
  });
});
