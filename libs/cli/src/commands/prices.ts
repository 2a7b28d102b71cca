import { readFileSync } from "node:fs";
import { create } from "@bufbuild/protobuf";
import { parse as parseYaml } from "yaml";
import { Bus } from "@switchyard/bus";
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

/** `switchyard prices publish FILE [--source NAME]`: writes prices to the NATS KV bucket every policy replica watches. */
export async function pricesCommand(argv: string[]): Promise<number> {
  const [sub, file, ...rest] = argv;
  if (sub !== "publish" || !file) {
    process.stderr.write("usage: switchyard prices publish FILE [--source NAME]\n");
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
  const rows = parsePriceTable(text, file);
  const { config } = loadConfig();
  const logger = createLogger({ service: "cli", level: "warn" });
  const bus = Bus.start({ url: config.nats.url, name: "switchyard-prices", priceBucket: config.nats.price_bucket, healthSubject: config.nats.health_subject, logger });
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
