import { activateProviders, type Config, type ProviderConfig } from "@switchyard/config";
import type { Logger } from "@switchyard/telemetry";
import { AnthropicAdapter } from "./adapters/anthropic.js";
import type { HttpAdapterOptions } from "./adapters/common.js";
import { GeminiAdapter } from "./adapters/gemini.js";
import { OpenAiAdapter } from "./adapters/openai.js";
import { SimulatorAdapter } from "./adapters/simulator.js";
import type { ProviderAdapter } from "./adapters/types.js";
import type { RunningProvider } from "./handler.js";
import { ConcurrencyLimiter, RateLimiter } from "./limiter.js";
import { RetryAfter } from "./retry-after.js";

/** Where each kind's API lives when the config names no `base_url`. */
export const DEFAULT_BASE_URLS = {
  openai: "https://api.openai.com/v1",
  anthropic: "https://api.anthropic.com/v1",
  gemini: "https://generativelanguage.googleapis.com/v1beta",
} as const;

/**
 * Builds an adapter, a concurrency limiter and (with `requests_per_second`) a rate limiter for
 * every active provider. Keys are read from the environment variables the configuration names,
 * here and nowhere else.
 */
export function startProviders(config: Config, env: NodeJS.ProcessEnv, logger: Logger): Map<string, RunningProvider> {
  const running = new Map<string, RunningProvider>();
  for (const { provider: p, active, reason } of activateProviders(config, env)) {
    logger.info(active ? "provider on" : "provider off", { provider: p.name, kind: p.kind, reason });
    if (!active) continue;
    const cap = connectionCap(p);
    if (cap !== undefined) {
      logger.warn(`pool_connections is below max_concurrency on an HTTP/1.1 upstream: at most ${cap} answers in flight`, {
        provider: p.name,
        pool_connections: cap,
        max_concurrency: p.max_concurrency,
      });
    }
    const maxQueue = p.max_queue ?? p.max_concurrency * 4;
    running.set(p.name, {
      name: p.name,
      system: GEN_AI_SYSTEM[p.kind],
      adapter: createAdapter(p, env),
      limiter: new ConcurrencyLimiter(p.name, p.max_concurrency, maxQueue),
      ...(p.requests_per_second === undefined
        ? {}
        : { rateLimiter: new RateLimiter(p.name, p.requests_per_second, p.burst ?? Math.max(1, Math.floor(p.requests_per_second)), maxQueue) }),
      models: new Set(p.models.map((m) => m.name)),
      firstTokenTimeoutMs: p.first_token_timeout_ms,
      retryAfter: new RetryAfter(),
    });
  }
  return running;
}

/** `gen_ai.system` of each provider kind, per the OpenTelemetry GenAI conventions. */
const GEN_AI_SYSTEM: Record<ProviderConfig["kind"], string> = {
  openai: "openai",
  anthropic: "anthropic",
  gemini: "gcp.gemini",
  simulator: "switchyard.simulator",
};

/**
 * The answers in flight a provider's `pool_connections` allows when that is below its
 * `max_concurrency`: over HTTP/1.1 a streaming answer holds its connection to the end. Undefined
 * when nothing but `max_concurrency` limits them (no cap set, the simulator, or an https upstream
 * that may speak HTTP/2, where one connection carries many answers).
 */
export function connectionCap(p: ProviderConfig): number | undefined {
  if (p.kind === "simulator" || p.pool_connections === undefined || p.pool_connections >= p.max_concurrency) return undefined;
  const secure = new URL(p.base_url ?? DEFAULT_BASE_URLS[p.kind]).protocol === "https:";
  return secure && p.http2 ? undefined : p.pool_connections;
}

/** The adapter for one configured provider. */
export function createAdapter(p: ProviderConfig, env: NodeJS.ProcessEnv): ProviderAdapter {
  if (p.kind === "simulator") return new SimulatorAdapter(p.name, p.models);
  const options: HttpAdapterOptions = {
    name: p.name,
    baseUrl: p.base_url ?? DEFAULT_BASE_URLS[p.kind],
    apiKey: p.api_key_env ? env[p.api_key_env] : undefined,
    ...(p.pool_connections === undefined ? {} : { maxConnections: p.pool_connections }),
    http2: p.http2,
    warmConnections: Math.min(p.warm_connections, p.pool_connections ?? Infinity),
    keepWarmIntervalMs: p.keep_warm_interval_ms,
    idleTimeoutMs: p.stream_idle_timeout_ms,
  };
  switch (p.kind) {
    case "openai":
      return new OpenAiAdapter(options);
    case "anthropic": {
      const maxOutputTokens = new Map<string, number>();
      for (const m of p.models) if (m.max_output_tokens !== undefined) maxOutputTokens.set(m.name, m.max_output_tokens);
      return new AnthropicAdapter({ ...options, maxOutputTokens });
    }
    case "gemini":
      return new GeminiAdapter(options);
  }
}
