import { activateProviders, usdPerMtokToMicro, type Config } from "@switchyard/config";
import type { events } from "@switchyard/proto";
import { costMicroUsd, type MicroPrice } from "@switchyard/usage/cost";

/**
 * The prices the gateway measures savings with: the configuration's, replaced by every price
 * broadcast (the same table the policy routes on). Each tenant has a baseline model, what its
 * requests would have cost without routing: `tenants[].baseline_model`, by default the most
 * expensive model of the top tier (input plus output price per million tokens).
 */
export class PriceBook {
  private readonly prices = new Map<string, MicroPrice>();
  private readonly baselines = new Map<string, string>();
  private readonly defaultBaseline: string;

  constructor(config: Config, env: NodeJS.ProcessEnv = process.env) {
    for (const p of config.providers) {
      for (const m of p.models) {
        this.prices.set(`${p.name}/${m.name}`, {
          inputMicroUsdPerMtok: usdPerMtokToMicro(m.input_usd_per_mtok),
          outputMicroUsdPerMtok: usdPerMtokToMicro(m.output_usd_per_mtok),
          cachedInputMicroUsdPerMtok: m.cached_input_usd_per_mtok === undefined ? 0n : usdPerMtokToMicro(m.cached_input_usd_per_mtok),
        });
      }
    }
    this.defaultBaseline = topTierMostExpensive(config, env);
    for (const t of config.tenants) this.baselines.set(t.name, t.baseline_model ?? this.defaultBaseline);
  }

  /** A price broadcast (undefined: the entry was deleted, the configuration's price stays). */
  update(provider: string, model: string, update: events.PriceUpdate | undefined): void {
    if (!update) return;
    this.prices.set(`${provider}/${model}`, {
      inputMicroUsdPerMtok: update.inputMicroUsdPerMtok,
      outputMicroUsdPerMtok: update.outputMicroUsdPerMtok,
      cachedInputMicroUsdPerMtok: update.cachedInputMicroUsdPerMtok,
    });
  }

  /**
   * What these tokens would cost on the most expensive price of any model (input and output
   * separately): an admission's hold, which no route the request can take costs more than, for the
   * tokens estimated.
   */
  mostExpensiveCost(inputTokens: number, outputTokens: number): bigint {
    let input = 0n;
    let output = 0n;
    for (const p of this.prices.values()) {
      if (p.inputMicroUsdPerMtok > input) input = p.inputMicroUsdPerMtok;
      if (p.outputMicroUsdPerMtok > output) output = p.outputMicroUsdPerMtok;
    }
    return costMicroUsd({ inputTokens: BigInt(inputTokens), outputTokens: BigInt(outputTokens) }, { inputMicroUsdPerMtok: input, outputMicroUsdPerMtok: output, cachedInputMicroUsdPerMtok: 0n });
  }

  /** The baseline model of a tenant ("provider/model"). */
  baselineModel(tenant: string): string {
    return this.baselines.get(tenant) ?? this.defaultBaseline;
  }

  /** What these tokens would have cost on the tenant's baseline model (0 when its price is unknown). */
  baselineCost(tenant: string, usage: { inputTokens: number; outputTokens: number; cachedInputTokens: number }): bigint {
    const price = this.prices.get(this.baselineModel(tenant));
    if (!price) return 0n;
    return costMicroUsd({ inputTokens: BigInt(usage.inputTokens), outputTokens: BigInt(usage.outputTokens), cachedInputTokens: BigInt(usage.cachedInputTokens) }, price);
  }
}

/** The top tier's most expensive model, among the providers that are on (all configured ones if none is). */
function topTierMostExpensive(config: Config, env: NodeJS.ProcessEnv): string {
  const top = config.tiers[config.tiers.length - 1]!.name;
  const active = new Set(activateProviders(config, env).filter((a) => a.active).map((a) => a.provider.name));
  let best = "";
  let bestPrice = -1;
  for (const onlyActive of [true, false]) {
    for (const p of config.providers) {
      if (onlyActive && !active.has(p.name)) continue;
      for (const m of p.models) {
        if (!m.tiers.includes(top)) continue;
        const price = m.input_usd_per_mtok + m.output_usd_per_mtok;
        if (price > bestPrice) {
          best = `${p.name}/${m.name}`;
          bestPrice = price;
        }
      }
    }
    if (best) return best;
  }
  // No model serves the top tier: the most expensive of all.
  for (const p of config.providers) {
    for (const m of p.models) {
      const price = m.input_usd_per_mtok + m.output_usd_per_mtok;
      if (price > bestPrice) {
        best = `${p.name}/${m.name}`;
        bestPrice = price;
      }
    }
  }
  return best;
}
