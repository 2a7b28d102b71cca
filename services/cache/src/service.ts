import { randomBytes } from "node:crypto";
import { cache as pb } from "@switchyard/proto";
import type { ServiceParts, ServiceRuntime } from "@switchyard/rpc";
import { LocalEmbedder, MemoisedEmbedder, OpenAiEmbedder, type Embedder } from "./embedding.js";
import { CacheHandler } from "./handler.js";
import { MemoryStore } from "./memory-store.js";
import { registerCacheMetrics } from "./metrics.js";
import { RedisStore } from "./redis-store.js";
import { ResponseCache, type TenantCachePolicy } from "./response-cache.js";
import type { CacheStore } from "./store.js";

/**
 * The cache service: exact and semantic response cache per tenant, in memory or in Redis shared by
 * replicas; every backend fault is a miss.
 */
export function createCacheService(runtime: ServiceRuntime): ServiceParts {
  const { config, logger, metrics } = runtime;
  const settings = config.cache;
  const ttlMs = settings.ttl_seconds * 1000;

  const secret = process.env[settings.hmac_key_env];
  if (!secret) {
    const shared = settings.backend === "redis" ? "; replicas sharing Redis will not share entries until they share a key" : "";
    logger.warn(`no cache HMAC key in ${settings.hmac_key_env}; using a random per-process key (entries do not outlive the process${shared})`);
  }
  const hmacKey = secret ? Buffer.from(secret, "utf8") : randomBytes(32);

  const cacheMetrics = registerCacheMetrics(metrics, logger);
  const store: CacheStore =
    settings.backend === "redis"
      ? new RedisStore({
          url: settings.redis_url,
          keyPrefix: settings.redis_key_prefix,
          ttlMs,
          timeoutMs: settings.redis_timeout_ms,
          exactScanBelow: settings.semantic.exact_scan_below,
          maxMirrorVectors: settings.max_entries,
          logger,
        })
      : new MemoryStore({
          maxEntries: settings.max_entries,
          maxBytes: settings.max_bytes,
          ttlMs,
          exactScanBelow: settings.semantic.exact_scan_below,
          onEvict: cacheMetrics.evicted,
        });
  cacheMetrics.watch(store);

  const embedder = (): Embedder | undefined => {
    const e = settings.semantic.embedding;
    const anyTenantSemantic = config.tenants.some((t) => t.cache_semantic ?? settings.semantic.enabled);
    if (!anyTenantSemantic) return undefined;
    if (e.kind === "local") return new LocalEmbedder();
    const apiKey = e.api_key_env ? process.env[e.api_key_env] : undefined;
    if (e.api_key_env && !apiKey) logger.warn("the embeddings key variable is not set; calling the embeddings provider without a key", { variable: e.api_key_env });
    return new MemoisedEmbedder(
      new OpenAiEmbedder({ baseUrl: e.base_url!, apiKey, model: e.model, ...(e.dimensions === undefined ? {} : { dimensions: e.dimensions }), timeoutMs: e.timeout_ms }),
    );
  };

  const policies = new Map<string, TenantCachePolicy>(
    config.tenants.map((t) => [
      t.name,
      { semantic: t.cache_semantic ?? settings.semantic.enabled, similarityThreshold: t.cache_similarity_threshold ?? settings.semantic.similarity_threshold },
    ]),
  );
  const defaultPolicy: TenantCachePolicy = { semantic: settings.semantic.enabled, similarityThreshold: settings.semantic.similarity_threshold };

  const cache = new ResponseCache({
    store,
    embedder: embedder(),
    secret: hmacKey,
    policy: (tenant) => policies.get(tenant) ?? defaultPolicy,
    observer: cacheMetrics.observer,
  });
  const sweeper = setInterval(() => store.sweep(), 60_000);
  sweeper.unref();

  logger.info("cache ready", { backend: store.backend, semantic: settings.semantic.enabled, embedding: settings.semantic.embedding.kind });
  return {
    serviceNames: [pb.CacheService.typeName],
    routes: (router) => router.service(pb.CacheService, new CacheHandler(cache, settings.lookup_budget_ms)),
    // A cache whose backend is down still answers (misses), so the replica stays in rotation.
    readiness: () => {
      const s = store.status();
      const stats = store.stats();
      return { ready: true, checks: { backend: settings.backend, [settings.backend]: s.connected ? "ok" : `degraded: ${s.detail}`, vectors: String(stats.vectors), ...(stats.entries === undefined ? {} : { entries: String(stats.entries) }) } };
    },
    onStop: async () => {
      clearInterval(sweeper);
      await store.close();
    },
  };
}
