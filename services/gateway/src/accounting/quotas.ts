import { Redis } from "ioredis";
import type { Config, TenantConfig } from "@switchyard/config";
import { ledger as ledgerPb } from "@switchyard/proto";
import type { Logger } from "@switchyard/telemetry";

export type BudgetPeriod = "day" | "week" | "month";

/** What one tenant or key may do. Unset: no limit of that kind. */
export interface QuotaLimits {
  budgetMicroUsd?: bigint;
  period: BudgetPeriod;
  requestsPerMinute?: number;
  tokensPerMinute?: number;
}

/** A set of limits and the counters they apply to ("tenant:acme", "key:1a2b3c4d5e6f"). */
export interface QuotaScope {
  id: string;
  limits: QuotaLimits;
  /** Whose spend it is, as the ledger is asked for it (absent in scopes built by hand in tests). */
  owner?: { tenant: string } | { keyId: string };
}

/** Why a request was refused: which scope, which limit, and when to try again. */
export interface QuotaRefusal {
  scope: string;
  limit: "budget" | "requests_per_minute" | "tokens_per_minute";
  retryAfterSeconds: number;
  message: string;
}

/** What an admitted request holds until it ends: its reservation and its window counts. */
export interface QuotaTicket {
  requestId: string;
  scopes: QuotaScope[];
  estimatedTokens: number;
  estimatedMicroUsd: bigint;
  /** The minute window the tokens were counted in (ms since epoch of its start). */
  windowStart: number;
  /** The backend that admitted it (settled there too, even if another serves by then). */
  backend: QuotaBackend;
}

export interface AdmissionInput {
  requestId: string;
  scopes: QuotaScope[];
  estimatedTokens: number;
  estimatedMicroUsd: bigint;
}

/** Counters behind the limits: this process's own, or Redis shared by every replica. */
export interface QuotaBackend {
  readonly name: string;
  /** Checks every scope and, when all allow, counts the request in all of them at once. */
  admit(input: AdmissionInput, now: number): Promise<QuotaRefusal | undefined>;
  /**
   * Ends a request: its reservation goes, its real cost and tokens count. `spendOnly`: add the
   * cost to the spend counters only (a request these counters did not admit).
   */
  settle(ticket: QuotaTicket, actualMicroUsd: bigint, actualTokens: number, spendOnly?: boolean): Promise<void>;
  /** Raises a scope's spend in a period to what the books say was spent (never lowers it). */
  seed(scope: QuotaScope, now: number, spentMicroUsd: bigint): Promise<void>;
  close(): Promise<void>;
}

const MINUTE = 60_000;
/** How long a hold outlives its request's timeout: longer than settles are retried, so a retried settle still finds it. */
const HOLD_GRACE_MS = 11 * MINUTE;
/** Settles Redis missed are retried for this long. */
const SETTLE_RETRY_MS = 10 * MINUTE;
/** Settles waiting for Redis, at most (the oldest goes first). */
const MAX_UNSETTLED = 100_000;

/** The limits of a key created at run time, from its ledger entry; undefined when it has none. */
export function quotaLimitsOf(l: ledgerPb.KeyLimits): QuotaLimits | undefined {
  const period: BudgetPeriod = l.period === ledgerPb.BudgetPeriod.DAY ? "day" : l.period === ledgerPb.BudgetPeriod.WEEK ? "week" : "month";
  const limits: QuotaLimits = {
    period,
    ...(l.budgetMicroUsd > 0n ? { budgetMicroUsd: l.budgetMicroUsd } : {}),
    ...(l.requestsPerMinute > 0 ? { requestsPerMinute: l.requestsPerMinute } : {}),
    ...(l.tokensPerMinute > 0 ? { tokensPerMinute: l.tokensPerMinute } : {}),
  };
  return hasLimits(limits) ? limits : undefined;
}

