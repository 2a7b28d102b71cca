import type { Client } from "@connectrpc/connect";
import { ConnectError } from "@connectrpc/connect";
import type { events, ledger as ledgerPb, policy as policyPb } from "@switchyard/proto";
import { ledger as ledgerProto } from "@switchyard/proto";
import type { Readiness } from "@switchyard/rpc";

/**
 * The dashboard's data, as its page shows it. Every figure is the ledger's (`Usage`,
 * `RecentRequests`) or the live state's (the policy's `ListModels`, the gateway's readiness); this
 * module only renames fields, turns int64 into JSON numbers and adds the ratios a reader wants next
 * to them (share, saving in percent, error and cache-hit rates), so the page does nothing but format.
 */

/** The periods the page offers, and the time buckets its spend chart uses for each. */
export const PERIODS = {
  "24h": { ms: 24 * 3_600_000, bucket: "hour" },
  "7d": { ms: 7 * 24 * 3_600_000, bucket: "hour" },
  "30d": { ms: 30 * 24 * 3_600_000, bucket: "day" },
} as const satisfies Record<string, { ms: number; bucket: Bucket }>;

export type Period = keyof typeof PERIODS;
export type Bucket = "hour" | "day";

/** Figures over a set of records. Money in integer micro-dollars, times in milliseconds. */
export interface TotalsView {
  requests: number;
  errors: number;
  /** errors / requests (0 without requests). */
  error_rate: number;
  input_tokens: number;
  output_tokens: number;
  cost_micro_usd: number;
  baseline_micro_usd: number;
  saved_micro_usd: number;
  /** saved / baseline in percent; null when there is no baseline spend to compare with. */
  saved_percent: number | null;
  cache_hits: number;
  /** cache_hits / requests. */
  cache_hit_rate: number;
  cache_saved_micro_usd: number;
  ttft_p50_ms: number;
  ttft_p95_ms: number;
  total_p50_ms: number;
  total_p95_ms: number;
}

/** One group of a breakdown (a model, a tier, an hour, ...). */
export interface GroupView extends TotalsView {
  key: string;
  /** This group's requests / all requests of the breakdown. */
  share: number;
}

/** One bucket of the spend-over-time series. */
export interface SeriesPoint extends TotalsView {
  /** The ledger's key: YYYY-MM-DD or YYYY-MM-DDTHH (UTC). */
  key: string;
  /** The bucket's start, for the page to label in the reader's time zone. */
  start_unix_ms: number;
}

export interface ReasonView {
  reason: string;
  requests: number;
  share: number;
}

/** Everything the page's summary, charts and breakdown tables show for one tenant (or all) and period. */
export interface OverviewView {
  tenant: string;
  period: Period;
  since_unix_ms: number;
  until_unix_ms: number;
  bucket: Bucket;
  totals: TotalsView;
  series: SeriesPoint[];
  tiers: GroupView[];
  models: GroupView[];
  cache: GroupView[];
  task_types: GroupView[];
  /** Tenants to choose from: those configured and those with records. */
  tenants: string[];
  /** Requests per routing decision over the period (the ledger's GROUP_BY_REASON), most frequent first. */
  reasons: ReasonView[];
}

/** One request as the "last requests" list shows it. */
export interface RequestView {
  request_id: string;
  time_unix_ms: number;
  tenant: string;
  api: string;
  requested_model: string;
  model: string;
  tier: string;
  task_type: string;
  reason: string;
  fallbacks: number;
  cache: string;
  cache_kind: string;
  input_tokens: number;
  output_tokens: number;
  cost_micro_usd: number;
  baseline_micro_usd: number;
  saved_micro_usd: number;
  cache_saved_micro_usd: number;
  baseline_model: string;
  ttft_ms: number;
  total_ms: number;
  status: number;
  error_code: string;
  streamed: boolean;
  trace_id: string;
  /** `<telemetry.jaeger_url>/trace/<trace_id>`; absent without a Jaeger URL or a trace id. */
  trace_url?: string;
}

export type CheckLevel = "ok" | "warn" | "down";

/** The live state: what the router routes on now, and whether the pieces around the gateway answer. */
export interface LiveView {
  checked_at_unix_ms: number;
  /** The gateway's own readiness (what /readyz says). */
  ready: boolean;
  checks: { name: string; value: string; level: CheckLevel }[];
  /** Whether the ledger (and so its database) answers a query now. */
  ledger: { level: CheckLevel; detail: string; latency_ms: number };
  models: ModelView[];
  /** Set when the policy did not answer: the models list is then empty. */
  models_error?: string;
}

export interface ModelView {
  id: string;
  provider: string;
  model: string;
  tiers: string[];
  /** "closed", "open", "half_open" (as the policy names it). */
  circuit: string;
  price_source: string;
  input_micro_usd_per_mtok: number;
  output_micro_usd_per_mtok: number;
  cached_input_micro_usd_per_mtok: number;
}

