import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { events } from "@switchyard/proto";
import { DatabaseQueryError, isDataError, type Database, type Row } from "./database.js";

/** Columns of `usage_records` besides `time`, with their SQL type and UsageRecord field. */
const COLUMNS = [
  ["request_id", "text", "requestId"],
  ["tenant", "text", "tenant"],
  ["key_id", "text", "keyId"],
  ["api", "text", "api"],
  ["requested_model", "text", "requestedModel"],
  ["tier", "text", "tier"],
  ["model", "text", "model"],
  ["provider", "text", "provider"],
  ["reason", "text", "reason"],
  ["task_type", "text", "taskType"],
  ["fallbacks", "integer", "fallbacks"],
  ["cache", "text", "cache"],
  ["cache_kind", "text", "cacheKind"],
  ["input_tokens", "bigint", "inputTokens"],
  ["output_tokens", "bigint", "outputTokens"],
  ["cached_input_tokens", "bigint", "cachedInputTokens"],
  ["usage_estimated", "boolean", "usageEstimated"],
  ["cost_micro_usd", "bigint", "costMicroUsd"],
  ["baseline_micro_usd", "bigint", "baselineMicroUsd"],
  ["saved_micro_usd", "bigint", "savedMicroUsd"],
  ["cache_saved_micro_usd", "bigint", "cacheSavedMicroUsd"],
  ["baseline_model", "text", "baselineModel"],
  ["ttft_ms", "double precision", "ttftMs"],
  ["total_ms", "double precision", "totalMs"],
  ["status", "integer", "status"],
  ["error_code", "text", "errorCode"],
  ["trace_id", "text", "traceId"],
  ["finish_reason", "text", "finishReason"],
  ["streamed", "boolean", "streamed"],
] as const satisfies readonly (readonly [string, string, keyof events.UsageRecord])[];

const COLUMN_NAMES = ["time", ...COLUMNS.map(([c]) => c)].join(", ");

// One statement for a whole batch, whatever its size: the records travel as one JSON array
// parameter (Postgres caps a statement at 65,535 parameters; a VALUES list of 500 records with
// 30 columns each is close to a third of that). Strings, bigints and floats keep their exact values.
const INSERT_SQL = `insert into usage_records (${COLUMN_NAMES})
select ${["r.time", ...COLUMNS.map(([c]) => `r.${c}`)].join(", ")}
from jsonb_to_recordset($1::jsonb) as r(time timestamptz, ${COLUMNS.map(([c, t]) => `${c} ${t}`).join(", ")})
on conflict (request_id) do nothing
returning request_id`;

const SELECT_RECORD = `(extract(epoch from time) * 1000)::int8 as time_unix_ms, ${COLUMNS.map(([c]) => c).join(", ")}`;

function toJson(r: events.UsageRecord): Record<string, unknown> {
  const out: Record<string, unknown> = { time: new Date(Number(r.timeUnixMs)).toISOString() };
  for (const [column, , fieldName] of COLUMNS) {
    const v = r[fieldName];
    out[column] = typeof v === "bigint" ? v.toString() : v;
  }
  return out;
}

function fromRow(row: Row): events.UsageRecord {
  const init: Record<string, unknown> = { timeUnixMs: row["time_unix_ms"] };
  for (const [column, , fieldName] of COLUMNS) init[fieldName] = row[column];
  return create(events.UsageRecordSchema, init as MessageInitShape<typeof events.UsageRecordSchema>);
}

/** What one write did. Every record given is in exactly one of the three. */
export interface WriteOutcome {
  /** Request ids written now. */
  written: Set<string>;
  /** Records whose request id was already in the books (or earlier in the same batch). */
  duplicates: number;
  /** Records the database refused, by their index in the batch, with its message. */
  refused: Map<number, string>;
}

/** How usage is broken down. */
export type UsageDimension = "model" | "tier" | "day" | "hour" | "tenant" | "key" | "cache" | "task_type" | "reason";

const DIMENSION_SQL: Record<UsageDimension, string> = {
  model: "model",
  tier: "tier",
  day: "to_char(time at time zone 'UTC', 'YYYY-MM-DD')",
  hour: `to_char(time at time zone 'UTC', 'YYYY-MM-DD"T"HH24')`,
  tenant: "tenant",
  key: "key_id",
  cache: "cache",
  task_type: "task_type",
  // The decision itself: the reason up to its first "; " (the notes after it, fallbacks and
  // admission, vary by request), without the parts that vary within one decision (a semantic
  // hit's similarity, how many candidates met the target).
  reason: `case when reason <> '' then regexp_replace(regexp_replace(split_part(reason, '; ', 1),
      ' \\(similarity [0-9.]+\\)', '', 'g'), 'of [0-9]+ candidate\\(s\\)', 'of the candidates', 'g')
    when status >= 400 then 'not routed (' || case when error_code <> '' then error_code else status::text end || ')'
    else '(none given)' end`,
};