/** A tenant's limits from the configuration; undefined when it has none. */
export function tenantLimits(t: TenantConfig): QuotaLimits | undefined {
  const limits: QuotaLimits = {
    period: t.budget_period,
    ...(t.budget_usd === undefined ? {} : { budgetMicroUsd: BigInt(Math.round(t.budget_usd * 1e6)) }),
    ...(t.requests_per_minute === undefined ? {} : { requestsPerMinute: t.requests_per_minute }),
    ...(t.tokens_per_minute === undefined ? {} : { tokensPerMinute: t.tokens_per_minute }),
  };
  return hasLimits(limits) ? limits : undefined;
}

function hasLimits(l: QuotaLimits): boolean {
  return l.budgetMicroUsd !== undefined || l.requestsPerMinute !== undefined || l.tokensPerMinute !== undefined;
}

/** Start of the budget period holding `now` (UTC: midnight, Monday, the 1st), and of the next. */
export function periodBounds(period: BudgetPeriod, now: number): { start: number; end: number } {
  const d = new Date(now);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  const day = d.getUTCDate();
  if (period === "day") {
    const start = Date.UTC(y, m, day);
    return { start, end: start + 86_400_000 };
  }
  if (period === "week") {
    const sinceMonday = (d.getUTCDay() + 6) % 7;
    const start = Date.UTC(y, m, day - sinceMonday);
    return { start, end: start + 7 * 86_400_000 };
  }
  return { start: Date.UTC(y, m, 1), end: Date.UTC(y, m + 1, 1) };
}

/** The refusal for a limit that is full, with the time it frees up. */
function refusal(scope: QuotaScope, limit: QuotaRefusal["limit"], now: number, detail: string): QuotaRefusal {
  const retryAt = limit === "budget" ? periodBounds(scope.limits.period, now).end : (Math.floor(now / MINUTE) + 1) * MINUTE;
  const what = scope.id.startsWith("key:") ? `API key ${scope.id.slice(4)}` : `tenant "${scope.id.slice(7)}"`;
  const message =
    limit === "budget"
      ? `the ${{ day: "daily", week: "weekly", month: "monthly" }[scope.limits.period]} budget of ${what} is used up (${detail}); it renews at ${new Date(retryAt).toISOString()}`
      : `${what} is over its ${limit === "requests_per_minute" ? "requests" : "tokens"} per minute limit (${detail})`;
  return { scope: scope.id, limit, retryAfterSeconds: Math.max(1, Math.ceil((retryAt - now) / 1000)), message };
}

/** Sliding minute window: the last minute's count weighted by how much of it still overlaps, plus this minute's. */
function windowed(previous: number, current: number, now: number): number {
  return previous * (1 - (now % MINUTE) / MINUTE) + current;
}

function usd(micro: number): string {
  return `$${(micro / 1e6).toFixed(micro < 10_000 ? 6 : 4)}`;
}

/** A scope's spend counter in this process for the budget period holding `now`. */
function memorySpendKey(scope: QuotaScope, now: number): string {
  return `spend:${scope.id}:${periodBounds(scope.limits.period, now).start}`;
}

/**
 * Counters in this process: right for one replica, and what a replica falls back on while Redis
 * is away (then each replica enforces the limits alone, so together they may allow up to
 * replicas x the limit; the readiness check says so).
 */
export class MemoryQuotaBackend implements QuotaBackend {
  readonly name = "memory";
  private readonly counters = new Map<string, number>();
  private sweptWindow = -1;

