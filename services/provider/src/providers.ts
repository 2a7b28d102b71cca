import { activateProviders, type Config } from "@switchyard/config";
import type { Logger } from "@switchyard/telemetry";
import { OpenAiAdapter } from "./adapters/openai.js";
import { SimulatorAdapter } from "./adapters/simulator.js";
import type { ProviderAdapter } from "./adapters/types.js";
import type { RunningProvider } from "./handler.js";
import { ConcurrencyLimiter } from "./limiter.js";

/**
 * Builds an adapter for every active provider. Keys are read from the environment variables the
 * configuration names, here and nowhere else.
 */
export function startProviders(config: Config, env: NodeJS.ProcessEnv, logger: Logger): Map<string, RunningProvider> {
  const running = new Map<string, RunningProvider>();
  for (const { provider: p, active, reason } of activateProviders(config, env)) {
    logger.info(active ? "provider on" : "provider off", { provider: p.name, kind: p.kind, reason });
    if (!active) continue;
    const apiKey = p.api_key_env ? env[p.api_key_env] : undefined;
    let adapter: ProviderAdapter;
    switch (p.kind) {
      case "simulator":
        adapter = new SimulatorAdapter(p.name, p.models);
        break;
      case "openai":
        adapter = new OpenAiAdapter({ name: p.name, baseUrl: p.base_url ?? "https://api.openai.com/v1", apiKey, maxSockets: p.pool_connections });
        break;
      default:
        logger.warn("provider kind not available in this build; provider off", { provider: p.name, kind: p.kind });
        continue;
    }
    running.set(p.name, {
      name: p.name,
      adapter,
      limiter: new ConcurrencyLimiter(p.name, p.max_concurrency),
      models: new Set(p.models.map((m) => m.name)),
      firstTokenTimeoutMs: p.first_token_timeout_ms,
    });
  }
  return running;
}
