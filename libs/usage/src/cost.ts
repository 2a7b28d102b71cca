/** Token counts that cost money. Cached input tokens are a subset of input tokens. */
export interface BillableUsage {
  inputTokens: bigint;
  outputTokens: bigint;
  cachedInputTokens?: bigint;
}

/** A price in integer micro-dollars per million tokens. */
export interface MicroPrice {
  inputMicroUsdPerMtok: bigint;
  outputMicroUsdPerMtok: bigint;
  /** 0 = cached input costs the same as input. */
  cachedInputMicroUsdPerMtok: bigint;
}

const MILLION = 1_000_000n;

/**
 * Cost of a completion in integer micro-dollars, rounded half up once on the total (rounding each
 * part would drift on cheap models). Integer arithmetic throughout: no float ever touches money.
 */
export function costMicroUsd(usage: BillableUsage, price: MicroPrice): bigint {
  const cached = min(usage.cachedInputTokens ?? 0n, usage.inputTokens);
  const cachedPrice = price.cachedInputMicroUsdPerMtok > 0n ? price.cachedInputMicroUsdPerMtok : price.inputMicroUsdPerMtok;
  const scaled =
    (usage.inputTokens - cached) * price.inputMicroUsdPerMtok +
    cached * cachedPrice +
    usage.outputTokens * price.outputMicroUsdPerMtok;
  return (scaled + MILLION / 2n) / MILLION;
}

/** Micro-dollars as a decimal USD string with six places, e.g. 1234n -> "0.001234". */
export function formatUsd(microUsd: bigint): string {
  const negative = microUsd < 0n;
  const abs = negative ? -microUsd : microUsd;
  const whole = abs / MILLION;
  const frac = (abs % MILLION).toString().padStart(6, "0");
  return `${negative ? "-" : ""}${whole}.${frac}`;
}

function min(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}