  async admit(input: AdmissionInput, now: number): Promise<QuotaRefusal | undefined> {
    this.sweep(now);
    const w = Math.floor(now / MINUTE);
    for (const scope of input.scopes) {
      const l = scope.limits;
      if (l.requestsPerMinute !== undefined) {
        const used = windowed(this.get(`rpm:${scope.id}:${w - 1}`), this.get(`rpm:${scope.id}:${w}`), now);
        if (used + 1 > l.requestsPerMinute) return refusal(scope, "requests_per_minute", now, `${Math.round(used)} of ${l.requestsPerMinute} in the last minute`);
      }
      if (l.tokensPerMinute !== undefined) {
        const used = windowed(this.get(`tpm:${scope.id}:${w - 1}`), this.get(`tpm:${scope.id}:${w}`), now);
        if (used >= l.tokensPerMinute) return refusal(scope, "tokens_per_minute", now, `${Math.round(used)} of ${l.tokensPerMinute} tokens in the last minute`);
      }
      if (l.budgetMicroUsd !== undefined) {
        const spent = this.get(memorySpendKey(scope, now));
        const reserved = this.get(`reserved:${scope.id}`);
        if (spent + reserved >= Number(l.budgetMicroUsd)) {
          return refusal(scope, "budget", now, `${usd(spent)} spent and ${usd(reserved)} held by requests in flight, of ${usd(Number(l.budgetMicroUsd))}`);
        }
      }
    }
    for (const scope of input.scopes) {
      const l = scope.limits;
      if (l.requestsPerMinute !== undefined) this.add(`rpm:${scope.id}:${w}`, 1);
      if (l.tokensPerMinute !== undefined) this.add(`tpm:${scope.id}:${w}`, input.estimatedTokens);
      if (l.budgetMicroUsd !== undefined) this.add(`reserved:${scope.id}`, Number(input.estimatedMicroUsd));
    }
    return undefined;
  }

  async settle(ticket: QuotaTicket, actualMicroUsd: bigint, actualTokens: number, spendOnly = false): Promise<void> {
    const now = Date.now();
    const w = Math.floor(ticket.windowStart / MINUTE);
    for (const scope of ticket.scopes) {
      const l = scope.limits;
      if (!spendOnly && l.tokensPerMinute !== undefined && this.counters.has(`tpm:${scope.id}:${w}`)) this.add(`tpm:${scope.id}:${w}`, actualTokens - ticket.estimatedTokens);
      if (l.budgetMicroUsd !== undefined) {
        if (!spendOnly) this.add(`reserved:${scope.id}`, -Number(ticket.estimatedMicroUsd));
        this.add(memorySpendKey(scope, now), Number(actualMicroUsd));
      }
    }
  }

  async seed(scope: QuotaScope, now: number, spentMicroUsd: bigint): Promise<void> {
    const key = memorySpendKey(scope, now);
    this.counters.set(key, Math.max(this.get(key), Number(spentMicroUsd)));
  }

  async close(): Promise<void> {}

  private get(key: string): number {
    return this.counters.get(key) ?? 0;
  }

  private add(key: string, n: number): void {
    this.counters.set(key, this.get(key) + n);
  }

  /** Drops minute windows older than the last two (budget counters stay for the life of the process). */
  private sweep(now: number): void {
    const w = Math.floor(now / MINUTE);
    if (this.sweptWindow === w) return;
    this.sweptWindow = w;
    for (const key of this.counters.keys()) {
      if (!key.startsWith("rpm:") && !key.startsWith("tpm:")) continue;
      if (Number(key.slice(key.lastIndexOf(":") + 1)) < w - 1) this.counters.delete(key);
    }
  }
}

/**
 * One atomic check-and-count over every scope of a request (a Lua script: no other replica's
 * request can slip between the check and the count). Per scope, 7 keys: requests this minute and
 * the last, tokens this minute and the last, spend this period, the reservations of requests in
 * flight (a sorted set by expiry, so a gateway that dies mid-request frees its holds when they
 * expire) and their sum. A refusal returns {scope index, limit, used, extra}.
 */
