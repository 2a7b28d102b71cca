import { createHmac } from "node:crypto";
import type { cache as pb } from "@switchyard/proto";

/**
 * The exact-cache key: an HMAC of the canonical request under a secret key, so keys reveal
 * nothing of prompts and cannot be forged by someone who knows the scheme. The tenant is both
 * inside the MAC and the key's prefix: entries of two tenants can never collide.
 */
export function exactKey(hmacKey: Buffer, key: pb.CacheKey): string {
  const s = key.sampling;
  const canonical = JSON.stringify([
    key.tenant,
    key.requestedModel,
    key.messages.map((m) => [m.role, m.name, m.content.replace(/\r\n?/g, "\n").trim()]),
    s ? [s.temperature ?? null, s.topP ?? null, s.maxTokens ?? null, s.stop, s.seed === undefined ? null : String(s.seed)] : null,
  ]);
  return `${key.tenant}\u0000${createHmac("sha256", hmacKey).update(canonical).digest("base64url")}`;
}
