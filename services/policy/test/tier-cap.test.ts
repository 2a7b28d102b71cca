import { describe, expect, it } from "vitest";
import { parseConfig } from "@switchyard/config";
import { TopTierCap } from "../src/tier-cap.js";

const config = parseConfig(`
tiers:
  - { name: simple, max_difficulty: 0.4 }
  - { name: standard, max_difficulty: 0.8 }
  - { name: complex, max_difficulty: 1 }
providers:
  - { name: a, kind: simulator, enabled: true, models: [{ name: m, input_usd_per_mtok: 1, output_usd_per_mtok: 1, tiers: [simple, standard, complex] }] }
tenants:
  - { name: capped, max_top_tier_share: 0.2 }
  - { name: free }
`);

describe("top-tier cap", () => {
  it("holds a tenant that sends only top-tier requests to its share, over any window of recent requests", () => {
    const cap = new TopTierCap(config, 100);
    const tiers: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const a = cap.admit("capped", "complex");
      a.commit();
      tiers.push(a.tier);
    }
    for (let start = 0; start + 100 <= tiers.length; start += 50) {
      const share = tiers.slice(start, start + 100).filter((t) => t === "complex").length / 100;
      expect(share).toBeLessThanOrEqual(0.2);
    }
    expect(tiers.filter((t) => t === "complex").length).toBeGreaterThanOrEqual(195); // the cap, not a blanket refusal
    expect(new Set(tiers)).toEqual(new Set(["complex", "standard"]));
  });

  it("says why it moved a request down, and leaves other tenants and lower tiers alone", () => {
    const cap = new TopTierCap(config, 10);
    const admit = (tenant: string, tier: string) => {
      const a = cap.admit(tenant, tier);
      a.commit();
      return { tier: a.tier, ...(a.note ? { note: a.note } : {}) };
    };
    expect(admit("capped", "complex")).toEqual({ tier: "complex" });
    expect(admit("capped", "complex")).toEqual({ tier: "complex" }); // 2 of a window of 10 = 20%
    const moved = admit("capped", "complex");
    expect(moved.tier).toBe("standard");
    expect(moved.note).toMatch(/tenant capped is at its top-tier cap \(20% of recent requests\)/);
    expect(admit("capped", "simple")).toEqual({ tier: "simple" });
    for (let i = 0; i < 20; i++) expect(admit("free", "complex").tier).toBe("complex");
  });

  it("does not count a request that was not routed", () => {
    const cap = new TopTierCap(config, 10);
    for (let i = 0; i < 5; i++) cap.admit("capped", "complex"); // planning failed: never committed
    expect(cap.admit("capped", "complex").tier).toBe("complex");
  });
});

describe("plan reuse and the cap", () => {
  it("says a capped tenant's plans depend on its traffic, and an uncapped one's do not", () => {
    const cap = new TopTierCap(config);
    expect(cap.admit("capped", "simple").capped).toBe(true);
    expect(cap.admit("nobody-capped-me", "complex").capped).toBe(false);
  });
});