const ADMIT = `
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local member = ARGV[3]
local tokens = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local expires = tonumber(ARGV[6])
local weight = tonumber(ARGV[7])
local periodTtl = tonumber(ARGV[8])
for i = 0, n - 1 do
  local k = i * 7
  local a = 9 + i * 3
  local rpm, tpm, budget = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  if rpm > 0 then
    local used = tonumber(redis.call('GET', KEYS[k + 2]) or '0') * weight + tonumber(redis.call('GET', KEYS[k + 1]) or '0')
    if used + 1 > rpm then return {i, 'requests_per_minute', tostring(used), '0'} end
  end
  if tpm > 0 then
    local used = tonumber(redis.call('GET', KEYS[k + 4]) or '0') * weight + tonumber(redis.call('GET', KEYS[k + 3]) or '0')
    if used >= tpm then return {i, 'tokens_per_minute', tostring(used), '0'} end
  end
  if budget > 0 then
    local expired = redis.call('ZRANGEBYSCORE', KEYS[k + 6], '-inf', now)
    if #expired > 0 then
      for _, m in ipairs(expired) do
        redis.call('DECRBY', KEYS[k + 7], tonumber(string.match(m, '|(%d+)$')))
      end
      redis.call('ZREMRANGEBYSCORE', KEYS[k + 6], '-inf', now)
    end
    local spent = tonumber(redis.call('GET', KEYS[k + 5]) or '0')
    local held = tonumber(redis.call('GET', KEYS[k + 7]) or '0')
    if spent + held >= budget then return {i, 'budget', tostring(spent), tostring(held)} end
  end
end
for i = 0, n - 1 do
  local k = i * 7
  local a = 9 + i * 3
  if tonumber(ARGV[a]) > 0 then
    redis.call('INCR', KEYS[k + 1])
    redis.call('PEXPIRE', KEYS[k + 1], 180000)
  end
  if tonumber(ARGV[a + 1]) > 0 then
    redis.call('INCRBY', KEYS[k + 3], tokens)
    redis.call('PEXPIRE', KEYS[k + 3], 180000)
  end
  if tonumber(ARGV[a + 2]) > 0 then
    redis.call('ZADD', KEYS[k + 6], expires, member)
    redis.call('INCRBY', KEYS[k + 7], cost)
    redis.call('PEXPIRE', KEYS[k + 6], periodTtl)
    redis.call('PEXPIRE', KEYS[k + 7], periodTtl)
  end
end
return {-1}
`;

/** Per scope, 3 keys: tokens of the admission's minute, spend this period, reservations, their sum (4 keys). */
const SETTLE = `
local n = tonumber(ARGV[1])
local member = ARGV[2]
local tokenDelta = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local periodTtl = tonumber(ARGV[5])
local spendOnly = ARGV[6] == '1'
for i = 0, n - 1 do
  local k = i * 4
  local a = 7 + i * 2
  if tonumber(ARGV[a]) > 0 and redis.call('EXISTS', KEYS[k + 1]) == 1 then
    redis.call('INCRBY', KEYS[k + 1], tokenDelta)
  end
  if tonumber(ARGV[a + 1]) > 0 then
    -- The hold is the receipt: a settle repeated (a retry after a timeout that had in fact run)
    -- finds it gone and counts nothing twice.
    if spendOnly or redis.call('ZREM', KEYS[k + 3], member) == 1 then
      if not spendOnly then redis.call('DECRBY', KEYS[k + 4], tonumber(string.match(member, '|(%d+)$'))) end
      redis.call('INCRBY', KEYS[k + 2], cost)
      redis.call('PEXPIRE', KEYS[k + 2], periodTtl)
    end
  end
end
return 1
`;

/** Raises a spend counter to the books' figure (never lowers it: what the counter holds was spent too). */
const SEED = `
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
`;

/** The Lua scripts as client methods (ioredis `defineCommand`: number of keys, keys, then arguments). */
interface QuotaCommands {
  quotaAdmit(numberOfKeys: number, ...keysAndArgs: (string | number)[]): Promise<[number, string?, string?, string?]>;
  quotaSettle(numberOfKeys: number, ...keysAndArgs: (string | number)[]): Promise<unknown>;
  quotaSeed(key: string, value: string, ttlMs: number): Promise<unknown>;
}

