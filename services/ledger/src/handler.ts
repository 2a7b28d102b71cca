import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { ledger as pb } from "@switchyard/proto";
import type { Logger } from "@switchyard/telemetry";
import { invalidArgument, toConnectError } from "./errors.js";
import type { BudgetPeriod, KeyLimits, KeyStore, StoredKey } from "./key-store.js";
import type { Recorder } from "./recorder.js";
import type { UsageBook, UsageDimension, UsageFigures } from "./usage-book.js";

/** Records one Record call may carry. */
export const MAX_RECORDS_PER_CALL = 10_000;
/** RecentRequests: records when the caller says nothing, and at most. */
export const RECENT_DEFAULT = 50;
export const RECENT_MAX = 1_000;
/** Usage: the period when the caller gives no start. */
export const DEFAULT_USAGE_PERIOD_MS = 7 * 24 * 3_600_000;

const TENANT = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;
const MAX_NAME_CHARS = 128;
const KEY_ID = /^[0-9a-f]{12}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const CONTROL = /[\u0000-\u001f\u007f]/;
/** A billion dollars, in micro-dollars: beyond it a budget is a typo. */
const MAX_BUDGET_MICRO_USD = 1_000_000_000_000_000n;

const GROUP_BY: Record<pb.GroupBy, UsageDimension | undefined> = {
  [pb.GroupBy.UNSPECIFIED]: undefined,
  [pb.GroupBy.MODEL]: "model",
  [pb.GroupBy.TIER]: "tier",
  [pb.GroupBy.DAY]: "day",
  [pb.GroupBy.HOUR]: "hour",
  [pb.GroupBy.TENANT]: "tenant",
  [pb.GroupBy.KEY]: "key",
  [pb.GroupBy.CACHE]: "cache",
  [pb.GroupBy.TASK_TYPE]: "task_type",
  [pb.GroupBy.REASON]: "reason",
};

const PERIOD_IN: Record<pb.BudgetPeriod, BudgetPeriod> = {
  [pb.BudgetPeriod.UNSPECIFIED]: "",
  [pb.BudgetPeriod.DAY]: "day",
  [pb.BudgetPeriod.WEEK]: "week",
  [pb.BudgetPeriod.MONTH]: "month",
};
const PERIOD_OUT: Record<BudgetPeriod, pb.BudgetPeriod> = {
  "": pb.BudgetPeriod.UNSPECIFIED,
  day: pb.BudgetPeriod.DAY,
  week: pb.BudgetPeriod.WEEK,
  month: pb.BudgetPeriod.MONTH,
};

/** What the handler works on. */
export interface LedgerHandlerDeps {
  recorder: Recorder;
  book: UsageBook;
  keys: KeyStore;
  logger: Logger;
  /** Throws (LedgerNotReadyError) while the schema is not applied yet. */
  ensureReady: () => void;
  /** Tenants a key may be created for; undefined: any well-formed name. */
  tenants?: ReadonlySet<string> | undefined;
  now?: () => number;
}

/**
 * `switchyard.ledger.v1.LedgerService`: usage records in, usage reports and API keys out. Bad
 * requests are InvalidArgument naming the field; an unreachable database is Unavailable.
 */
export class LedgerHandler implements ServiceImpl<typeof pb.LedgerService> {
  private readonly now: () => number;

  constructor(private readonly deps: LedgerHandlerDeps) {
    this.now = deps.now ?? Date.now;
  }

  record(req: pb.RecordRequest): Promise<pb.RecordResponse> {
    return this.guard("Record", async () => {
      if (req.records.length > MAX_RECORDS_PER_CALL) throw invalidArgument(`records: at most ${MAX_RECORDS_PER_CALL} per call, got ${req.records.length}`);
      const outcome = await this.deps.recorder.record("rpc", req.records, this.now());
      const rejections = [...outcome.rejections].map(([i, r]) => {
        const id = req.records[i]?.requestId ?? "";
        return `records[${i}]${id ? ` (request_id ${JSON.stringify(id.slice(0, 64))})` : ""}: ${r.message}`;
      });
      return create(pb.RecordResponseSchema, { written: outcome.written, duplicates: outcome.duplicates, rejected: outcome.rejections.size, rejections });
    });
  }

  usage(req: pb.UsageRequest): Promise<pb.UsageResponse> {
    return this.guard("Usage", async () => {
      if (req.sinceUnixMs < 0n) throw invalidArgument("since_unix_ms must not be negative");
      if (req.untilUnixMs < 0n) throw invalidArgument("until_unix_ms must not be negative");
      const untilMs = req.untilUnixMs || BigInt(this.now());
      const sinceMs = req.sinceUnixMs || untilMs - BigInt(DEFAULT_USAGE_PERIOD_MS);
      if (sinceMs >= untilMs) throw invalidArgument("since_unix_ms must be before until_unix_ms");
      if (req.tenant) checkTenantName(req.tenant, "tenant");
      if (req.keyId && !KEY_ID.test(req.keyId)) throw invalidArgument("key_id must be 12 lowercase hex digits");
      if (!(req.groupBy in GROUP_BY)) throw invalidArgument(`group_by ${req.groupBy} is not a known GroupBy`);
      const report = await this.deps.book.usage({ sinceMs, untilMs, tenant: req.tenant || undefined, keyId: req.keyId || undefined, groupBy: GROUP_BY[req.groupBy], costOnly: req.costOnly });
      return create(pb.UsageResponseSchema, {
        sinceUnixMs: sinceMs,
        untilUnixMs: untilMs,
        totals: totals(report.totals),
        groupBy: req.groupBy,
        groups: report.groups.map((g) => ({ key: g.key, totals: totals(g.totals) })),
      });
    });
  }