/** Which records a usage report covers: [sinceMs, untilMs), optionally one tenant and one key. */
export interface UsageQuery {
  sinceMs: bigint;
  untilMs: bigint;
  /** undefined: every tenant. */
  tenant?: string | undefined;
  keyId?: string | undefined;
  groupBy?: UsageDimension | undefined;
  /** Only the count and the cost (no groups): see UsageRequest.cost_only. */
  costOnly?: boolean | undefined;
}

/** Aggregates over a set of records; money in micro-dollars. */
export interface UsageFigures {
  requests: bigint;
  errors: bigint;
  inputTokens: bigint;
  outputTokens: bigint;
  costMicroUsd: bigint;
  baselineMicroUsd: bigint;
  savedMicroUsd: bigint;
  cacheHits: bigint;
  cacheSavedMicroUsd: bigint;
  ttftP50Ms: number;
  ttftP95Ms: number;
  totalP50Ms: number;
  totalP95Ms: number;
}

/** Totals over the period and, when grouped, one entry per group. */
export interface UsageReport {
  totals: UsageFigures;
  groups: { key: string; totals: UsageFigures }[];
}

const AGGREGATES = `count(*)::int8 as requests,
  (count(*) filter (where status >= 400))::int8 as errors,
  coalesce(sum(input_tokens), 0)::int8 as input_tokens,
  coalesce(sum(output_tokens), 0)::int8 as output_tokens,
  coalesce(sum(cost_micro_usd), 0)::int8 as cost_micro_usd,
  coalesce(sum(baseline_micro_usd), 0)::int8 as baseline_micro_usd,
  coalesce(sum(saved_micro_usd), 0)::int8 as saved_micro_usd,
  (count(*) filter (where cache = 'hit'))::int8 as cache_hits,
  coalesce(sum(cache_saved_micro_usd), 0)::int8 as cache_saved_micro_usd,
  percentile_cont(0.5) within group (order by ttft_ms) filter (where ttft_ms > 0) as ttft_p50_ms,
  percentile_cont(0.95) within group (order by ttft_ms) filter (where ttft_ms > 0) as ttft_p95_ms,
  percentile_cont(0.5) within group (order by total_ms) as total_p50_ms,
  percentile_cont(0.95) within group (order by total_ms) as total_p95_ms`;

function figures(row: Row): UsageFigures {
  const int = (name: string) => (row[name] as bigint | null) ?? 0n;
  const float = (name: string) => (row[name] as number | null) ?? 0;
  return {
    requests: int("requests"),
    errors: int("errors"),
    inputTokens: int("input_tokens"),
    outputTokens: int("output_tokens"),
    costMicroUsd: int("cost_micro_usd"),
    baselineMicroUsd: int("baseline_micro_usd"),
    savedMicroUsd: int("saved_micro_usd"),
    cacheHits: int("cache_hits"),
    cacheSavedMicroUsd: int("cache_saved_micro_usd"),
    ttftP50Ms: float("ttft_p50_ms"),
    ttftP95Ms: float("ttft_p95_ms"),
    totalP50Ms: float("total_p50_ms"),
    totalP95Ms: float("total_p95_ms"),
  };
}

/** The usage records in the books: idempotent writes, reports, the latest requests. */
export class UsageBook {
  constructor(private readonly db: Database) {}

  /**
   * Writes records (already checked) in one multi-row insert in one transaction; a request id
   * already present is a duplicate, not a second row. When the database refuses the batch (it
   * should not: records are checked first), each record is written alone so that only the
   * offending ones are refused. A database that cannot be reached throws
   * `DatabaseUnavailableError` and nothing is written.
   */
  async write(records: readonly events.UsageRecord[]): Promise<WriteOutcome> {
    if (records.length === 0) return { written: new Set(), duplicates: 0, refused: new Map() };
    try {
      const written = await this.insert(records);
      return { written, duplicates: records.length - written.size, refused: new Map() };
    } catch (err) {
      // Only an error in the data can be pinned on some records: anything else (a bug, a missing
      // table, a permission) would refuse every record alone too, so it goes back to the caller
      // and nothing is condemned.
      if (!(err instanceof DatabaseQueryError) || !isDataError(err) || records.length === 1) throw err;
    }
    const outcome: WriteOutcome = { written: new Set(), duplicates: 0, refused: new Map() };
    for (const [i, record] of records.entries()) {
      try {
        const written = await this.insert([record]);
        if (written.size === 1) written.forEach((id) => outcome.written.add(id));
        else outcome.duplicates++;
      } catch (err) {
        if (!(err instanceof DatabaseQueryError) || !isDataError(err)) throw err;
        outcome.refused.set(i, `the database refused it (SQLSTATE ${err.sqlstate})`);
      }
    }
    return outcome;
  }