/**
 * Counters in Redis, shared by every gateway replica. Why Redis: the checks sit on every request's
 * path and must be atomic across replicas; one Lua call is one round trip (about 0.1 ms on a LAN)
 * and Redis already serves the shared cache. Postgres would put a row lock on every request; NATS KV
 * has compare-and-set but one round trip per key. Spend counters outlive a Redis restart only if it
 * persists; the ledger keeps the exact books either way.
 */
export class RedisQuotaBackend implements QuotaBackend {
  readonly name = "redis";
  private readonly redis: Redis;
  /** The scripts above, as ioredis adds them to the client. */
  private readonly commands: QuotaCommands;
  /** Settles once the first connection is up (or has had its chance): calls wait for it, not later ones. */
  private readonly firstConnect: Promise<void>;

  constructor(
    url: string,
    private readonly prefix: string,
    timeoutMs: number,
    private readonly requestTimeoutMs: number,
  ) {
    this.redis = new Redis(url, {
      lazyConnect: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: Math.max(timeoutMs, 1_000),
      commandTimeout: timeoutMs,
      retryStrategy: (times) => Math.min(times * 200, 2_000),
    });
    // Errors surface on each call (and fall back); the client must not throw them at the process.
    this.redis.on("error", () => {});
    this.firstConnect = new Promise<void>((resolve) => {
      this.redis.once("ready", () => resolve());
      setTimeout(resolve, Math.max(timeoutMs, 1_000)).unref();
    });
    this.redis.defineCommand("quotaAdmit", { lua: ADMIT });
    this.redis.defineCommand("quotaSettle", { lua: SETTLE });
    this.redis.defineCommand("quotaSeed", { numberOfKeys: 1, lua: SEED });
    this.commands = this.redis as unknown as QuotaCommands;
  }

  /** A scope's spend counter in Redis for the budget period holding `now`, and how long to keep it (a day past the period's end). */
  private spendKey(scope: QuotaScope, now: number): { key: string; ttlMs: number } {
    const { start, end } = periodBounds(scope.limits.period, now);
    return { key: `${this.prefix}${scope.id}:spend:${scope.limits.period}:${start}`, ttlMs: end - now + 86_400_000 };
  }

  /** Throws at once while Redis is away (the caller falls back), instead of queueing behind a reconnect. */
  private async ready(): Promise<void> {
    if (this.redis.status === "ready") return;
    await this.firstConnect;
    // Read again: the status changed while waiting (TypeScript narrowed it before the await).
    const status: string = this.redis.status;
    if (status !== "ready") throw new Error(`redis is ${status}`);
  }

  async admit(input: AdmissionInput, now: number): Promise<QuotaRefusal | undefined> {
    await this.ready();
    const w = Math.floor(now / MINUTE);
    const keys: string[] = [];
    const limitArgs: (string | number)[] = [];
    let periodTtl = MINUTE;
    for (const s of input.scopes) {
      const spend = this.spendKey(s, now);
      periodTtl = Math.max(periodTtl, spend.ttlMs);
      const p = `${this.prefix}${s.id}`;
      keys.push(`${p}:rpm:${w}`, `${p}:rpm:${w - 1}`, `${p}:tpm:${w}`, `${p}:tpm:${w - 1}`, spend.key, `${p}:held`, `${p}:held-sum`);
      limitArgs.push(s.limits.requestsPerMinute ?? 0, s.limits.tokensPerMinute ?? 0, String(s.limits.budgetMicroUsd ?? 0n));
    }
    const weight = 1 - (now % MINUTE) / MINUTE;
    const args = [now, input.scopes.length, member(input.requestId, input.estimatedMicroUsd), input.estimatedTokens, String(input.estimatedMicroUsd), now + this.requestTimeoutMs + HOLD_GRACE_MS, weight, periodTtl, ...limitArgs];
    const res = await this.commands.quotaAdmit(keys.length, ...keys, ...args);
    if (res[0] === -1) return undefined;
    const scope = input.scopes[res[0]]!;
    const used = Number(res[2]);
    const held = Number(res[3]);
    const l = scope.limits;
    if (res[1] === "budget") return refusal(scope, "budget", now, `${usd(used)} spent and ${usd(held)} held by requests in flight, of ${usd(Number(l.budgetMicroUsd))}`);
    if (res[1] === "requests_per_minute") return refusal(scope, "requests_per_minute", now, `${Math.round(used)} of ${l.requestsPerMinute} in the last minute`);
    return refusal(scope, "tokens_per_minute", now, `${Math.round(used)} of ${l.tokensPerMinute} tokens in the last minute`);
  }

