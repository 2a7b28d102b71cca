import { createHash } from "node:crypto";
import type { Config } from "@switchyard/config";
import { GatewayError } from "./errors.js";

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

  resolve(authorization: string | undefined): string {
    if (this.byHash.size === 0) return this.config.tenants[0]!.name;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "");
    if (!match) throw new GatewayError(401, "authentication_error", "missing_api_key", "an API key is required: send Authorization: Bearer <key>");
    const tenant = this.byHash.get(createHash("sha256").update(match[1]!).digest("hex"));
    if (!tenant) throw new GatewayError(401, "authentication_error", "invalid_api_key", "the API key is not valid");
    return tenant;
  }
}
