import { create } from "@bufbuild/protobuf";
import type { Bus } from "@switchyard/bus";
import { events } from "@switchyard/proto";
import type { HealthTracker, ModelObservation } from "./health.js";

/**
 * Broadcasts this replica's observations to every policy replica: right after a change (coalesced
 * per model over `coalesceMs`, so a busy model sends a few messages a second, not one per request)
 * and as a heartbeat every `intervalMs` so a late-starting policy learns the state quickly.
 */
export function publishHealth(tracker: HealthTracker, bus: Bus, reporter: string, intervalMs: number, coalesceMs = 100): () => void {
  const pending = new Map<string, NodeJS.Timeout>();
  const send = (o: ModelObservation) =>
    bus.publishHealth(
      create(events.HealthUpdateSchema, {
        provider: o.provider,
        model: o.model,
        ewmaTtftMs: o.ewmaTtftMs,
        ewmaTotalMs: o.ewmaTotalMs,
        errorRate: o.errorRate,
        inFlight: o.inFlight,
        consecutiveFailures: o.consecutiveFailures,
        observedAtUnixMs: BigInt(o.observedAtMs),
        reporter,
      }),
    );
  const unsubscribe = tracker.onChange((o) => {
    const key = `${o.provider}/${o.model}`;
    if (o.consecutiveFailures > 0 && !pending.has(key)) {
      send(o); // failures travel at once: they open circuits elsewhere
      return;
    }
    if (pending.has(key)) return;
    pending.set(
      key,
      setTimeout(() => {
        pending.delete(key);
        const latest = tracker.snapshot().find((x) => x.provider === o.provider && x.model === o.model);
        if (latest) send(latest);
      }, coalesceMs),
    );
  });
  const heartbeat = setInterval(() => tracker.snapshot().forEach(send), intervalMs);
  heartbeat.unref();
  return () => {
    unsubscribe();
    clearInterval(heartbeat);
    for (const t of pending.values()) clearTimeout(t);
  };
}
