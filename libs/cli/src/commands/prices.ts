import { readFileSync } from "node:fs";
import { create } from "@bufbuild/protobuf";
import { parse as parseYaml } from "yaml";
import { Bus, natsAuth } from "@switchyard/bus";
import { loadConfig, usdPerMtokToMicro } from "@switchyard/config";
import { events } from "@switchyard/proto";
import { createLogger } from "@switchyard/telemetry";

/** One row of a price table file, USD per million tokens. */
interface PriceRow {
  provider: string;
  model: string;
  input_usd_per_mtok: number;
  output_usd_per_mtok: number;
  cached_input_usd_per_mtok?: number;
}

/**
 * Reads a price table (YAML or JSON: a list of rows, or `{prices: [...]}`), naming the first bad
 * row and field. @throws Error
 */
export function parsePriceTable(text: string, file: string): PriceRow[] {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new Error(`${file}: not YAML or JSON: ${(err as Error).message.split("\n")[0]}`);
  }
  const rows = Array.isArray(doc) ? doc : (doc as { prices?: unknown } | null)?.prices;
  if (!Array.isArray(rows) || rows.length === 0) throw new Error(`${file}: expected a non-empty list of prices (or {prices: [...]})`);
  return rows.map((row: unknown, i: number) => {
    const r = row as Record<string, unknown>;
    const at = `${file}: prices[${i}]`;
    if (typeof r !== "object" || r === null) throw new Error(`${at}: must be an object`);
    for (const key of ["provider", "model"] as const) {
      if (typeof r[key] !== "string" || r[key] === "") throw new Error(`${at}.${key}: must be a non-empty string`);
    }
    for (const key of ["input_usd_per_mtok", "output_usd_per_mtok", "cached_input_usd_per_mtok"] as const) {
      const v = r[key];
      if (v === undefined && key === "cached_input_usd_per_mtok") continue;
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > 10_000) throw new Error(`${at}.${key}: must be a number from 0 to 10000 (USD per million tokens)`);
    }
    return r as unknown as PriceRow;
  });
}

/**
 * Reads an OpenRouter-style `/api/v1/models` document (`{data: [{id, pricing: {prompt, completion,
 * input_cache_read}}]}`, USD per token as strings) into price rows for the configured models of
 * one provider whose names equal OpenRouter ids. Returns the rows and the configured models it
 * found no price for.
 */
export function pricesFromOpenRouter(doc: unknown, provider: string, models: readonly string[]): { rows: PriceRow[]; missing: string[] } {
  const data = (doc as { data?: unknown } | null)?.data;
  if (!Array.isArray(data)) throw new Error('not an OpenRouter models document: expected {"data": [...]}');
  const perToken = (v: unknown, what: string, id: string): number | undefined => {
    if (v === undefined || v === null || v === "") return undefined;
    const n = typeof v === "number" ? v : Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`model "${id}": pricing.${what} "${String(v)}" is not a price`);
    return n * 1_000_000;
  };
  const byId = new Map<string, PriceRow>();
  for (const entry of data as { id?: unknown; pricing?: Record<string, unknown> }[]) {
    if (typeof entry?.id !== "string" || !entry.pricing) continue;
    const input = perToken(entry.pricing.prompt, "prompt", entry.id);
    const output = perToken(entry.pricing.completion, "completion", entry.id);
    if (input === undefined || output === undefined) continue;
    const cached = perToken(entry.pricing.input_cache_read, "input_cache_read", entry.id);
    byId.set(entry.id, { provider, model: entry.id, input_usd_per_mtok: input, output_usd_per_mtok: output, ...(cached === undefined ? {} : { cached_input_usd_per_mtok: cached }) });
  }
  const rows = models.flatMap((m) => (byId.has(m) ? [byId.get(m)!] : []));
  return { rows, missing: models.filter((m) => !byId.has(m)) };
}

const PRICES_USAGE = `usage: switchyard prices publish FILE [--source NAME]
       switchyard prices import-openrouter FILE|URL --provider NAME [--dry-run]
`;

