import { setMaxListeners } from "node:events";
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
    // The caller's deadline or our budget, whichever ends first (one controller and one timer,
    // not AbortSignal.any and AbortSignal.timeout per lookup: those cost more than the lookup).
    const budget = new AbortController();
    const timer = setTimeout(() => budget.abort(), Math.min(this.lookupBudgetMs, ctx.timeoutMs() ?? this.lookupBudgetMs));
    const onAbort = () => budget.abort();
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    let result;
    try {
      result = await this.cache.lookup(key, budget.signal);
    } finally {
      clearTimeout(timer);
      ctx.signal.removeEventListener("abort", onAbort);
    }
    if (result.kind === "miss") return create(pb.LookupResponseSchema, { hit: false });
    return create(pb.LookupResponseSchema, { hit: true, completion: result.completion, kind: KIND[result.kind], similarity: result.similarity });
  }

  async lookupBatch(req: pb.LookupBatchRequest, ctx: HandlerContext): Promise<pb.LookupBatchResponse> {
    // Each lookup of the batch listens to the call's signal (and removes its listener when done).
    setMaxListeners(req.requests.length + 10, ctx.signal);
    const responses = await Promise.all(
      req.requests.map(async (r) => {
        try {
          return await this.lookup(r, ctx);
        } catch {
          return create(pb.LookupResponseSchema, { hit: false }); // an invalid key is a miss, alone
        }
      }),
    );
    return create(pb.LookupBatchResponseSchema, { responses });
  }

  async storeBatch(req: pb.StoreBatchRequest, ctx: HandlerContext): Promise<pb.StoreBatchResponse> {
    const stored = await Promise.all(
      req.entries.map(async (entry) => {
        try {
          return (await this.store(entry, ctx)).stored;
        } catch {
          return false; // an invalid entry fails alone, not its batch
        }
      }),
    );
    return create(pb.StoreBatchResponseSchema, { stored });
  }

  async store(req: pb.StoreRequest, ctx: HandlerContext): Promise<pb.StoreResponse> {
    const key = validateKey(req.key);
    const completion = validateCompletion(req.completion);
    return create(pb.StoreResponseSchema, { stored: await this.cache.store(key, completion, ctx.signal) });
  }
}
