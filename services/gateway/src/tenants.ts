import { createHash } from "node:crypto";
import type { Config } from "@switchyard/config";
import { GatewayError } from "./errors.js";

/** Who a request acts for, as the audit line records it. */
export interface Caller {
  tenant: string;
  /**
   * A short id of the API key used: the first 12 hex digits of its SHA-256 (so also of the
   * `api_key_sha256` entry that matched). Enough to tell keys apart in logs, useless to call with.
   * Empty when the gateway has no keys.
   */
  keyId: string;
}

const KEY_ID_HEX = 12;

/**
 * Finds a request's tenant from its API key (`Authorization: Bearer <key>`), by SHA-256: the
 * configuration holds hashes, never keys. When no tenant has keys, every request belongs to the
 * first tenant (a local machine needs no auth).
 */
export class TenantResolver {
  private readonly byHash = new Map<string, string>();

  constructor(private readonly config: Config) {
    for (const t of config.tenants) for (const h of t.api_key_sha256) this.byHash.set(h, t.name);
  }

  /** Whether callers must present an API key (some tenant has one). */
  get authenticates(): boolean {
    return this.byHash.size > 0;
  }

  /** The tenant and key id of a request. @throws GatewayError 401 for a missing or unknown key. */
  identify(authorization: string | undefined): Caller {
    if (this.byHash.size === 0) return { tenant: this.config.tenants[0]!.name, keyId: "" };
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "");
    if (!match) throw new GatewayError(401, "authentication_error", "missing_api_key", "an API key is required: send Authorization: Bearer <key>");
    const hash = createHash("sha256").update(match[1]!).digest("hex");
    const tenant = this.byHash.get(hash);
    if (!tenant) throw new GatewayError(401, "authentication_error", "invalid_api_key", "the API key is not valid");
    return { tenant, keyId: hash.slice(0, KEY_ID_HEX) };
  }
}
