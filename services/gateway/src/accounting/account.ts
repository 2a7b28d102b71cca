import { create } from "@bufbuild/protobuf";
import type { Config } from "@switchyard/config";
import { events } from "@switchyard/proto";
import { costMicroUsd } from "@switchyard/usage/cost";
import { GatewayError } from "../errors.js";
import type { GatewayMetrics } from "../metrics.js";
import type { CompletionEvent, CompletionRequest, RouteTaken } from "../orchestrator.js";
import type { Caller } from "../tenants.js";
import type { PriceBook } from "./prices.js";
import type { UsagePublisher } from "./publisher.js";
import type { QuotaEnforcer, QuotaTicket } from "./quotas.js";

/** What a completion's `done` event carries once the account has priced it against the baseline. */
export interface BaselineCost {
  model: string;
  microUsd: bigint;
}

/** The API a request came in on, as the ledger records it. */
export type ApiName = "openai" | "grpc" | "anthropic" | "responses";

/**
 * The books of the gateway: admission against budgets and rate limits, and one usage record per
 * request, whatever API it came in on. Each entry point opens an account per request, lets it
 * admit the request, passes the completion's events through it, and closes it with the status the
 * client got; the account settles the quota counters and publishes the record.
 */
export class Accounting {
  constructor(
    private readonly config: Config,
    readonly prices: PriceBook,
    readonly quotas: QuotaEnforcer,
    readonly publisher: UsagePublisher,
    private readonly metrics: GatewayMetrics,
  ) {}

  /** Accounts opened and not closed yet: requests still running. */
  private openAccounts = 0;
  private drained: (() => void) | undefined;

  open(init: { requestId: string; traceId: string; api: ApiName; receivedAt: number }): RequestAccount {
    this.openAccounts++;
    return new RequestAccount(this, this.config, this.metrics, init);
  }

  /** An account closed (called by RequestAccount.close, once). */
  released(): void {
    this.openAccounts--;
    if (this.openAccounts === 0) this.drained?.();
  }

  /**
   * Waits until every open account has closed (requests cut short by the shutdown unwind a few
   * ticks after their connections go), at most `deadlineMs`; resolves to how many are still open.
   */
  async drain(deadlineMs: number): Promise<number> {
    if (this.openAccounts > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadlineMs);
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.drained = undefined;
    }
    return this.openAccounts;
  }
}

/** One request's account (see `Accounting`). Not reused. */
export class RequestAccount {
  private caller: Caller | undefined;
  private request: CompletionRequest | undefined;
  private streamed = false;
  private ticket: QuotaTicket | undefined;
  private inputChars = 0;
  private route: RouteTaken | undefined;
  private done: Extract<CompletionEvent, { type: "done" }> | undefined;
  private firstTokenAt = 0;
  private streamedChars = 0;
  private closed = false;
  private readonly startedAtMs = Date.now();

  constructor(
    private readonly books: Accounting,
    private readonly config: Config,
    private readonly metrics: GatewayMetrics,
    private readonly init: { requestId: string; traceId: string; api: ApiName; receivedAt: number },
  ) {}

  /** The caller, once authenticated: from here on the request is on the books, whatever happens. */
  identify(caller: Caller): void {
    this.caller = caller;
  }

  /**
   * Admits the request against its tenant's and key's budgets and rate limits.
   * @throws GatewayError 429 `budget_exceeded` or `rate_limited`, with `retry-after`
   */
  async admit(request: CompletionRequest, streamed: boolean): Promise<void> {
    this.request = request;
    this.streamed = streamed;
    this.inputChars = request.messages.reduce((n, m) => n + m.content.length, 0) + (request.conversation?.reduce((n, t) => n + t.content.length, 0) ?? 0);
    const caller = this.caller!;
    const choice = request.choice;
    const tier = choice.kind === "tier" ? this.config.tiers.find((t) => t.name === choice.tier) : undefined;
    const { ticket, refusal } = await this.books.quotas.admit({
      requestId: request.requestId,
      tenant: caller.tenant,
      keyId: caller.keyId,
      keyLimits: caller.keyLimits,
      inputChars: this.inputChars,
      maxOutputTokens: request.sampling.maxTokens,
      defaultOutputTokens: Math.max(this.config.quotas.default_output_tokens, tier?.expected_output_tokens ?? 0),
    });
    if (refusal) {
      this.metrics.quotaRefusals.inc({ limit: refusal.limit });
      throw new GatewayError(429, "rate_limit_error", refusal.limit === "budget" ? "budget_exceeded" : "rate_limited", refusal.message, null, refusal.retryAfterSeconds);
    }
    this.ticket = ticket;
  }

