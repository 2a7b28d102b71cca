/** What one replica has observed of one provider model. */
export interface ModelObservation {
  provider: string;
  model: string;
  ewmaTtftMs: number;
  ewmaTotalMs: number;
  /** EWMA of the failure indicator, in [0, 1]. */
  errorRate: number;
  inFlight: number;
  consecutiveFailures: number;
  requests: number;
  observedAtMs: number;
}

/** Weight of the newest observation in every moving average. */
const ALPHA = 0.2;

/**
 * Health observations per provider and model, from the calls this replica makes: EWMA time to
 * first token and total latency, EWMA error rate, in-flight count, consecutive failures.
 * Failures the client caused (bad request) are not counted against the provider.
 */
export class HealthTracker {
  private readonly models = new Map<string, ModelObservation>();
  private readonly listeners = new Set<(o: ModelObservation) => void>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Registers a callback run after every change. */
  onChange(listener: (o: ModelObservation) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  started(provider: string, model: string): void {
    const o = this.entry(provider, model);
    o.inFlight++;
  }

  /** The call ended. `ttftMs` is undefined when no token arrived. */
  finished(provider: string, model: string, outcome: { ok: boolean; ttftMs?: number; totalMs: number; countsAgainstProvider: boolean }): void {
    const o = this.entry(provider, model);
    o.inFlight = Math.max(0, o.inFlight - 1);
    o.requests++;
    o.observedAtMs = this.now();
    if (outcome.ok || !outcome.countsAgainstProvider) {
      if (outcome.ttftMs !== undefined) o.ewmaTtftMs = ewma(o.ewmaTtftMs, outcome.ttftMs, o.requests);
      o.ewmaTotalMs = ewma(o.ewmaTotalMs, outcome.totalMs, o.requests);
    }
    if (outcome.countsAgainstProvider || outcome.ok) {
      o.errorRate = ewma(o.errorRate, outcome.ok ? 0 : 1, o.requests);
      o.consecutiveFailures = outcome.ok ? 0 : o.consecutiveFailures + 1;
    }
    for (const l of this.listeners) l(o);
  }

  snapshot(): ModelObservation[] {
    return [...this.models.values()].map((o) => ({ ...o }));
  }

  private entry(provider: string, model: string): ModelObservation {
    const key = `${provider}/${model}`;
    let o = this.models.get(key);
    if (!o) {
      o = { provider, model, ewmaTtftMs: 0, ewmaTotalMs: 0, errorRate: 0, inFlight: 0, consecutiveFailures: 0, requests: 0, observedAtMs: this.now() };
      this.models.set(key, o);
    }
    return o;
  }
}

function ewma(previous: number, sample: number, count: number): number {
  return count <= 1 ? sample : previous + ALPHA * (sample - previous);
}
