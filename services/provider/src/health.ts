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

/** Samples behind each moving average: an average starts at its first sample, not at zero. */
interface SampleCounts {
  ttft: number;
  total: number;
  outcome: number;
}

/**
 * Health observations per provider and model, from the calls this replica makes: EWMA time to
 * first token and total latency, EWMA error rate, in-flight count, consecutive failures.
 * Failures the caller caused (bad request, caller gone) are not counted against the provider;
 * total latency is taken from complete answers only (a fast failure is not a fast answer).
 */
export class HealthTracker {
  private readonly models = new Map<string, ModelObservation>();
  private readonly samples = new Map<string, SampleCounts>();
  private readonly listeners = new Set<(o: ModelObservation) => void>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Registers a callback run after every finished call. */
  onChange(listener: (o: ModelObservation) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A call to the upstream began. */
  started(provider: string, model: string): void {
    const o = this.entry(provider, model);
    o.inFlight++;
  }

  /** The call ended. `ttftMs` is undefined when no token arrived. */
  finished(provider: string, model: string, outcome: { ok: boolean; ttftMs?: number; totalMs: number; countsAgainstProvider: boolean }): void {
    const o = this.entry(provider, model);
    const n = this.samples.get(`${provider}/${model}`)!;
    o.inFlight = Math.max(0, o.inFlight - 1);
    o.requests++;
    o.observedAtMs = this.now();
    if (outcome.ttftMs !== undefined) o.ewmaTtftMs = ewma(o.ewmaTtftMs, outcome.ttftMs, ++n.ttft);
    if (outcome.ok) o.ewmaTotalMs = ewma(o.ewmaTotalMs, outcome.totalMs, ++n.total);
    if (outcome.ok || outcome.countsAgainstProvider) {
      o.errorRate = ewma(o.errorRate, outcome.ok ? 0 : 1, ++n.outcome);
      o.consecutiveFailures = outcome.ok ? 0 : o.consecutiveFailures + 1;
    }
    for (const l of this.listeners) l(o);
  }

  /** A copy of every model's observation. */
  snapshot(): ModelObservation[] {
    return [...this.models.values()].map((o) => ({ ...o }));
  }

  private entry(provider: string, model: string): ModelObservation {
    const key = `${provider}/${model}`;
    let o = this.models.get(key);
    if (!o) {
      o = { provider, model, ewmaTtftMs: 0, ewmaTotalMs: 0, errorRate: 0, inFlight: 0, consecutiveFailures: 0, requests: 0, observedAtMs: this.now() };
      this.models.set(key, o);
      this.samples.set(key, { ttft: 0, total: 0, outcome: 0 });
    }
    return o;
  }
}

function ewma(previous: number, sample: number, count: number): number {
  return count <= 1 ? sample : previous + ALPHA * (sample - previous);
}
