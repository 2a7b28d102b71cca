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
  ewmaTotalMs: number;
  errorRate: number;
  consecutiveFailures: number;
  inFlight: number;
  observedAtMs: number;
  openedAtMs: number | undefined;
  /** observed_at of the report that opened the circuit (the reporter's clock). */
  openedBy: number;
  /** When this policy received the report (its own clock), to forget replicas that went away. */
  receivedAtMs: number;
}

/** A reporter not heard from for this long no longer counts (heartbeats come every second). */
const REPORTER_TTL_MS = 30_000;

/**
 * Health of every model as the provider replicas report it, and the circuit state derived from
 * it: open after consecutive failures or a high error rate, half-open after a cool-down (traffic
 * flows again; the next failure re-opens it), closed once a success is reported. Each provider
 * replica's reports keep their own circuit; the model's circuit is open when at least half of the
 * replicas heard from recently see it open, half-open when any does, closed otherwise, so one
 * replica's success cannot close what another's failures opened, nor the reverse.
 */
export class HealthTable {
  private readonly models = new Map<string, Map<string, ModelHealthState>>();

  constructor(
    private readonly options: CircuitOptions = DEFAULT_CIRCUIT,
    private readonly now: () => number = Date.now,
  ) {}

  apply(update: events.HealthUpdate): void {
    const id = `${update.provider}/${update.model}`;
    let reporters = this.models.get(id);
    if (!reporters) this.models.set(id, (reporters = new Map()));
    const prev = reporters.get(update.reporter);
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
    reporters.set(update.reporter, {
      ewmaTtftMs: update.ewmaTtftMs,
      ewmaTotalMs: update.ewmaTotalMs,
      errorRate: update.errorRate,
      consecutiveFailures: update.consecutiveFailures,
      inFlight: update.inFlight,
      observedAtMs: observedAt,
      openedAtMs,
      openedBy,
      receivedAtMs: this.now(),
    });
  }

  circuit(id: string): Circuit {
    const states = this.recent(id).map((s) => this.circuitOf(s));
    if (states.length === 0) return "closed";
    const open = states.filter((c) => c === "open").length;
    if (open * 2 >= states.length) return "open";
    return states.some((c) => c !== "closed") ? "half_open" : "closed";
  }

  /** Mean observed time to first token over the replicas that report one. */
  ttftMs(id: string): number | undefined {
    const observed = this.recent(id).filter((s) => s.ewmaTtftMs > 0);
    return observed.length === 0 ? undefined : observed.reduce((sum, s) => sum + s.ewmaTtftMs, 0) / observed.length;
  }

  /**
   * Mean observed time from the first token to the end of an answer (total minus time to first
   * token) over the replicas that report both: how fast a model streams once it started.
   */
  generationMs(id: string): number | undefined {
    const observed = this.recent(id).filter((s) => s.ewmaTtftMs > 0 && s.ewmaTotalMs >= s.ewmaTtftMs);
    return observed.length === 0 ? undefined : observed.reduce((sum, s) => sum + (s.ewmaTotalMs - s.ewmaTtftMs), 0) / observed.length;
  }

  private recent(id: string): ModelHealthState[] {
    const reporters = this.models.get(id);
    if (!reporters) return [];
    const now = this.now();
    for (const [reporter, s] of reporters) if (now - s.receivedAtMs > REPORTER_TTL_MS) reporters.delete(reporter);
    return [...reporters.values()];
  }

  private circuitOf(s: ModelHealthState | undefined): Circuit {
    if (!s || s.openedAtMs === undefined) return "closed";
    return this.now() - s.openedAtMs >= this.options.openMs ? "half_open" : "open";
  }
}
