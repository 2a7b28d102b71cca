import { createHmac } from "node:crypto";
import type { cache as pb } from "@switchyard/proto";

/** What the gateway sends for an empty `model`: routing. */
const AUTO_MODEL = "switchyard/auto";

/**
 * A last user turn longer than this is cached exactly only: embeddings (local or remote) see a
 * bounded prefix, and two long documents that differ after it must not look alike.
 */
export const MAX_SEMANTIC_CHARS = 8_192;

/** One conversation turn reduced to what changes an answer. */
export interface NormalisedMessage {
  role: string;
  name: string;
  content: string;
}

/**
 * A cache key reduced to what changes the answer, in one stable form: requests that only differ
 * in line endings, surrounding whitespace, Unicode composition, the order of stop sequences or
 * an empty versus explicit `switchyard/auto` model normalise to the same value.
 */
export interface NormalisedRequest {
  tenant: string;
  model: string;
  messages: NormalisedMessage[];
  /** temperature, top_p, max_tokens, sorted distinct stop sequences, seed; null = unset. */
  sampling: [number | null, number | null, number | null, string[], string | null];
}

/** Where an entry lives: its tenant and the HMAC of its normalised request. */
export interface EntryRef {
  tenant: string;
  /** base64url HMAC-SHA256; the tenant is inside the MAC. */
  id: string;
}

/**
 * What a semantic lookup compares: entries in `partition` (the same tenant, model, sampling,
 * system prompt, earlier turns and numbers) whose last user turn embeds close to `text`.
 */
export interface SemanticQuery {
  /** base64url HMAC of everything that must match exactly. */
  partition: string;
  /** The last user turn, the only part compared by similarity. */
  text: string;
}

/** Normalises a validated cache key (see `validateKey`). */
export function normalise(key: pb.CacheKey): NormalisedRequest {
  const s = key.sampling;
  return {
    tenant: key.tenant,
    model: key.requestedModel.trim() || AUTO_MODEL,
    messages: key.messages.map((m) => ({
      role: m.role.trim().toLowerCase(),
      name: m.name.trim(),
      content: m.content.normalize("NFC").replace(/\r\n?/g, "\n").trim(),
    })),
    sampling: [
      s?.temperature ?? null,
      s?.topP ?? null,
      s?.maxTokens ?? null,
      [...new Set(s?.stop ?? [])].sort(),
      s?.seed === undefined ? null : String(s.seed),
    ],
  };
}

/**
 * The exact-cache id: an HMAC of the whole normalised request under a secret key, so ids reveal
 * nothing of prompts and cannot be precomputed by someone who knows the scheme. JSON encoding is
 * injective, so no tenant name (whatever separators it contains) can produce another tenant's id.
 */
export function exactRef(secret: Buffer, req: NormalisedRequest): EntryRef {
  return { tenant: req.tenant, id: mac(secret, ["exact/v1", req.tenant, req.model, req.sampling, req.messages]) };
}

/**
 * The semantic view of a request, or undefined when it cannot be matched semantically (the last
 * turn is not a user turn, is empty, or is too long). Everything but the last user turn goes
 * into the partition and must match exactly; so do the numbers in the last turn ("2+2" and "2+3"
 * embed alike but need different answers) and the embedding model (vectors of two models never
 * meet).
 */
export function semanticQuery(secret: Buffer, req: NormalisedRequest, embedderId: string): SemanticQuery | undefined {
  const last = req.messages[req.messages.length - 1];
  if (!last || last.role !== "user" || last.content === "" || last.content.length > MAX_SEMANTIC_CHARS) return undefined;
  const numbers = last.content.match(/\p{N}+(?:[.,]\p{N}+)*/gu) ?? [];
  const partition = mac(secret, [
    "semantic/v1",
    req.tenant,
    req.model,
    req.sampling,
    req.messages.slice(0, -1),
    last.name,
    numbers,
    embedderId,
  ]);
  return { partition, text: last.content };
}

/**
 * A tenant name as a storage-key segment: base64url has no ':' or other separator, so
 * `<prefix>:<tag>:<id>` keys of two tenants can never be confused.
 */
export function tenantTag(tenant: string): string {
  return Buffer.from(tenant, "utf8").toString("base64url");
}

function mac(secret: Buffer, value: unknown): string {
  return createHmac("sha256", secret).update(JSON.stringify(value)).digest("base64url");
}
