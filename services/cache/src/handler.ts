import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { cache as pb } from "@switchyard/proto";
import type { ResponseCache } from "./response-cache.js";
import { validateCompletion, validateKey } from "./validate.js";

const KIND = { exact: pb.HitKind.EXACT, semantic: pb.HitKind.SEMANTIC } as const;

/**
 * `switchyard.cache.v1.CacheService`: exact and semantic response cache, strictly per tenant.
 * Bad requests are InvalidArgument naming the field; backend faults are misses, never errors.
 */
export class CacheHandler implements ServiceImpl<typeof pb.CacheService> {
  constructor(
    private readonly cache: ResponseCache,
    /** A lookup answers within this even when the backend or embeddings provider is slow (then: a miss). */
    private readonly lookupBudgetMs: number,
  ) {}

  async lookup(req: pb.LookupRequest, ctx: HandlerContext): Promise<pb.LookupResponse> {
    const key = validateKey(req.key);
    const result = await this.cache.lookup(key, AbortSignal.any([ctx.signal, AbortSignal.timeout(this.lookupBudgetMs)]));
    if (result.kind === "miss") return create(pb.LookupResponseSchema, { hit: false });
    return create(pb.LookupResponseSchema, { hit: true, completion: result.completion, kind: KIND[result.kind], similarity: result.similarity });
  }

  async store(req: pb.StoreRequest, ctx: HandlerContext): Promise<pb.StoreResponse> {
    const key = validateKey(req.key);
    const completion = validateCompletion(req.completion);
    return create(pb.StoreResponseSchema, { stored: await this.cache.store(key, completion, ctx.signal) });
  }
}