  async settle(ticket: QuotaTicket, actualMicroUsd: bigint, actualTokens: number, spendOnly = false): Promise<void> {
    await this.ready();
    const now = Date.now();
    const w = Math.floor(ticket.windowStart / MINUTE);
    const keys: string[] = [];
    const flags: number[] = [];
    let periodTtl = MINUTE;
    for (const s of ticket.scopes) {
      const spend = this.spendKey(s, now);
      periodTtl = Math.max(periodTtl, spend.ttlMs);
      const p = `${this.prefix}${s.id}`;
      keys.push(`${p}:tpm:${w}`, spend.key, `${p}:held`, `${p}:held-sum`);
      flags.push(s.limits.tokensPerMinute ? 1 : 0, s.limits.budgetMicroUsd ? 1 : 0);
    }
    await this.commands.quotaSettle(
      keys.length,
      ...keys,
      ticket.scopes.length,
      member(ticket.requestId, ticket.estimatedMicroUsd),
      actualTokens - ticket.estimatedTokens,
      String(actualMicroUsd),
      periodTtl,
      spendOnly ? "1" : "0",
      ...flags,
    );
  }

  async seed(scope: QuotaScope, now: number, spentMicroUsd: bigint): Promise<void> {
    await this.ready();
    const spend = this.spendKey(scope, now);
    await this.commands.quotaSeed(spend.key, String(spentMicroUsd), spend.ttlMs);
  }

  /** Calls `handler` whenever the connection comes back after a loss (Redis may have lost its data). */
  onReconnect(handler: () => void): void {
    let connectedBefore = this.redis.status === "ready";
    this.redis.on("ready", () => {
      if (connectedBefore) handler();
      connectedBefore = true;
    });
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}

/** A reservation's member in the sorted set: the request id and its amount (so an expired one can be subtracted). */
function member(requestId: string, micro: bigint): string {
  return `${requestId}|${micro}`;
}

export interface QuotaEnforcerOptions {
  config: Config;
  logger: Logger;
  /** Prices the estimate of a request (micro-dollars) from its token estimates. */
  estimateCost: (tenant: string, inputTokens: number, outputTokens: number) => bigint;
  /** Counts a fallback to this replica's counters. */
  onFallback?: () => void;
  /**
   * What the books (the ledger) say a scope spent since a time; undefined when they cannot say.
   * Budget counters start from it, so a restarted gateway, or a Redis that lost its data, does not
   * forget this period's spend.
   */
  spentSince?: (scope: QuotaScope, sinceMs: number) => Promise<bigint | undefined>;
}

/** A settle waiting to be retried: on which counters, and whether only its spend is to be added (see settle). */
interface Unsettled {
  ticket: QuotaTicket;
  backend: QuotaBackend;
  spendOnly: boolean;
  actualMicroUsd: bigint;
  actualTokens: number;
  giveUpAt: number;
}

/** After a Redis failure, how long admissions count in the replica alone before trying Redis again. */
const SHARED_PAUSE_MS = 2_000;

/** After the books could not be read, how long before asking them again. */
const SEED_RETRY_MS = 10_000;

/**
 * Budgets and rate limits at admission. Each request counts against its tenant's limits (from the
 * configuration) and its key's (keys created at run time). The estimate (input characters / 4,
 * plus max_tokens or the default output) holds part of the budget while the request runs; the real
 * cost replaces it when the answer ends, so requests admitted together overshoot a budget by at
 * most what they cost beyond their estimates. Redis errors fall back to this replica's counters
 * (limits then hold per replica) rather than refusing traffic.
 */
export class QuotaEnforcer {
  private readonly tenants = new Map<string, QuotaLimits>();
  private readonly local = new MemoryQuotaBackend();
  private readonly shared: RedisQuotaBackend | undefined;
  private degraded = "";
  private readonly unsettled: Unsettled[] = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private retrying = false;
  /** Until when admissions skip Redis after it failed (ms since epoch). */
  private sharedPausedUntil = 0;
  /** Budget counters started from the books: "scope|period start" -> done (true) or when to try again. */
  private readonly seeded = new Map<string, true | number>();
  private readonly seeding = new Map<string, Promise<void>>();

