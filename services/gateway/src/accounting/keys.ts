import type { Client } from "@connectrpc/connect";
import { ledger as ledgerPb } from "@switchyard/proto";
import type { Logger } from "@switchyard/telemetry";
import { quotaLimitsOf, type QuotaLimits } from "./quotas.js";

/** A key created at run time, as a gateway needs it: whose it is and what it may spend. */
export interface KeyGrant {
  tenant: string;
  keyId: string;
  limits?: QuotaLimits;
}

export interface KeyStoreOptions {
  /** How often to ask the ledger for keys created or revoked since the last answer. */
  refreshMs: number;
  logger: Logger;
  /** How long an unknown hash is remembered as unknown (an invalid key flood asks the ledger once per this). */
  negativeTtlMs?: number;
}

const MAX_NEGATIVE = 10_000;

/**
 * The keys created at run time, as this replica knows them. The ledger holds them (hashes only);
 * every replica polls it for changes (`ListKeys` with the last version seen), so a key revoked on
 * any replica is refused on every other within one refresh interval plus a call. A hash not known
 * here yet (a key created a moment ago) is looked up in the ledger once, then remembered. While the
 * ledger is away, the keys last seen keep working and unknown ones are refused.
 */
export class KeyStore {
  private readonly byHash = new Map<string, KeyGrant>();
  private readonly unknown = new Map<string, number>();
  /** Hashes of revoked keys (a revoked key is refused even where keys are optional). */
  private readonly revoked = new Set<string>();
  private readonly lookups = new Map<string, Promise<KeyGrant | "revoked" | undefined>>();
  private version = 0n;
  private timer: NodeJS.Timeout | undefined;
  private refreshing = false;
  private lastError = "";
  private synced = false;

  constructor(
    private readonly ledger: Client<typeof ledgerPb.LedgerService>,
    private readonly options: KeyStoreOptions,
  ) {}

  /** Starts polling (the first refresh at once). */
  start(): this {
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.options.refreshMs);
    this.timer.unref();
    return this;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** "synced" once the ledger answered; otherwise why not. */
  get state(): string {
    if (this.lastError) return `stale: ${this.lastError}`;
    return this.synced ? `synced (${this.byHash.size} keys)` : "syncing";
  }

  /** The valid key with this SHA-256; "revoked" for a key that was revoked; undefined for one never issued (or while the ledger is away). */
  async find(sha256: string): Promise<KeyGrant | "revoked" | undefined> {
    if (this.revoked.has(sha256)) return "revoked";
    const known = this.byHash.get(sha256);
    if (known) return known;
    const until = this.unknown.get(sha256);
    if (until !== undefined && until > Date.now()) return undefined;
    let flight = this.lookups.get(sha256);
    if (!flight) {
      flight = this.lookup(sha256).finally(() => this.lookups.delete(sha256));
      this.lookups.set(sha256, flight);
    }
    return flight;
  }

  /** Asks the ledger for keys changed since the last version seen. */
  async refresh(): Promise<void> {
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      const res = await this.ledger.listKeys({ changedSince: this.version, includeRevoked: true }, { timeoutMs: Math.max(1_000, this.options.refreshMs) });
      if (res.version < this.version) {
        // The ledger's key table is older than what this replica saw (a restored or new database):
        // start over from it rather than wait for versions it will never reach.
        this.options.logger.warn("the ledger's key versions went back; reloading every key", { was: String(this.version), now: String(res.version) });
        this.version = 0n;
        this.byHash.clear();
        const all = await this.ledger.listKeys({ changedSince: 0n, includeRevoked: true }, { timeoutMs: Math.max(1_000, this.options.refreshMs) });
        for (const key of all.keys) this.apply(key);
        this.version = all.version;
      } else {
        for (const key of res.keys) this.apply(key);
        if (res.version > this.version) this.version = res.version;
      }
      if (this.lastError) this.options.logger.info(this.synced ? "key store synced with the ledger again" : "key store synced with the ledger");
      this.lastError = "";
      this.synced = true;
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      // At start the ledger may still be opening its database: not worth a warning until it has answered once.
      if (!this.lastError && this.synced) this.options.logger.warn("cannot refresh API keys from the ledger; keys last seen keep working", { error: reason });
      else if (!this.lastError) this.options.logger.info("waiting for the ledger to list API keys", { error: reason });
      this.lastError = "ledger unreachable";
    } finally {
      this.refreshing = false;
    }
  }

  private apply(key: ledgerPb.ApiKey): void {
    // A revocation is final: a lookup answered before it (still in flight when the refresh saw it) never brings the key back.
    if (this.revoked.has(key.sha256)) return;
    if (key.revokedAtUnixMs > 0n) {
      this.byHash.delete(key.sha256);
      this.revoked.add(key.sha256);
      return;
    }
    this.byHash.set(key.sha256, grantOf(key));
    this.unknown.delete(key.sha256);
  }

  private async lookup(sha256: string): Promise<KeyGrant | "revoked" | undefined> {
    try {
      const res = await this.ledger.lookupKey({ sha256 }, { timeoutMs: 1_000 });
      if (res.key) {
        this.apply(res.key);
        return this.byHash.get(sha256) ?? "revoked";
      }
    } catch (err) {
      // The ledger is away: an unknown key is refused (never let an unchecked key through).
      this.options.logger.debug("key lookup failed", { error: err instanceof Error ? err.message : String(err) });
    }
    if (this.unknown.size >= MAX_NEGATIVE) this.unknown.delete(this.unknown.keys().next().value!);
    this.unknown.set(sha256, Date.now() + (this.options.negativeTtlMs ?? 1_000));
    return undefined;
  }
}

function grantOf(key: ledgerPb.ApiKey): KeyGrant {
  const limits = key.limits ? quotaLimitsOf(key.limits) : undefined;
  return { tenant: key.tenant, keyId: key.keyId, ...(limits ? { limits } : {}) };
}
