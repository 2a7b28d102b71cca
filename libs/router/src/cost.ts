/** What a call costs: the real per-row cost where the data has it, else prices and estimated tokens. */
import type { ChatMessage } from "./features.js";
import type { PriceTable, RoutingRow } from "./data.js";

/** Output tokens assumed when neither the row nor the training data says how long answers are. */
export const DEFAULT_OUTPUT_TOKENS = 256;

/** A model's expected cost of one call: `perInputToken * inputTokens + perCall` (USD). */
export interface CostRate {
  perInputToken: number;
  perCall: number;
}

/** Expected-cost rates by model name, as a router stores them. */
export type CostRates = Record<string, CostRate>;

/** Estimated tokens of a text: chars/4. */
export function estimateTokens(chars: number): number {
  return chars / 4;
}

/** Characters of all messages' content. */
export function promptChars(messages: readonly ChatMessage[]): number {
  let chars = 0;
  for (const m of messages) chars += typeof m.content === "string" ? m.content.length : 0;
  return chars;
}

/**
 * The cost of sending a row's prompt to a model, for evaluation: the row's `cost_usd` when given,
 * else the price table with input tokens chars/4 and output tokens `output_chars`/4 (or the
 * default), else the router's expected-cost rate; undefined when nothing is known.
 */
export function rowCost(row: RoutingRow, model: string, prices?: PriceTable, rates?: CostRates): number | undefined {
  const outcome = row.outcomes[model];
  if (outcome && typeof outcome.cost_usd === "number") return outcome.cost_usd;
  const inputTokens = estimateTokens(promptChars(row.messages));
  const price = prices?.[model];
  if (price) {
    const outputTokens = outcome && typeof outcome.output_chars === "number" ? estimateTokens(outcome.output_chars) : DEFAULT_OUTPUT_TOKENS;
    return (inputTokens * price.input_per_mtok + outputTokens * price.output_per_mtok) / 1e6;
  }
  const rate = rates?.[model];
  if (rate) return rate.perInputToken * inputTokens + rate.perCall;
  return undefined;
}

/**
 * Fits expected-cost rates per model from training rows: with per-call costs, a least-squares line
 * (non-negative) of cost over estimated input tokens; else from the price table, with the mean
 * observed output length (or the default) as output tokens. Models with neither are left out.
 */
export function fitCostRates(rows: readonly RoutingRow[], models: readonly string[], prices?: PriceTable): CostRates {
  const rates: CostRates = {};
  for (const model of models) {
    let n = 0;
    let sx = 0;
    let sy = 0;
    let sxx = 0;
    let sxy = 0;
    let outputChars = 0;
    let outputCount = 0;
    for (const row of rows) {
      const outcome = row.outcomes[model];
      if (!outcome) continue;
      if (typeof outcome.output_chars === "number") {
        outputChars += outcome.output_chars;
        outputCount++;
      }
      if (typeof outcome.cost_usd !== "number") continue;
      const x = estimateTokens(promptChars(row.messages));
      n++;
      sx += x;
      sy += outcome.cost_usd;
      sxx += x * x;
      sxy += x * outcome.cost_usd;
    }
    if (n > 0) {
      const varX = sxx - (sx * sx) / n;
      let slope = varX > 1e-12 ? (sxy - (sx * sy) / n) / varX : 0;
      let intercept = (sy - slope * sx) / n;
      if (slope < 0) {
        slope = 0;
        intercept = sy / n;
      } else if (intercept < 0) {
        intercept = 0;
        slope = sxx > 0 ? sxy / sxx : 0;
      }
      rates[model] = { perInputToken: round(slope), perCall: round(intercept) };
      continue;
    }
    const price = prices?.[model];
    if (price) {
      const outputTokens = outputCount > 0 ? estimateTokens(outputChars / outputCount) : DEFAULT_OUTPUT_TOKENS;
      rates[model] = { perInputToken: round(price.input_per_mtok / 1e6), perCall: round((outputTokens * price.output_per_mtok) / 1e6) };
    }
  }
  return rates;
}

function round(x: number): number {
  return Number(x.toPrecision(6));
}