  recentRequests(req: pb.RecentRequestsRequest): Promise<pb.RecentRequestsResponse> {
    return this.guard("RecentRequests", async () => {
      if (req.limit < 0) throw invalidArgument("limit must not be negative");
      if (req.tenant) checkTenantName(req.tenant, "tenant");
      const limit = req.limit === 0 ? RECENT_DEFAULT : Math.min(req.limit, RECENT_MAX);
      return create(pb.RecentRequestsResponseSchema, { records: await this.deps.book.recent(req.tenant || undefined, limit) });
    });
  }

  createKey(req: pb.CreateKeyRequest): Promise<pb.CreateKeyResponse> {
    return this.guard("CreateKey", async () => {
      if (!req.tenant) throw invalidArgument("tenant is required");
      checkTenantName(req.tenant, "tenant");
      if (this.deps.tenants && !this.deps.tenants.has(req.tenant)) throw invalidArgument(`tenant ${JSON.stringify(req.tenant)} is not configured`);
      if (req.name.length > MAX_NAME_CHARS) throw invalidArgument(`name must be at most ${MAX_NAME_CHARS} characters`);
      if (CONTROL.test(req.name)) throw invalidArgument("name must not contain control characters");
      const limits = checkLimits(req.limits);
      const issued = await this.deps.keys.create(req.tenant, req.name, limits);
      this.deps.logger.info("API key created", { key_id: issued.key.keyId, tenant: issued.key.tenant });
      return create(pb.CreateKeyResponseSchema, { key: apiKey(issued.key), secret: issued.secret });
    });
  }

  listKeys(req: pb.ListKeysRequest): Promise<pb.ListKeysResponse> {
    return this.guard("ListKeys", async () => {
      if (req.changedSince < 0n) throw invalidArgument("changed_since must not be negative");
      if (req.tenant) checkTenantName(req.tenant, "tenant");
      const listing = await this.deps.keys.list({ tenant: req.tenant || undefined, includeRevoked: req.includeRevoked, changedSince: req.changedSince });
      return create(pb.ListKeysResponseSchema, { keys: listing.keys.map(apiKey), version: listing.version });
    });
  }

  revokeKey(req: pb.RevokeKeyRequest): Promise<pb.RevokeKeyResponse> {
    return this.guard("RevokeKey", async () => {
      if (!KEY_ID.test(req.keyId)) throw invalidArgument("key_id must be 12 lowercase hex digits");
      const key = await this.deps.keys.revoke(req.keyId);
      if (!key) throw new ConnectError(`no API key with key_id ${req.keyId}`, Code.NotFound);
      this.deps.logger.info("API key revoked", { key_id: key.keyId, tenant: key.tenant });
      return create(pb.RevokeKeyResponseSchema, { key: apiKey(key) });
    });
  }

  lookupKey(req: pb.LookupKeyRequest): Promise<pb.LookupKeyResponse> {
    return this.guard("LookupKey", async () => {
      const sha256 = req.sha256.toLowerCase();
      if (!SHA256.test(sha256)) throw invalidArgument("sha256 must be 64 hex digits (the SHA-256 of the key)");
      const key = await this.deps.keys.lookup(sha256);
      return create(pb.LookupKeyResponseSchema, key ? { key: apiKey(key) } : {});
    });
  }

  private async guard<T>(method: string, work: () => Promise<T>): Promise<T> {
    try {
      this.deps.ensureReady();
      return await work();
    } catch (err) {
      throw toConnectError(err, method, this.deps.logger);
    }
  }
}

function checkTenantName(tenant: string, field: string): void {
  if (tenant.length > MAX_NAME_CHARS || !TENANT.test(tenant)) {
    throw invalidArgument(`${field} must be a tenant name: up to ${MAX_NAME_CHARS} letters, digits, '.', '_', ':' or '-', starting with a letter or digit`);
  }
}

function checkLimits(limits: pb.KeyLimits | undefined): KeyLimits {
  const l = limits ?? create(pb.KeyLimitsSchema, {});
  if (l.budgetMicroUsd < 0n) throw invalidArgument("limits.budget_micro_usd must not be negative");
  if (l.budgetMicroUsd > MAX_BUDGET_MICRO_USD) throw invalidArgument(`limits.budget_micro_usd must be at most ${MAX_BUDGET_MICRO_USD}`);
  if (!(l.period in PERIOD_IN)) throw invalidArgument(`limits.period ${l.period} is not a known BudgetPeriod`);
  if (l.budgetMicroUsd > 0n && l.period === pb.BudgetPeriod.UNSPECIFIED) throw invalidArgument("limits.period is required with a budget (day, week or month)");
  if (l.requestsPerMinute < 0) throw invalidArgument("limits.requests_per_minute must not be negative");
  if (l.tokensPerMinute < 0) throw invalidArgument("limits.tokens_per_minute must not be negative");
  return { budgetMicroUsd: l.budgetMicroUsd, period: PERIOD_IN[l.period], requestsPerMinute: l.requestsPerMinute, tokensPerMinute: l.tokensPerMinute };
}

function apiKey(k: StoredKey): pb.ApiKey {
  return create(pb.ApiKeySchema, {
    keyId: k.keyId,
    tenant: k.tenant,
    name: k.name,
    limits: { budgetMicroUsd: k.limits.budgetMicroUsd, period: PERIOD_OUT[k.limits.period], requestsPerMinute: k.limits.requestsPerMinute, tokensPerMinute: k.limits.tokensPerMinute },
    createdAtUnixMs: k.createdAtMs,
    revokedAtUnixMs: k.revokedAtMs,
    sha256: k.sha256,
  });
}

function totals(f: UsageFigures): pb.UsageTotals {
  return create(pb.UsageTotalsSchema, f);
}
