import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { cache as pb } from "@switchyard/proto";
import { exactKey } from "./key.js";
import type { LruCache } from "./lru.js";

const STORABLE_FINISH = new Set(["stop", "length"]);

/** Counters the handler updates; the composition root binds them to metrics. */
export interface CacheCounters {
  lookup(result: "hit" | "miss"): void;
  stored(savedMicroUsd: bigint): void;
  hitSaved(savedMicroUsd: bigint): void;
}

/** `switchyard.cache.v1.CacheService`: exact-match response cache, strictly per tenant. */
export class CacheHandler implements ServiceImpl<typeof pb.CacheService> {
  constructor(
    private readonly entries: LruCache,
    private readonly hmacKey: Buffer,
    private readonly ttlMs: number,
    private readonly counters: CacheCounters,
  ) {}

  lookup(req: pb.LookupRequest): pb.LookupResponse {
    const key = requireKey(req.key);
    const bytes = this.entries.get(exactKey(this.hmacKey, key));
    if (!bytes) {
      this.counters.lookup("miss");
      return create(pb.LookupResponseSchema, { hit: false });
    }
    const completion = fromBinary(pb.CachedCompletionSchema, bytes);
    this.counters.lookup("hit");
    this.counters.hitSaved(completion.costMicroUsd);
    return create(pb.LookupResponseSchema, { hit: true, completion });
  }

  store(req: pb.StoreRequest): pb.StoreResponse {
    const key = requireKey(req.key);
    const c = req.completion;
    if (!c || !c.provider || !c.model || !c.usage || !STORABLE_FINISH.has(c.finishReason)) {
      throw new ConnectError("only complete, successful answers can be stored (provider, model, usage and finish_reason stop|length)", Code.InvalidArgument);
    }
    const stored = this.entries.set(exactKey(this.hmacKey, key), toBinary(pb.CachedCompletionSchema, c), this.ttlMs);
    if (stored) this.counters.stored(c.costMicroUsd);
    return create(pb.StoreResponseSchema, { stored });
  }
}

function requireKey(key: pb.CacheKey | undefined): pb.CacheKey {
  if (!key || !key.tenant) throw new ConnectError("key.tenant is required", Code.InvalidArgument);
  if (key.messages.length === 0) throw new ConnectError("key.messages must not be empty", Code.InvalidArgument);
  return key;
}
