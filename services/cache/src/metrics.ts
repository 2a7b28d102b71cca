import { Counter, Gauge, type Logger, type Registry } from "@switchyard/telemetry";
import type { CacheObserver } from "./response-cache.js";
import type { CacheStore } from "./store.js";

/** The cache's Prometheus metrics, and the observer and eviction hook that feed them. */
export interface CacheMetrics {
  observer: CacheObserver;
  /** Counts one entry evicted to stay within max_entries / max_bytes. */
  evicted(): void;
  /** The store the gauges read at scrape time. */
  watch(store: CacheStore): void;
}

/**
 * Registers the cache metrics. Hit rate of a kind = lookups{kind, result="hit"} / lookups{kind};
 * a request that misses exactly and is then looked up semantically counts once per kind.
 */
export function registerCacheMetrics(registry: Registry, logger: Logger): CacheMetrics {
  const registers = [registry];
  let store: CacheStore | undefined;
  const lookups = new Counter({ name: "switchyard_cache_lookups_total", help: "Cache lookups by kind (exact, semantic) and result (hit, miss).", labelNames: ["kind", "result"], registers });
  const saved = new Counter({ name: "switchyard_cache_saved_micro_usd_total", help: "Cost of the original answers served from cache, micro-dollars, by kind of hit.", labelNames: ["kind"], registers });
  const stores = new Counter({ name: "switchyard_cache_stores_total", help: "Store requests by result (stored, too_large, failed); refused (invalid) answers are RPC errors.", labelNames: ["result"], registers });
  const faults = new Counter({ name: "switchyard_cache_backend_errors_total", help: "Backend, embeddings and integrity faults turned into misses, by dependency and operation.", labelNames: ["dependency", "op"], registers });
  const evictions = new Counter({ name: "switchyard_cache_evictions_total", help: "Entries evicted (least recently used) to stay within max_entries / max_bytes.", registers });
  new Gauge({ name: "switchyard_cache_entries", help: "Entries held (memory backend).", registers, collect() { const n = store?.stats().entries; if (n !== undefined) this.set(n); } });
  new Gauge({ name: "switchyard_cache_bytes", help: "Bytes held by entries (memory backend).", registers, collect() { const n = store?.stats().bytes; if (n !== undefined) this.set(n); } });
  new Gauge({ name: "switchyard_cache_vectors", help: "Vectors in this replica's semantic indexes (Redis backend: its local mirrors).", registers, collect() { if (store) this.set(store.stats().vectors); } });
  new Gauge({ name: "switchyard_cache_backend_up", help: "1 when the backend is reachable, 0 while lookups fall back to misses.", labelNames: ["backend"], registers, collect() { if (store) this.set({ backend: store.backend }, store.status().connected ? 1 : 0); } });
  return {
    observer: {
      lookup(kind, result, savedMicroUsd) {
        lookups.inc({ kind, result });
        if (result === "hit" && savedMicroUsd > 0n) saved.inc({ kind }, Number(savedMicroUsd));
      },
      store(result) {
        stores.inc({ result });
      },
      fault(dependency, op, err) {
        const backend = dependency === "store" ? (store?.backend ?? "store") : dependency;
        faults.inc({ dependency: backend, op });
        logger.debug("cache fault turned into a miss", { dependency: backend, op, error: err instanceof Error ? err.message : String(err) });
      },
    },
    evicted: () => evictions.inc(),
    watch: (s) => {
      store = s;
    },
  };
}
