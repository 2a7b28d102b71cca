import type { events } from "@switchyard/proto";

export type Circuit = "closed" | "open" | "half_open";

export interface CircuitOptions {
  /** Open after this many failures in a row. */
  consecutiveFailures: number;
  /** Open when the EWMA error rate goes over this. */
  errorRate: number;
  /** Stay open this long, then let probes through (half-open). */
  openMs: number;
}

export const DEFAULT_CIRCUIT: CircuitOptions = { consecutiveFailures: 3, errorRate: 0.5, openMs: 10_000 };

interface ModelHealthState {
  ewmaTtftMs: number;
  errorRate: number;
  consecutiveFailures: number;
  inFlight: number;
  observedAtMs: number;
  openedAtMs: number | undefined;
  /** observed_at of the report that opened the circuit (the reporter's clock). */
  openedBy: number;
}

/**
 * Health of every model as the provider replicas report it, and the circuit state derived from
 * it: open after consecutive failures or a high error rate, half-open after a cool-down (traffic
 * flows again; the next failure re-opens it), closed once a success is reported.
 */
export class HealthTable {
  private readonly models = new Map<string, ModelHealthState>();

  constructor(
    private readonly options: CircuitOptions = DEFAULT_CIRCUIT,
    private readonly now: () => number = Date.now,
  ) {}

  apply(update: events.HealthUpdate): void {
    const id = `${update.provider}/${update.model}`;
    const prev = this.models.get(id);
    const failing = update.consecutiveFailures >= this.options.consecutiveFailures || update.errorRate > this.options.errorRate;
    const healthy = update.consecutiveFailures === 0;
    let openedAtMs = prev?.openedAtMs;
    let openedBy = prev?.openedBy ?? 0;
    // Provider replicas repeat their last snapshot as a heartbeat: only an observation newer than
    // the one that opened the circuit (a probe that failed) may re-open a half-open circuit. Both
    // timestamps come from the reporting replica's clock, so clock skew does not matter.
    const observedAt = Number(update.observedAtUnixMs);
    const fresh = observedAt > openedBy;
    if (failing && (openedAtMs === undefined || (!healthy && fresh && this.circuitOf(prev) === "half_open"))) {
      openedAtMs = this.now();
      openedBy = observedAt;
    }
    if (healthy && update.errorRate <= this.options.errorRate) {
      openedAtMs = undefined;
      openedBy = 0;
    }
    this.models.set(id, {
      ewmaTtftMs: update.ewmaTtftMs,
      errorRate: update.errorRate,
      consecutiveFailures: update.consecutiveFailures,
      inFlight: update.inFlight,
      observedAtMs: observedAt,
      openedAtMs,
      openedBy,
    });
  }

  circuit(id: string): Circuit {
    return this.circuitOf(this.models.get(id));
  }

  ttftMs(id: string): number | undefined {
    const s = this.models.get(id);
    return s && s.ewmaTtftMs > 0 ? s.ewmaTtftMs : undefined;
  }

  private circuitOf(s: ModelHealthState | undefined): Circuit {
    if (!s || s.openedAtMs === undefined) return "closed";
    return this.now() - s.openedAtMs >= this.options.openMs ? "half_open" : "open";
  }
}