/** What the data side needs from the gateway. */
export interface DashboardSources {
  ledger: Client<typeof ledgerPb.LedgerService>;
  policy: Client<typeof policyPb.PolicyService>;
  readiness: () => Readiness;
  /** Tenant names of the configuration. */
  tenants: readonly string[];
  /** `telemetry.jaeger_url` without a trailing slash; "" for none. */
  jaegerUrl: string;
  now?: () => number;
}

const LEDGER_TIMEOUT_MS = 10_000;
/** Reasons the overview sends, most frequent first (the page shows 12). */
const MAX_REASONS = 20;
const LIVE_TIMEOUT_MS = 2_000;

/** Reads the ledger and the live state for the page. */
export class DashboardData {
  private readonly now: () => number;

  constructor(private readonly sources: DashboardSources) {
    this.now = sources.now ?? Date.now;
  }

  /** Totals, the series over time, and the breakdowns of one period. */
  async overview(tenant: string, period: Period): Promise<OverviewView> {
    const { ms, bucket } = PERIODS[period];
    const until = this.now();
    const since = until - ms;
    const range = { sinceUnixMs: BigInt(since), untilUnixMs: BigInt(until) };
    const usage = (groupBy: ledgerPb.GroupBy, forTenant = tenant) =>
      this.sources.ledger.usage({ tenant: forTenant, ...range, groupBy }, { timeoutMs: LEDGER_TIMEOUT_MS });
    const G = ledgerProto.GroupBy;
    const [series, tiers, models, cache, taskTypes, tenants, reasons] = await Promise.all([
      usage(bucket === "hour" ? G.HOUR : G.DAY),
      usage(G.TIER),
      usage(G.MODEL),
      usage(G.CACHE),
      usage(G.TASK_TYPE),
      // Every tenant with records, whichever is shown: the page's tenant list.
      usage(G.TENANT, ""),
      // A ledger older than the reason grouping refuses it (a rolling upgrade): no reasons, the rest still shown.
      usage(G.REASON).catch(() => undefined),
    ]);
    const requests = Number(reasons?.totals?.requests ?? 0n);
    return {
      tenant,
      period,
      since_unix_ms: since,
      until_unix_ms: until,
      bucket,
      totals: totalsView(series.totals),
      series: fillSeries(series.groups, since, until, bucket),
      tiers: groupsView(tiers),
      models: groupsView(models),
      cache: groupsView(cache),
      task_types: groupsView(taskTypes),
      tenants: [...new Set([...this.sources.tenants, ...tenants.groups.map((g) => g.key).filter((k) => k !== "")])],
      reasons: (reasons?.groups ?? []).slice(0, MAX_REASONS).map((g) => {
        const n = Number(g.totals?.requests ?? 0n);
        return { reason: g.key, requests: n, share: requests > 0 ? n / requests : 0 };
      }),
    };
  }

  /** The most recent requests, newest first. */
  async requests(tenant: string, limit: number): Promise<{ records: RequestView[] }> {
    const { records } = await this.sources.ledger.recentRequests({ tenant, limit }, { timeoutMs: LEDGER_TIMEOUT_MS });
    return { records: records.map((r) => requestView(r, this.sources.jaegerUrl)) };
  }

  /** Prices and circuit states per model (the policy's tables), readiness, and a probe of the ledger. */
  async live(): Promise<LiveView> {
    const readiness = this.sources.readiness();
    const probeStart = performance.now();
    const [models, ledger] = await Promise.all([
      this.sources.policy.listModels({}, { timeoutMs: LIVE_TIMEOUT_MS }).then(
        (r) => ({ models: r.models.map(modelView) }),
        (err: unknown) => ({ models: [] as ModelView[], error: `the policy service did not answer (${ConnectError.from(err).rawMessage})` }),
      ),
      // The cheapest query there is: it answers only when the ledger's database does.
      this.sources.ledger.recentRequests({ limit: 1 }, { timeoutMs: LIVE_TIMEOUT_MS }).then(
        () => ({ level: "ok" as const, detail: "answering" }),
        (err: unknown) => ({ level: "down" as const, detail: ConnectError.from(err).rawMessage }),
      ),
    ]);
    return {
      checked_at_unix_ms: this.now(),
      ready: readiness.ready,
      checks: Object.entries(readiness.checks).map(([name, value]) => ({ name, value, level: checkLevel(value) })),
      ledger: { ...ledger, latency_ms: Math.round(performance.now() - probeStart) },
      models: models.models,
      ...("error" in models ? { models_error: models.error } : {}),
    };
  }
}

