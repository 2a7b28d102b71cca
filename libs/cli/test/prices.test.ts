import { describe, expect, it } from "vitest";
import { parsePriceTable, pricesFromOpenRouter } from "../src/commands/prices.js";

describe("price tables", () => {
  it("reads YAML or JSON rows and names the first bad field", () => {
    expect(parsePriceTable("- {provider: sim, model: a, input_usd_per_mtok: 0.1, output_usd_per_mtok: 0.4}", "p.yaml")).toHaveLength(1);
    expect(parsePriceTable('{"prices": [{"provider": "sim", "model": "a", "input_usd_per_mtok": 1, "output_usd_per_mtok": 2}]}', "p.json")).toHaveLength(1);
    expect(() => parsePriceTable("- {provider: sim, model: a, input_usd_per_mtok: -1, output_usd_per_mtok: 0.4}", "p.yaml")).toThrow(
      "p.yaml: prices[0].input_usd_per_mtok: must be a number from 0 to 10000 (USD per million tokens)",
    );
    expect(() => parsePriceTable("- {model: a, input_usd_per_mtok: 1, output_usd_per_mtok: 1}", "p.yaml")).toThrow("p.yaml: prices[0].provider: must be a non-empty string");
    expect(() => parsePriceTable("[]", "p.yaml")).toThrow(/non-empty list/);
  });

  it("imports OpenRouter per-token prices for the configured models", () => {
    const doc = {
      data: [
        { id: "openai/gpt-4o-mini", pricing: { prompt: "0.00000015", completion: "0.0000006", input_cache_read: "0.000000075" } },
        { id: "meta-llama/llama-3-70b", pricing: { prompt: "0.00000059", completion: "0.00000079" } },
        { id: "free/model", pricing: { prompt: "0", completion: "0" } },
      ],
    };
    const { rows, missing } = pricesFromOpenRouter(doc, "openrouter", ["openai/gpt-4o-mini", "free/model", "not/listed"]);
    expect(rows).toEqual([
      { provider: "openrouter", model: "openai/gpt-4o-mini", input_usd_per_mtok: 0.15, output_usd_per_mtok: 0.6, cached_input_usd_per_mtok: 0.075 },
      { provider: "openrouter", model: "free/model", input_usd_per_mtok: 0, output_usd_per_mtok: 0 },
    ]);
    expect(missing).toEqual(["not/listed"]);
    expect(() => pricesFromOpenRouter({ data: [{ id: "x", pricing: { prompt: "abc", completion: "1" } }] }, "o", ["x"])).toThrow('model "x": pricing.prompt "abc" is not a price');
    expect(() => pricesFromOpenRouter({ models: [] }, "o", [])).toThrow(/not an OpenRouter models document/);
  });
});
