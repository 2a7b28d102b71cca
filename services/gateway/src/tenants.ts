import { createHash } from "node:crypto";
import { hasTenantKeys, isLoopbackHost, type Config } from "@switchyard/config";
import { GatewayError } from "./errors.js";
import type { KeyStore } from "./accounting/keys.js";
import type { QuotaLimits } from "./accounting/quotas.js";

/** Who a request acts for, as the audit line and the ledger record it. */
export interface Caller {
  tenant: string;
  /**
   * A short id of the API key used: the first 12 hex digits of its SHA-256 (so also of the
   * `api_key_sha256` entry that matched). Enough to tell keys apart in logs, useless to call with.
   * Empty when the request carried no key.
   */
  keyId: string;
  /** The key's own budget and rate limits (keys created at run time); the tenant's are in the config. */
  keyLimits?: QuotaLimits;
}

export const KEY_ID_HEX = 12;

/** The credentials a request presented: `Authorization: Bearer <key>`, or `x-api-key` (Anthropic's header). */
export interface Credentials {
  authorization?: string | undefined;
  xApiKey?: string | undefined;
}

/**
 * Finds a request's tenant from its API key, by SHA-256: the configuration holds hashes, never
 * keys, and keys created at run time live in the ledger (hashes only) and reach every replica
 * through the `KeyStore`. When the gateway does not authenticate (no tenant has a key in the
 * configuration and `gateway.require_api_key` is off), a request without a key belongs to the
 * first tenant (a local machine needs no auth), and so does one whose key is unknown (an SDK's
 * placeholder); a key created at run time still identifies its tenant and limits, and a revoked
 * one is refused.
 */
export class TenantResolver {
  private readonly byHash = new Map<string, string>();
  private readonly adminHashes: Set<string>;

  constructor(
    private readonly config: Config,
    private readonly keys?: KeyStore,
  ) {
    for (const t of config.tenants) for (const h of t.api_key_sha256) this.byHash.set(h, t.name);
    this.adminHashes = new Set(config.gateway.admin_key_sha256);
  }

  /** Whether callers must present an API key. */
  get authenticates(): boolean {
    return hasTenantKeys(this.config);
  }

  /** The tenant and key of a request. @throws GatewayError 401 for a missing, unknown or revoked key. */
  async identify(credentials: Credentials): Promise<Caller> {
    const key = presentedKey(credentials);
    if (key === undefined) {
      if (!this.authenticates) return { tenant: this.config.tenants[0]!.name, keyId: "" };
      throw new GatewayError(401, "authentication_error", "missing_api_key", "an API key is required: send Authorization: Bearer <key>");
    }
    const hash = sha256Hex(key);
    const keyId = hash.slice(0, KEY_ID_HEX);
    const configured = this.byHash.get(hash);
    if (configured) return { tenant: configured, keyId };
    const grant = await this.keys?.find(hash);
    if (grant === "revoked") throw new GatewayError(401, "authentication_error", "revoked_api_key", "the API key was revoked");
    if (grant) return { tenant: grant.tenant, keyId, ...(grant.limits ? { keyLimits: grant.limits } : {}) };
    // Keys are optional here: an SDK's placeholder key is no key at all.
    if (!this.authenticates) return { tenant: this.config.tenants[0]!.name, keyId: "" };
    throw new GatewayError(401, "authentication_error", "invalid_api_key", "the API key is not valid");
  }

  /**
   * Checks a caller of the admin API (usage, keys, dashboard data). Open on a local machine (no
   * tenant keys, no admin key, a loopback listener); otherwise it needs a key listed in
   * `gateway.admin_key_sha256` (once one is listed, always).
   * @throws GatewayError 401 / 403
   */
  authorizeAdmin(credentials: Credentials): void {
    // Open only where nothing asks for a key: no tenant keys, no admin key, and a loopback listener.
    if (!this.authenticates && this.adminHashes.size === 0 && isLoopbackHost(this.config.listen_host)) return;
    const key = presentedKey(credentials);
    if (key === undefined) throw new GatewayError(401, "authentication_error", "missing_api_key", "the admin API needs an admin key: send Authorization: Bearer <key>");
    if (this.adminHashes.size === 0) {
      const why = this.authenticates ? "" : " and the gateway listens beyond loopback";
      throw new GatewayError(403, "permission_error", "admin_disabled", `the admin API is off: no admin key is configured (gateway.admin_key_sha256)${why}`);
    }
    if (!this.adminHashes.has(sha256Hex(key))) throw new GatewayError(403, "permission_error", "not_admin", "this key is not an admin key");
  }
}

/** The credentials of an RPC (gRPC, Connect): the same two headers as on REST. */
export function rpcCredentials(headers: Headers): Credentials {
  return { authorization: headers.get("authorization") ?? undefined, xApiKey: headers.get("x-api-key") ?? undefined };
}

/** The key a request presented, if any. A malformed Authorization header counts as none. */
function presentedKey(c: Credentials): string | undefined {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(c.authorization ?? "");
  if (bearer) return bearer[1]!;
  const x = c.xApiKey?.trim();
  return x ? x : undefined;
}

/** SHA-256 of a key, lowercase hex. */
export function sha256Hex(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}