/** The ledger's totals with int64 as numbers and the rates beside them. */
export function totalsView(t: ledgerPb.UsageTotals | undefined): TotalsView {
  const n = (v: bigint | undefined) => Number(v ?? 0n);
  const requests = n(t?.requests);
  const errors = n(t?.errors);
  const baseline = n(t?.baselineMicroUsd);
  const saved = n(t?.savedMicroUsd);
  const hits = n(t?.cacheHits);
  return {
    requests,
    errors,
    error_rate: requests > 0 ? errors / requests : 0,
    input_tokens: n(t?.inputTokens),
    output_tokens: n(t?.outputTokens),
    cost_micro_usd: n(t?.costMicroUsd),
    baseline_micro_usd: baseline,
    saved_micro_usd: saved,
    saved_percent: baseline > 0 ? (saved / baseline) * 100 : null,
    cache_hits: hits,
    cache_hit_rate: requests > 0 ? hits / requests : 0,
    cache_saved_micro_usd: n(t?.cacheSavedMicroUsd),
    ttft_p50_ms: t?.ttftP50Ms ?? 0,
    ttft_p95_ms: t?.ttftP95Ms ?? 0,
    total_p50_ms: t?.totalP50Ms ?? 0,
    total_p95_ms: t?.totalP95Ms ?? 0,
  };
}

function groupsView(r: ledgerPb.UsageResponse): GroupView[] {
  const all = Number(r.totals?.requests ?? 0n);
  return r.groups.map((g) => {
    const totals = totalsView(g.totals);
    return { key: g.key, share: all > 0 ? totals.requests / all : 0, ...totals };
  });
}

/**
 * Every bucket of the period, in order: the ledger's groups where it has records, zeros where it
 * has none (no request in an hour is a spend of zero, not a gap).
 */
export function fillSeries(groups: ledgerPb.UsageGroup[], since: number, until: number, bucket: Bucket): SeriesPoint[] {
  const byKey = new Map(groups.map((g) => [g.key, g.totals]));
  const step = bucket === "hour" ? 3_600_000 : 86_400_000;
  const points: SeriesPoint[] = [];
  for (let start = Math.floor(since / step) * step; start < until; start += step) {
    const key = bucketKey(start, bucket);
    points.push({ key, start_unix_ms: start, ...totalsView(byKey.get(key)) });
  }
  return points;
}

/** The ledger's key of the bucket starting at `ms`: YYYY-MM-DD or YYYY-MM-DDTHH, in UTC. */
export function bucketKey(ms: number, bucket: Bucket): string {
  const iso = new Date(ms).toISOString();
  return bucket === "hour" ? iso.slice(0, 13) : iso.slice(0, 10);
}

export function requestView(r: events.UsageRecord, jaegerUrl: string): RequestView {
  return {
    request_id: r.requestId,
    time_unix_ms: Number(r.timeUnixMs),
    tenant: r.tenant,
    api: r.api,
    requested_model: r.requestedModel,
    model: r.model,
    tier: r.tier,
    task_type: r.taskType,
    reason: r.reason,
    fallbacks: r.fallbacks,
    cache: r.cache,
    cache_kind: r.cacheKind,
    input_tokens: Number(r.inputTokens),
    output_tokens: Number(r.outputTokens),
    cost_micro_usd: Number(r.costMicroUsd),
    baseline_micro_usd: Number(r.baselineMicroUsd),
    saved_micro_usd: Number(r.savedMicroUsd),
    cache_saved_micro_usd: Number(r.cacheSavedMicroUsd),
    baseline_model: r.baselineModel,
    ttft_ms: r.ttftMs,
    total_ms: r.totalMs,
    status: r.status,
    error_code: r.errorCode,
    streamed: r.streamed,
    trace_id: r.traceId,
    ...(jaegerUrl && /^[0-9a-f]{32}$/.test(r.traceId) ? { trace_url: `${jaegerUrl}/trace/${r.traceId}` } : {}),
  };
}

function modelView(m: policyPb.RoutableModel): ModelView {
  return {
    id: `${m.provider}/${m.model}`,
    provider: m.provider,
    model: m.model,
    tiers: m.tiers,
    circuit: m.circuit,
    price_source: m.priceSource,
    input_micro_usd_per_mtok: Number(m.price?.inputMicroUsdPerMtok ?? 0n),
    output_micro_usd_per_mtok: Number(m.price?.outputMicroUsdPerMtok ?? 0n),
    cached_input_micro_usd_per_mtok: Number(m.price?.cachedInputMicroUsdPerMtok ?? 0n),
  };
}

/** How a readiness line reads: a dependency that is away, one that works around a problem, or fine. */
export function checkLevel(value: string): CheckLevel {
  const v = value.toLowerCase();
  if (/degraded|stale|reconnecting|connecting|syncing|unknown|starting/.test(v)) return "warn";
  if (/unreachable|not serving|closed|down|unavailable|failed/.test(v)) return "down";
  return "ok";
}