  constructor(private readonly options: QuotaEnforcerOptions) {
    const { config } = options;
    for (const t of config.tenants) {
      const l = tenantLimits(t);
      if (l) this.tenants.set(t.name, l);
    }
    if (config.quotas.backend === "redis") {
      this.shared = new RedisQuotaBackend(config.quotas.redis_url, config.quotas.key_prefix, config.quotas.timeout_ms, config.limits.request_timeout_ms);
      // A Redis that comes back may have come back empty: start the budgets from the books again.
      this.shared.onReconnect(() => this.seeded.clear());
    }
  }

  /** For readiness: which counters are in use. */
  get state(): string {
    if (!this.shared) return "memory (this replica only)";
    return this.degraded ? `degraded: ${this.degraded}; counting per replica` : "redis";
  }

  /**
   * Admits a request or says why not. Resolves to undefined when no limit applies (nothing to settle).
   */
  async admit(
    request: { requestId: string; tenant: string; keyId: string; keyLimits?: QuotaLimits | undefined; inputChars: number; maxOutputTokens?: number | undefined; defaultOutputTokens: number },
  ): Promise<{ ticket?: QuotaTicket; refusal?: QuotaRefusal }> {
    const scopes: QuotaScope[] = [];
    const tenant = this.tenants.get(request.tenant);
    if (tenant) scopes.push({ id: `tenant:${request.tenant}`, limits: tenant, owner: { tenant: request.tenant } });
    if (request.keyLimits && request.keyId) scopes.push({ id: `key:${request.keyId}`, limits: request.keyLimits, owner: { keyId: request.keyId } });
    if (scopes.length === 0) return {};
    const inputTokens = Math.ceil(request.inputChars / 4);
    const outputTokens = request.maxOutputTokens ?? request.defaultOutputTokens;
    const input: AdmissionInput = {
      requestId: request.requestId,
      scopes,
      estimatedTokens: inputTokens + outputTokens,
      estimatedMicroUsd: this.options.estimateCost(request.tenant, inputTokens, outputTokens),
    };
    const now = Date.now();
    // After a Redis failure, this replica counts alone for a moment instead of waiting out the
    // timeout on every admission.
    let backend: QuotaBackend = this.shared && now >= this.sharedPausedUntil ? this.shared : this.local;
    let refused: QuotaRefusal | undefined;
    try {
      await this.seedBudgets(backend, scopes, now);
      refused = await backend.admit(input, now);
      if (this.degraded && backend === this.shared) {
        this.options.logger.info("quota counters in Redis are back");
        this.degraded = "";
        // What was spent meanwhile is in the books (or on its way): raise the shared budgets to it.
        this.seeded.clear();
      }
    } catch (err) {
      if (backend !== this.shared) throw err;
      if (!this.degraded) this.options.logger.warn("quota counters in Redis unavailable; counting in this replica", { error: (err as Error).message });
      this.degraded = "redis unreachable";
      this.sharedPausedUntil = now + SHARED_PAUSE_MS;
      backend = this.local;
      await this.seedBudgets(backend, scopes, now).catch(() => {});
      refused = await backend.admit(input, now);
    }
    if (backend !== this.shared && this.shared) this.options.onFallback?.();
    if (refused) return { refusal: refused };
    return { ticket: { ...input, windowStart: now, backend } };
  }

