import { randomBytes } from "node:crypto";
import { cache as pb } from "@switchyard/proto";
import { loadRuntime, serve } from "@switchyard/rpc";
import { Counter, Gauge } from "@switchyard/telemetry";
import { CacheHandler } from "./handler.js";
import { LruCache } from "./lru.js";

const runtime = loadRuntime("cache");
const { config, logger, metrics } = runtime;
const secret = process.env[config.cache.hmac_key_env];
if (!secret) logger.info("no cache HMAC key set; using a random per-process key (entries do not outlive the process)", { variable: config.cache.hmac_key_env });
const hmacKey = secret ? Buffer.from(secret, "utf8") : randomBytes(32);
if (config.cache.backend === "redis") logger.warn("cache.backend redis is not available in this build; using memory");
const store = new LruCache(config.cache.max_entries, config.cache.max_bytes);

const lookups = new Counter({ name: "switchyard_cache_lookups_total", help: "Cache lookups by result.", labelNames: ["kind", "result"], registers: [metrics] });
const saved = new Counter({ name: "switchyard_cache_saved_micro_usd_total", help: "Cost of the original answers served from cache, micro-dollars.", registers: [metrics] });
const stores = new Counter({ name: "switchyard_cache_stores_total", help: "Answers stored.", registers: [metrics] });
new Gauge({ name: "switchyard_cache_entries", help: "Entries held.", registers: [metrics], collect() { this.set(store.stats().entries); } });
new Gauge({ name: "switchyard_cache_bytes", help: "Bytes held.", registers: [metrics], collect() { this.set(store.stats().bytes); } });
new Gauge({ name: "switchyard_cache_evictions", help: "Entries evicted to stay within max_entries / max_bytes.", registers: [metrics], collect() { this.set(store.stats().evictions); } });

const handler = new CacheHandler(store, hmacKey, config.cache.ttl_seconds * 1000, {
  lookup: (result) => lookups.inc({ kind: "exact", result }),
  stored: () => stores.inc(),
  hitSaved: (micro) => saved.inc(Number(micro)),
});

await serve({
  runtime,
  port: config.ports.cache,
  httpPort: config.ports.cache_http,
  serviceNames: [pb.CacheService.typeName],
  routes: (router) => router.service(pb.CacheService, handler),
  readiness: () => ({ ready: true, checks: { backend: "memory", entries: String(store.stats().entries) } }),
});
