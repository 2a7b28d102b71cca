import { parseArgs } from "node:util";
import { ledger } from "@switchyard/proto";
import { runAdminCall } from "./admin-client.js";

const USAGE_HELP = `usage: switchyard usage [--tenant T] [--key KEY_ID] [--since 7d] [--until TIME] [--by model|tier|day|hour|tenant|key|cache|task|reason] [--json] [--url URL]

What the traffic cost and what routing saved, from the ledger (through the gateway's admin API).
  --since, --until   a duration back from now (30m, 24h, 7d, 4w) or a date/time, UTC unless it says (2026-11-01, 2026-11-01T12:00); default the last 7 days
  --by               the breakdown (default: model)
  --json             one JSON object: requests, cost_usd, baseline_usd, saved_usd, ... and the breakdown
The admin key, when the gateway needs one, is read from SWITCHYARD_ADMIN_KEY.
`;

const GROUPS: Record<string, ledger.GroupBy> = {
  model: ledger.GroupBy.MODEL,
  tier: ledger.GroupBy.TIER,
  day: ledger.GroupBy.DAY,
  hour: ledger.GroupBy.HOUR,
  tenant: ledger.GroupBy.TENANT,
  key: ledger.GroupBy.KEY,
  cache: ledger.GroupBy.CACHE,
  task: ledger.GroupBy.TASK_TYPE,
  reason: ledger.GroupBy.REASON,
};