  /**
   * Raises each budget's counter for this period to what the books say, once per process (and again
   * after Redis reconnects or comes back from a failure): a counter is never lowered. While the books cannot be
   * read, requests are admitted on the counters as they are, and the books are asked again later.
   */
  private async seedBudgets(backend: QuotaBackend, scopes: QuotaScope[], now: number): Promise<void> {
    const spentSince = this.options.spentSince;
    if (!spentSince) return;
    await Promise.all(
      scopes
        .filter((s) => s.limits.budgetMicroUsd !== undefined)
        .map((scope) => {
          const start = periodBounds(scope.limits.period, now).start;
          const key = `${backend.name}|${scope.id}|${start}`;
          const state = this.seeded.get(key);
          if (state === true || (typeof state === "number" && state > now)) return;
          let flight = this.seeding.get(key);
          if (!flight) {
            flight = (async () => {
              const spent = await spentSince(scope, start).catch(() => undefined);
              if (spent === undefined) {
                this.seeded.set(key, now + SEED_RETRY_MS);
                return;
              }
              await backend.seed(scope, now, spent);
              this.seeded.set(key, true);
            })().finally(() => this.seeding.delete(key));
            this.seeding.set(key, flight);
          }
          return flight;
        }),
    );
  }

  /**
   * Ends an admitted request with what it really cost. Never throws: a settle Redis does not take
   * is retried every second for up to ten minutes (spend must not go uncounted; a retry of a
   * settle that did run counts nothing twice), and its hold expires by itself meanwhile. A request
   * admitted on this replica's own counters while Redis was away also adds its spend to the shared
   * budget, so the other replicas see it once Redis is back.
   */
  async settle(ticket: QuotaTicket | undefined, actualMicroUsd: bigint, actualTokens: number): Promise<void> {
    if (!ticket) return;
    const jobs: Unsettled[] = [{ ticket, backend: ticket.backend, spendOnly: false, actualMicroUsd, actualTokens, giveUpAt: Date.now() + SETTLE_RETRY_MS }];
    if (this.shared && ticket.backend !== this.shared && ticket.scopes.some((s) => s.limits.budgetMicroUsd !== undefined)) {
      jobs.push({ ticket, backend: this.shared, spendOnly: true, actualMicroUsd, actualTokens: ticket.estimatedTokens, giveUpAt: Date.now() + SETTLE_RETRY_MS });
    }
    for (const job of jobs) {
      try {
        await job.backend.settle(job.ticket, job.actualMicroUsd, job.actualTokens, job.spendOnly);
      } catch (err) {
        if (this.unsettled.length === 0) this.options.logger.warn("could not settle quota counters; retrying", { request_id: ticket.requestId, error: (err as Error).message });
        if (this.unsettled.length >= MAX_UNSETTLED) this.unsettled.shift();
        this.unsettled.push(job);
        this.scheduleRetry();
      }
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.retrying) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.retrySettles();
    }, 1_000);
    this.retryTimer.unref();
  }

  private async retrySettles(): Promise<void> {
    if (this.retrying) return;
    this.retrying = true;
    try {
      const due = this.unsettled.splice(0);
      for (const u of due) {
        try {
          await u.backend.settle(u.ticket, u.actualMicroUsd, u.actualTokens, u.spendOnly);
        } catch {
          if (Date.now() < u.giveUpAt) this.unsettled.push(u);
          else this.options.logger.error("gave up settling a request's quota counters: its spend is not counted against the budget", { request_id: u.ticket.requestId });
        }
      }
    } finally {
      this.retrying = false;
      if (this.unsettled.length > 0) this.scheduleRetry();
    }
  }

  async close(): Promise<void> {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.unsettled.length > 0) await this.retrySettles();
    clearTimeout(this.retryTimer);
    await this.shared?.close();
  }
}
