import type { events } from "@switchyard/proto";

/**
 * Why a usage record is refused. A bounded set (it labels the rejected-records metric): the field
 * at fault, or `undecodable` for a message that is not a UsageRecord at all, or `refused` for one
 * the database would not store.
 */
export type RejectionReason =
  | "undecodable"
  | "refused"
  | "request_id"
  | "time"
  | "tenant"
  | "text"
  | "tokens"
  | "money"
  | "latency"
  | "status"
  | "fallbacks";

/** A record that failed validation: which rule, and a message naming the field. */
export interface Rejection {
  reason: RejectionReason;
  message: string;
}

/** Limits beyond which a value is not a real completion but a bug or an attack. */
export const RECORD_LIMITS = {
  requestIdChars: 256,
  textChars: 1_024,
  /** A billion tokens in one completion. */
  tokens: 1_000_000_000n,
  /** A million dollars for one completion, in micro-dollars. */
  microUsd: 1_000_000_000_000n,
  /** A day, in milliseconds. */
  latencyMs: 86_400_000,
  fallbacks: 1_000,
  /** Records from before 2020 are clock errors. */
  earliestMs: Date.UTC(2020, 0, 1),
  /** Records from more than a day in the future are clock errors. */
  futureSlackMs: 86_400_000,
} as const;

const TEXT_FIELDS = [
  "tenant",
  "keyId",
  "api",
  "requestedModel",
  "tier",
  "model",
  "provider",
  "reason",
  "taskType",
  "cache",
  "cacheKind",
  "baselineModel",
  "errorCode",
  "traceId",
  "finishReason",
] as const satisfies readonly (keyof events.UsageRecord)[];

const PROTO_NAME: Record<string, string> = {
  requestId: "request_id",
  timeUnixMs: "time_unix_ms",
  keyId: "key_id",
  requestedModel: "requested_model",
  taskType: "task_type",
  cacheKind: "cache_kind",
  baselineModel: "baseline_model",
  errorCode: "error_code",
  traceId: "trace_id",
  finishReason: "finish_reason",
  inputTokens: "input_tokens",
  outputTokens: "output_tokens",
  cachedInputTokens: "cached_input_tokens",
  costMicroUsd: "cost_micro_usd",
  baselineMicroUsd: "baseline_micro_usd",
  savedMicroUsd: "saved_micro_usd",
  cacheSavedMicroUsd: "cache_saved_micro_usd",
  ttftMs: "ttft_ms",
  totalMs: "total_ms",
};

const field = (name: string): string => PROTO_NAME[name] ?? name;

/** Text Postgres can store: no NUL character, no lone UTF-16 surrogate. */
function storableText(s: string): boolean {
  return !s.includes("\u0000") && !LONE_SURROGATE.test(s);
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Checks one usage record before it is written; undefined when it is fit for the books. Refuses
 * what cannot be a real completion (no request id or tenant, negative tokens or cost, a time
 * years off, latencies over a day, an HTTP status that does not exist) and text Postgres cannot
 * hold, so that one bad record can never block a batch.
 */
export function checkUsageRecord(r: events.UsageRecord, now = Date.now()): Rejection | undefined {
  const L = RECORD_LIMITS;
  if (!r.requestId.trim()) return { reason: "request_id", message: "request_id is required" };
  if (r.requestId.length > L.requestIdChars || !storableText(r.requestId)) {
    return { reason: "request_id", message: `request_id must be at most ${L.requestIdChars} characters of valid text` };
  }
  if (r.timeUnixMs < BigInt(L.earliestMs) || r.timeUnixMs > BigInt(now + L.futureSlackMs)) {
    return { reason: "time", message: `time_unix_ms ${r.timeUnixMs} is not a plausible time (2020 to tomorrow)` };
  }
  if (!r.tenant.trim()) return { reason: "tenant", message: "tenant is required" };
  for (const name of TEXT_FIELDS) {
    const v = r[name];
    if (v.length > L.textChars || !storableText(v)) {
      return { reason: name === "tenant" ? "tenant" : "text", message: `${field(name)} must be at most ${L.textChars} characters of valid text` };
    }
  }
  for (const name of ["inputTokens", "outputTokens", "cachedInputTokens"] as const) {
    const v = r[name];
    if (v < 0n) return { reason: "tokens", message: `${field(name)} must not be negative` };
    if (v > L.tokens) return { reason: "tokens", message: `${field(name)} ${v} is over ${L.tokens}` };
  }
  for (const name of ["costMicroUsd", "baselineMicroUsd", "cacheSavedMicroUsd"] as const) {
    const v = r[name];
    if (v < 0n) return { reason: "money", message: `${field(name)} must not be negative` };
    if (v > L.microUsd) return { reason: "money", message: `${field(name)} ${v} is over ${L.microUsd} micro-dollars` };
  }
  // A saving is negative when the answer cost more than the baseline would have.
  if (r.savedMicroUsd > L.microUsd || r.savedMicroUsd < -L.microUsd) {
    return { reason: "money", message: `saved_micro_usd ${r.savedMicroUsd} is beyond ±${L.microUsd} micro-dollars` };
  }
  for (const name of ["ttftMs", "totalMs"] as const) {
    const v = r[name];
    if (!Number.isFinite(v) || v < 0 || v > L.latencyMs) return { reason: "latency", message: `${field(name)} must be a number of milliseconds in [0, ${L.latencyMs}]` };
  }
  if (!Number.isInteger(r.status) || r.status < 100 || r.status > 599) return { reason: "status", message: `status ${r.status} is not an HTTP status (100 to 599)` };
  if (r.fallbacks < 0 || r.fallbacks > L.fallbacks) return { reason: "fallbacks", message: `fallbacks must be in [0, ${L.fallbacks}]` };
  return undefined;
}
