import type { Client } from "@connectrpc/connect";
import type { Bus } from "@switchyard/bus";
import type { Config } from "@switchyard/config";
import type { ledger as ledgerPb } from "@switchyard/proto";
import type { Logger } from "@switchyard/telemetry";
import type { GatewayMetrics } from "../metrics.js";
import { Accounting } from "./account.js";
import { KeyStore } from "./keys.js";
import { PriceBook } from "./prices.js";
import { UsagePublisher } from "./publisher.js";
import { QuotaEnforcer, type QuotaScope } from "./quotas.js";

export { Accounting, RequestAccount, type ApiName } from "./account.js";
export { KeyStore } from "./keys.js";

/** The gateway's books, wired: prices and baselines, run-time keys, quotas, the usage publisher. */
export interface GatewayBooks {
  accounting: Accounting;
  /** Keys created at run time (absent without a ledger). */
  keys: KeyStore | undefined;
  /** Readiness checks: where records go, which counters enforce limits, whether keys are fresh. */
  checks(): Record<string, string>;
  /** Sends the records still queued (bounded) and closes the counters. */
  close(deadlineMs: number): Promise<void>;
}

/**
 * Builds the books of one gateway. Prices follow the price broadcasts on `bus`; usage records go
 * to JetStream on `bus`, else to `ledger`; keys created at run time come from `ledger`.
 */
export function createGatewayBooks(deps: { config: Config; logger: Logger; metrics: GatewayMetrics; bus: Bus | undefined; ledger: Client<typeof ledgerPb.LedgerService> | undefined }): GatewayBooks {
  const { config, logger, metrics, bus, ledger } = deps;
  // Savings are measured with the prices the policy routes on: the config's, then every broadcast.
  const prices = new PriceBook(config);
  bus?.watchPrices((provider, model, update) => prices.update(provider, model, update));
  const keys = ledger ? new KeyStore(ledger, { refreshMs: config.ledger.key_refresh_ms, logger }).start() : undefined;
  const quotas = new QuotaEnforcer({
    config,
    logger,
    // Admission holds what the estimated tokens would cost at the highest price of any model.
    estimateCost: (_tenant, inputTokens, outputTokens) => prices.mostExpensiveCost(inputTokens, outputTokens),
    onFallback: () => metrics.quotaFallbacks.inc(),
    // Budgets start from what the books say this period spent (a restarted gateway or an emptied Redis forgets nothing).
    ...(ledger
      ? {
          spentSince: async (scope: QuotaScope, sinceMs: number) => {
            if (!scope.owner) return undefined;
            const report = await ledger.usage({ ...scope.owner, sinceUnixMs: BigInt(sinceMs), untilUnixMs: BigInt(Date.now() + 60_000), costOnly: true }, { timeoutMs: 1_000 });
            return report.totals?.costMicroUsd ?? 0n;
          },
        }
      : {}),
  });
  const publisher = new UsagePublisher({ bus, ledger, settings: config.ledger, metrics, logger });
  const accounting = new Accounting(config, prices, quotas, publisher, metrics);
  return {
    accounting,
    keys,
    checks: () => ({ usage_records: publisher.state, quotas: quotas.state, ...(keys ? { api_keys: keys.state } : {}) }),
    close: async (deadlineMs) => {
      // Requests the shutdown cut short close their accounts a few ticks later: wait for them (bounded).
      const started = Date.now();
      const open = await accounting.drain(deadlineMs / 2);
      if (open > 0) logger.warn("requests still open at shutdown; their usage records may be lost", { open });
      await publisher.close(Math.max(500, deadlineMs - (Date.now() - started)));
      keys?.stop();
      await quotas.close();
    },
  };
}
