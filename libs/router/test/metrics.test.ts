import { describe, it, expect } from "vitest";
import { convexHull, multiMetrics, pairMetrics, qualityAtCost, type MultiItem, type PairItem } from "../src/evaluate.js";

// (strong, weak) outcomes: strong 3/4, weak 1/4.
const outcomes: [number, number][] = [
  [1, 0],
  [1, 1],
  [0, 0],
  [1, 0],
];
const items = (score: (s: number, w: number, i: number) => number): PairItem[] => outcomes.map(([s, w], i) => ({ strong: s, weak: w, routeScore: score(s, w, i) }));

describe("pairMetrics", () => {
  it("gives an oracle the hand-computed APGR, CPTs and 95% point", () => {
    const m = pairMetrics(items((s, w) => s - w));
    expect(m.strongQuality).toBe(0.75);
    expect(m.weakQuality).toBe(0.25);
    // PGR rises 0 → 1 over x in [0, 0.5], then stays at 1: area 0.25 + 0.5.
    expect(m.apgr).toBeCloseTo(0.75, 12);
    expect(m.cpt50).toBeCloseTo(0.25, 12);
    expect(m.cpt80).toBeCloseTo(0.4, 12);
    // 95% of 0.75 = 0.7125, PGR 0.925, reached at x = 0.4625.
    expect(m.strongShareAt95).toBeCloseTo(0.4625, 12);
    expect(m.callSavingAt95).toBeCloseTo(0.5375, 12);
  });

  it("scores random routing (all ties) exactly 0.5", () => {
    const m = pairMetrics(items(() => 0));
    expect(m.apgr).toBeCloseTo(0.5, 12);
    expect(m.cpt50).toBeCloseTo(0.5, 12);
    expect(m.cpt80).toBeCloseTo(0.8, 12);
  });

  it("scores an inverted oracle below random", () => {
    expect(pairMetrics(items((s, w) => w - s)).apgr).toBeLessThan(0.5);
  });

  it("computes the dollar saving at 95% quality from per-call costs", () => {
    const priced = items((s, w) => s - w).map((it) => ({ ...it, strongCost: 1, weakCost: 0 }));
    const m = pairMetrics(priced);
    expect(m.costSavingAt95).toBeCloseTo(0.5375, 12);
  });
});

describe("multiMetrics", () => {
  const models = ["cheap", "mid", "best"];
  // Two prompts: "cheap" answers the first, only "best" the second.
  const rows: MultiItem[] = [
    { predicted: [0.9, 0.9, 0.9], expectedCost: [1, 2, 10], score: [1, 1, 1], cost: [1, 2, 10] },
    { predicted: [0.1, 0.2, 0.9], expectedCost: [1, 2, 10], score: [0, 0, 1], cost: [1, 2, 10] },
  ];

  it("finds every single model's point, their hull, and where the router matches the best model", () => {
    const m = multiMetrics(rows, models, [0, 0.01, 1, Infinity]);
    expect(m.models.map((p) => [p.model, p.cost, p.quality])).toEqual([
      ["cheap", 1, 0.5],
      ["mid", 2, 0.5],
      ["best", 10, 1],
    ]);
    expect(m.hull.map((p) => p.model)).toEqual(["cheap", "best"]);
    expect(m.best.model).toBe("best");
    // λ = 0.01: cheap on prompt 1 (0.9 - 0.01 > 0.9 - 0.1), best on prompt 2: quality 1 at cost 5.5.
    expect(m.matchBest?.cost).toBeCloseTo(5.5, 12);
    expect(m.matchBestCostRatio).toBeCloseTo(0.55, 12);
    expect(m.curve[m.curve.length - 1]).toMatchObject({ cost: 1, quality: 0.5 });
  });

  it("interpolates the hull", () => {
    const hull = convexHull([
      { cost: 1, quality: 0.5 },
      { cost: 2, quality: 0.5 },
      { cost: 3, quality: 0.6 },
      { cost: 10, quality: 1 },
    ]);
    expect(hull).toEqual([
      { cost: 1, quality: 0.5 },
      { cost: 10, quality: 1 },
    ]);
    expect(qualityAtCost(hull, 5.5)).toBeCloseTo(0.75, 12);
    expect(qualityAtCost(hull, 0.5)).toBeUndefined();
  });
});