  private async insert(records: readonly events.UsageRecord[]): Promise<Set<string>> {
    const json = JSON.stringify(records.map(toJson));
    const rows = await this.db.transaction((tx) => tx.query<{ request_id: string }>(INSERT_SQL, [json]));
    return new Set(rows.map((r) => r.request_id));
  }

  /**
   * Deletes records older than `beforeMs`, `batch` at a time (short statements: writers are never
   * held up for long); resolves to how many went.
   */
  async prune(beforeMs: number, batch = 5_000): Promise<number> {
    const before = new Date(beforeMs).toISOString();
    let total = 0;
    for (;;) {
      const rows = await this.db.query<{ n: bigint }>(
        `with gone as (delete from usage_records where request_id in
           (select request_id from usage_records where time < $1::timestamptz limit ${Math.floor(batch)}) returning 1)
         select count(*)::int8 as n from gone`,
        [before],
      );
      const n = Number(rows[0]?.n ?? 0n);
      total += n;
      if (n < batch) return total;
    }
  }

  /** Totals over [sinceMs, untilMs) and, with `groupBy`, the same per group. */
  async usage(q: UsageQuery): Promise<UsageReport> {
    const params: unknown[] = [new Date(Number(q.sinceMs)).toISOString(), new Date(Number(q.untilMs)).toISOString()];
    const where = ["time >= $1::timestamptz", "time < $2::timestamptz"];
    if (q.tenant) {
      params.push(q.tenant);
      where.push(`tenant = $${params.length}`);
    }
    if (q.keyId) {
      params.push(q.keyId);
      where.push(`key_id = $${params.length}`);
    }
    const filtered = `from usage_records where ${where.join(" and ")}`;
    if (q.costOnly) {
      const [row] = await this.db.query(`select count(*)::int8 as requests, coalesce(sum(cost_micro_usd), 0)::int8 as cost_micro_usd ${filtered}`, params);
      return { totals: figures(row ?? {}), groups: [] };
    }
    if (!q.groupBy) {
      const [row] = await this.db.query(`select ${AGGREGATES} ${filtered}`, params);
      return { totals: figures(row ?? {}), groups: [] };
    }
    const rows = await this.db.query(
      `select grouping(k)::int4 as rollup, k, ${AGGREGATES}
       from (select *, ${DIMENSION_SQL[q.groupBy]} as k ${filtered}) r
       group by grouping sets ((), (k))`,
      params,
    );
    let totals = figures({});
    const groups: UsageReport["groups"] = [];
    for (const row of rows) {
      if (row["rollup"] === 1) totals = figures(row);
      else groups.push({ key: String(row["k"] ?? ""), totals: figures(row) });
    }
    // Time groups in time order, reasons most frequent first, the others biggest spender first.
    if (q.groupBy === "day" || q.groupBy === "hour") groups.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    else if (q.groupBy === "reason") groups.sort((a, b) => (a.totals.requests !== b.totals.requests ? (a.totals.requests > b.totals.requests ? -1 : 1) : a.key < b.key ? -1 : 1));
    else {
      groups.sort((a, b) => {
        if (a.totals.costMicroUsd !== b.totals.costMicroUsd) return a.totals.costMicroUsd > b.totals.costMicroUsd ? -1 : 1;
        if (a.totals.requests !== b.totals.requests) return a.totals.requests > b.totals.requests ? -1 : 1;
        return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
      });
    }
    return { totals, groups };
  }

  /** The `limit` most recent records (by request time), newest first; every tenant when `tenant` is undefined. */
  async recent(tenant: string | undefined, limit: number): Promise<events.UsageRecord[]> {
    const rows = tenant
      ? await this.db.query(`select ${SELECT_RECORD} from usage_records where tenant = $1 order by time desc, request_id desc limit $2`, [tenant, limit])
      : await this.db.query(`select ${SELECT_RECORD} from usage_records order by time desc, request_id desc limit $1`, [limit]);
    return rows.map(fromRow);
  }
}