/** `switchyard usage`: totals and a breakdown of the books over a period. */
export async function usageCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        tenant: { type: "string" },
        key: { type: "string" },
        since: { type: "string" },
        until: { type: "string" },
        by: { type: "string" },
        json: { type: "boolean" },
        url: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`switchyard usage: ${(err as Error).message}\n\n${USAGE_HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE_HELP);
    return 0;
  }
  const now = Date.now();
  let since: number;
  let until: number;
  try {
    since = values.since ? parseTime(values.since, now, "--since") : now - 7 * 86_400_000;
    until = values.until ? parseTime(values.until, now, "--until") : now;
    if (until <= since) throw new Error("--until must be after --since");
  } catch (err) {
    process.stderr.write(`switchyard usage: ${(err as Error).message}\n`);
    return 2;
  }
  const by = values.by ?? "model";
  const groupBy = GROUPS[by];
  if (groupBy === undefined) {
    process.stderr.write(`switchyard usage: --by must be one of ${Object.keys(GROUPS).join(", ")}\n`);
    return 2;
  }
  return runAdminCall("usage", values.url, async (admin) => {
    const report = await admin.client.usage(
      { tenant: values.tenant ?? "", keyId: values.key ?? "", sinceUnixMs: BigInt(since), untilUnixMs: BigInt(until), groupBy },
      admin.callOptions,
    );
    return values.json ? `${JSON.stringify(usageJson(report, by, values.tenant))}\n` : usageTable(report, by, values.tenant);
  });
}

/**
 * A time flag: a duration back from `now` ("30m", "24h", "7d", "4w") or a date or date-time.
 * @throws Error naming the flag
 */
export function parseTime(text: string, now: number, flag: string): number {
  const d = /^(\d+(?:\.\d+)?)\s*(m|h|d|w)$/.exec(text.trim());
  if (d) return now - Number(d[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[d[2] as "m" | "h" | "d" | "w"];
  if (/^\d{4}-\d{2}-\d{2}/.test(text)) {
    // UTC unless the time says otherwise (the ledger's days and hours are UTC too).
    const withZone = /^\d{4}-\d{2}-\d{2}$/.test(text) ? `${text}T00:00:00Z` : /(Z|[+-]\d{2}:?\d{2})$/i.test(text) ? text : `${text}Z`;
    const t = Date.parse(withZone);
    if (Number.isFinite(t)) return t;
  }
  throw new Error(`${flag} "${text}" is neither a duration (30m, 24h, 7d, 4w) nor a date (2026-11-01, 2026-11-01T12:00Z)`);
}

const usd = (micro: bigint) => Number(micro) / 1e6;

/** One set of totals as plain JSON (dollars as numbers, rates as fractions). */
function totalsJson(t: ledger.UsageTotals | undefined): Record<string, number> {
  const requests = Number(t?.requests ?? 0n);
  const baseline = usd(t?.baselineMicroUsd ?? 0n);
  const saved = usd(t?.savedMicroUsd ?? 0n);
  return {
    requests,
    errors: Number(t?.errors ?? 0n),
    error_rate: requests > 0 ? Number(t!.errors) / requests : 0,
    input_tokens: Number(t?.inputTokens ?? 0n),
    output_tokens: Number(t?.outputTokens ?? 0n),
    cost_usd: usd(t?.costMicroUsd ?? 0n),
    baseline_usd: baseline,
    saved_usd: saved,
    saved_pct: baseline > 0 ? (100 * saved) / baseline : 0,
    cache_hits: Number(t?.cacheHits ?? 0n),
    cache_saved_usd: usd(t?.cacheSavedMicroUsd ?? 0n),
    ttft_p50_ms: t?.ttftP50Ms ?? 0,
    ttft_p95_ms: t?.ttftP95Ms ?? 0,
    latency_p50_ms: t?.totalP50Ms ?? 0,
    latency_p95_ms: t?.totalP95Ms ?? 0,
  };
}

/** The `--json` document: the totals at the top level, then the breakdown. */
export function usageJson(report: ledger.UsageResponse, by: string, tenant: string | undefined): Record<string, unknown> {
  return {
    since: new Date(Number(report.sinceUnixMs)).toISOString(),
    until: new Date(Number(report.untilUnixMs)).toISOString(),
    tenant: tenant ?? null,
    ...totalsJson(report.totals),
    by,
    breakdown: report.groups.map((g) => ({ [by]: g.key, ...totalsJson(g.totals) })),
  };
}

/** The human table: one line of totals, then one per group. */
export function usageTable(report: ledger.UsageResponse, by: string, tenant: string | undefined): string {
  const header = [by, "requests", "errors", "tokens in/out", "cost", "baseline", "saved", "cache hits", "cache saved", "ttft p50/p95 ms", "latency p50/p95 ms"];
  const row = (key: string, t: ledger.UsageTotals | undefined) => {
    const j = totalsJson(t);
    return [
      key,
      String(j.requests),
      `${(100 * j.error_rate!).toFixed(1)}%`,
      `${j.input_tokens}/${j.output_tokens}`,
      money(j.cost_usd!),
      money(j.baseline_usd!),
      `${money(j.saved_usd!)} (${j.saved_pct!.toFixed(0)}%)`,
      String(j.cache_hits),
      money(j.cache_saved_usd!),
      `${j.ttft_p50_ms!.toFixed(0)}/${j.ttft_p95_ms!.toFixed(0)}`,
      `${j.latency_p50_ms!.toFixed(0)}/${j.latency_p95_ms!.toFixed(0)}`,
    ];
  };
  const rows = [header, ...report.groups.map((g) => row(g.key || "(none)", g.totals)), row("total", report.totals)];
  const widths = header.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const span = `${new Date(Number(report.sinceUnixMs)).toISOString().slice(0, 16)}Z to ${new Date(Number(report.untilUnixMs)).toISOString().slice(0, 16)}Z`;
  const out = [`usage ${tenant ? `of tenant ${tenant} ` : ""}from ${span}`, "", line(rows[0]!), ...rows.slice(1, -1).map(line), line(rows[rows.length - 1]!)];
  if (report.groups.length === 0) out.splice(3, 0, "(no requests in this period)");
  return `${out.join("\n")}\n`;
}

function money(v: number): string {
  return `$${v.toFixed(Math.abs(v) < 0.01 ? 6 : Math.abs(v) < 1 ? 4 : 2)}`;
}