  /** Passes a completion's events through, noting the route, the first token and the end; prices the end against the baseline. */
  async *track(events: AsyncGenerator<CompletionEvent>): AsyncGenerator<CompletionEvent> {
    for await (const event of events) {
      if (event.type === "routed") this.route = event.route;
      else if (event.type === "delta") {
        if (this.firstTokenAt === 0 && event.text !== "") this.firstTokenAt = performance.now();
        this.streamedChars += event.text.length;
      } else if (event.type === "tool_call") {
        if (this.firstTokenAt === 0) this.firstTokenAt = performance.now();
        this.streamedChars += event.arguments.length + event.name.length;
      } else if (event.type === "done") {
        this.route = event.route;
        const tenant = this.caller?.tenant ?? "";
        const baseline: BaselineCost = { model: this.books.prices.baselineModel(tenant), microUsd: this.books.prices.baselineCost(tenant, event.usage) };
        this.done = { ...event, baseline };
        yield this.done;
        continue;
      }
      yield event;
    }
  }

  /**
   * Ends the account with what the client got: settles the quota counters with the real cost and
   * publishes the usage record. Idempotent. A request that never identified its caller (a bad key)
   * is not on the books.
   */
  close(status: number, errorCode = ""): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.book(status, errorCode);
    } finally {
      this.books.released();
    }
  }

  private book(status: number, errorCode: string): void {
    const caller = this.caller;
    if (!caller) return;
    const { cost, usage, estimated } = this.charge();
    void this.books.quotas.settle(this.ticket, cost, usage.inputTokens + usage.outputTokens);
    const route = this.route;
    const done = this.done;
    const baseline = done?.baseline ?? { model: this.books.prices.baselineModel(caller.tenant), microUsd: this.books.prices.baselineCost(caller.tenant, usage) };
    const now = performance.now();
    const record = create(events.UsageRecordSchema, {
      requestId: this.init.requestId,
      timeUnixMs: BigInt(this.startedAtMs),
      tenant: caller.tenant,
      keyId: caller.keyId,
      api: this.init.api,
      requestedModel: this.request?.requestedModel ?? "",
      tier: route?.tier ?? "",
      model: route?.id ?? "",
      provider: route?.provider ?? "",
      reason: route?.reason ?? "",
      taskType: route?.taskType ?? "",
      fallbacks: route?.fallbacks ?? 0,
      cache: route?.cache ?? "",
      cacheKind: route?.cacheKind ?? "",
      inputTokens: BigInt(usage.inputTokens),
      outputTokens: BigInt(usage.outputTokens),
      cachedInputTokens: BigInt(usage.cachedInputTokens),
      usageEstimated: estimated,
      costMicroUsd: cost,
      baselineMicroUsd: baseline.microUsd,
      savedMicroUsd: baseline.microUsd - cost,
      cacheSavedMicroUsd: route?.cache === "hit" ? (done?.savedMicroUsd ?? 0n) : 0n,
      baselineModel: baseline.model,
      ttftMs: this.firstTokenAt > 0 ? round2(this.firstTokenAt - this.init.receivedAt) : 0,
      totalMs: round2(now - this.init.receivedAt),
      status,
      errorCode,
      traceId: this.init.traceId,
      finishReason: done?.finishReason ?? "",
      streamed: this.streamed,
    });
    this.books.publisher.publish(record);
  }

  /**
   * What the request cost. A finished answer: what the provider reported. An answer cut short
   * (client gone, upstream broke) still cost what was generated: estimated from the text streamed
   * (4 characters a token) at the route's price. Nothing generated: nothing charged.
   */
  private charge(): { cost: bigint; usage: { inputTokens: number; outputTokens: number; cachedInputTokens: number }; estimated: boolean } {
    if (this.done) return { cost: this.done.costMicroUsd, usage: this.done.usage, estimated: this.done.usage.estimated };
    const route = this.route;
    if (!route || route.cache === "hit" || this.streamedChars === 0) return { cost: 0n, usage: { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0 }, estimated: false };
    const usage = { inputTokens: Math.ceil(this.inputChars / 4), outputTokens: Math.ceil(this.streamedChars / 4), cachedInputTokens: 0 };
    const cost = route.price ? costMicroUsd({ inputTokens: BigInt(usage.inputTokens), outputTokens: BigInt(usage.outputTokens) }, route.price) : 0n;
    return { cost, usage, estimated: true };
  }
}

function round2(ms: number): number {
  return Math.round(ms * 100) / 100;
}
