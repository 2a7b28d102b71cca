import { activateProviders, usdPerMtokToMicro, type Config, type ModelConfig, type ProviderConfig } from "@switchyard/config";
import type { events } from "@switchyard/proto";

/** One model's price, integer micro-dollars per million tokens, and where it came from. */
export interface ModelPrice {
  inputMicroUsdPerMtok: bigint;
  outputMicroUsdPerMtok: bigint;
  cachedInputMicroUsdPerMtok: bigint;
  source: string;
  effectiveAtMs: number;
}

/** A routable model: configured, on an active provider. */
export interface CatalogEntry {
  provider: ProviderConfig;
  model: ModelConfig;
  /** "provider/model", the name clients pin and responses report. */
  id: string;
}

/** The most a price may be: $10,000 per million tokens is far beyond any real model. */
const MAX_MICRO_PER_MTOK = 10_000n * 1_000_000n;

/**
 * Live prices of the routable models: seeded from the configuration, then replaced by PriceUpdates
 * from the NATS KV bucket. An update that is not valid is rejected (and the caller counts it),
 * never applied.
 */
export class PriceTable {
  readonly catalog: CatalogEntry[];
  private readonly prices = new Map<string, ModelPrice>();
  private readonly configured = new Map<string, ModelPrice>();

  constructor(config: Config, env: NodeJS.ProcessEnv) {
    this.catalog = activateProviders(config, env)
      .filter((a) => a.active)
      .flatMap((a) => a.provider.models.map((model) => ({ provider: a.provider, model, id: `${a.provider.name}/${model.name}` })));
    for (const e of this.catalog) {
      const price: ModelPrice = {
        inputMicroUsdPerMtok: usdPerMtokToMicro(e.model.input_usd_per_mtok),
        outputMicroUsdPerMtok: usdPerMtokToMicro(e.model.output_usd_per_mtok),
        cachedInputMicroUsdPerMtok: usdPerMtokToMicro(e.model.cached_input_usd_per_mtok ?? 0),
        source: "config",
        effectiveAtMs: 0,
      };
      this.prices.set(e.id, price);
      this.configured.set(e.id, price);
    }
  }

  get(id: string): ModelPrice | undefined {
    return this.prices.get(id);
  }

  /**
   * Applies a broadcast price, or (update undefined: the KV entry was deleted) returns to the
   * configured one. Returns why it was rejected, or undefined when applied.
   */
  apply(provider: string, model: string, update: events.PriceUpdate | undefined): string | undefined {
    const id = `${provider}/${model}`;
    if (!this.configured.has(id)) return `unknown model "${id}"`;
    if (!update) {
      this.prices.set(id, this.configured.get(id)!);
      return undefined;
    }
    if (update.provider !== provider || update.model !== model) return `payload names "${update.provider}/${update.model}" under key of "${id}"`;
    for (const [field, v] of [
      ["input", update.inputMicroUsdPerMtok],
      ["output", update.outputMicroUsdPerMtok],
      ["cached_input", update.cachedInputMicroUsdPerMtok],
    ] as const) {
      if (v < 0n) return `${field} price is negative`;
      if (v > MAX_MICRO_PER_MTOK) return `${field} price ${v} micro-USD/Mtok is absurd`;
    }
    const current = this.prices.get(id)!;
    const effectiveAtMs = Number(update.effectiveAtUnixMs);
    if (effectiveAtMs < current.effectiveAtMs) return "older than the price in effect";
    this.prices.set(id, {
      inputMicroUsdPerMtok: update.inputMicroUsdPerMtok,
      outputMicroUsdPerMtok: update.outputMicroUsdPerMtok,
      cachedInputMicroUsdPerMtok: update.cachedInputMicroUsdPerMtok,
      source: update.source || "nats",
      effectiveAtMs,
    });
    return undefined;
  }
}