/**
 * \`switchyard prices publish FILE\`: writes prices to the NATS KV bucket every policy replica
 * watches. \`switchyard prices import-openrouter\`: the same, with prices taken from an
 * OpenRouter-style models document for the configured models of one provider.
 */
export async function pricesCommand(argv: string[]): Promise<number> {
  const [sub, file, ...rest] = argv;
  if (sub === "import-openrouter" && file) return importOpenRouter(file, rest);
  if (sub !== "publish" || !file) {
    process.stderr.write(PRICES_USAGE);
    return 2;
  }
  let source = "cli";
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === "--source" && rest[i + 1]) source = rest[++i]!;
    else {
      process.stderr.write(`switchyard prices: unknown option "${rest[i]}"\n`);
      return 2;
    }
  }
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    process.stderr.write(`switchyard prices: cannot read ${file}\n`);
    return 2;
  }
  return publish(parsePriceTable(text, file), source);
}

async function importOpenRouter(sourceArg: string, rest: string[]): Promise<number> {
  let provider = "";
  let dryRun = false;
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === "--provider" && rest[i + 1]) provider = rest[++i]!;
    else if (rest[i] === "--dry-run") dryRun = true;
    else {
      process.stderr.write(`switchyard prices: unknown option "${rest[i]}"\n${PRICES_USAGE}`);
      return 2;
    }
  }
  if (!provider) {
    process.stderr.write(`switchyard prices: --provider is required (the configured provider whose model names are OpenRouter ids)\n`);
    return 2;
  }
  const { config } = loadConfig();
  const configured = config.providers.find((p) => p.name === provider);
  if (!configured) {
    process.stderr.write(`switchyard prices: no provider "${provider}" in the configuration\n`);
    return 2;
  }
  let text: string;
  if (/^https?:\/\//.test(sourceArg)) {
    const res = await fetch(sourceArg, { signal: AbortSignal.timeout(15_000) });
    if (!res.ok) throw new Error(`GET ${new URL(sourceArg).host}: HTTP ${res.status}`);
    text = await res.text();
  } else {
    try {
      text = readFileSync(sourceArg, "utf8");
    } catch {
      process.stderr.write(`switchyard prices: cannot read ${sourceArg}\n`);
      return 2;
    }
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new Error(`${sourceArg}: not JSON`);
  }
  const { rows, missing } = pricesFromOpenRouter(doc, provider, configured.models.map((m) => m.name));
  for (const m of missing) process.stderr.write(`switchyard prices: no OpenRouter price for ${provider}/${m}; left as it is\n`);
  if (rows.length === 0) {
    process.stderr.write("switchyard prices: nothing to publish\n");
    return 1;
  }
  if (dryRun) {
    process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
    return 0;
  }
  return publish(rows, "openrouter");
}

async function publish(rows: PriceRow[], source: string): Promise<number> {
  const { config } = loadConfig();
  const logger = createLogger({ service: "cli", level: "warn" });
  const bus = Bus.start({ url: config.nats.url, name: "switchyard-prices", priceBucket: config.nats.price_bucket, healthSubject: config.nats.health_subject, logger, auth: natsAuth(config.nats) });
  try {
    const now = BigInt(Date.now());
    await bus.putPrices(
      rows.map((r) =>
        create(events.PriceUpdateSchema, {
          provider: r.provider,
          model: r.model,
          inputMicroUsdPerMtok: usdPerMtokToMicro(r.input_usd_per_mtok),
          outputMicroUsdPerMtok: usdPerMtokToMicro(r.output_usd_per_mtok),
          cachedInputMicroUsdPerMtok: usdPerMtokToMicro(r.cached_input_usd_per_mtok ?? 0),
          effectiveAtUnixMs: now,
          source,
        }),
      ),
    );
    process.stdout.write(`published ${rows.length} price(s) to ${config.nats.price_bucket} at ${config.nats.url}\n`);
    return 0;
  } finally {
    await bus.close();
  }
}
