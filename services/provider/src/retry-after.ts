import { ErrorKind, ProviderFailure } from "./adapters/types.js";

/** The longest wait an upstream's `retry-after` imposes; past it one request probes again. */
export const MAX_RETRY_AFTER_MS = 60_000;

/**
 * What one provider's upstream asked for with `retry-after` (or `retry-after-ms`): after a 429, no
 * request for that model until the time has passed; after an overloaded answer (5xx) with a
 * retry-after, none for any model of the provider. Meanwhile calls fail at once with
 * RATE_LIMITED, without reaching the upstream, so the gateway takes its next route. Each provider
 * replica learns it from its own calls; the policy's circuit (from health broadcasts) is a
 * separate, coarser mechanism that knows nothing of the upstream's own deadline.
 */
export class RetryAfter {
  /** Unix ms before which no call may go out, by model ("" = every model of the provider). */
  private readonly until = new Map<string, number>();

  constructor(
    private readonly now: () => number = Date.now,
    private readonly maxMs = MAX_RETRY_AFTER_MS,
  ) {}

  /** Milliseconds before `model` may be called again; 0 when it may be now. */
  remaining(model: string): number {
    const t = this.now();
    const wait = Math.max(this.until.get(model) ?? 0, this.until.get("") ?? 0) - t;
    return wait > 0 ? wait : 0;
  }

  /** Takes note of a failed call: a retry-after on a rate limit or an overloaded answer starts a wait. */
  note(model: string, failure: ProviderFailure): void {
    if (failure.retryAfterMs <= 0) return;
    const key = failure.kind === ErrorKind.RATE_LIMITED ? model : failure.kind === ErrorKind.OVERLOADED ? "" : undefined;
    if (key === undefined) return;
    const until = this.now() + Math.min(failure.retryAfterMs, this.maxMs);
    if (until > (this.until.get(key) ?? 0)) this.until.set(key, until);
  }

  /** The failure a call gets while it must wait. */
  refusal(label: string, waitMs: number): ProviderFailure {
    return new ProviderFailure(ErrorKind.RATE_LIMITED, `${label}: the upstream asked to wait (retry-after); ${Math.ceil(waitMs / 1000)} s left`, 429, waitMs);
  }
}
