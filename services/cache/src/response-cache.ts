import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { cache as pb } from "@switchyard/proto";
import type { Embedder } from "./embedding.js";
import { exactRef, normalise, semanticQuery, type SemanticQuery } from "./key.js";
import type { CacheStore, SemanticSlot } from "./store.js";

/** How one tenant uses the semantic cache. */
export interface TenantCachePolicy {
  semantic: boolean;
  /** Cosine similarity of the last user turn needed for a semantic hit. */
  similarityThreshold: number;
}

/** What the cache reports as it works; the composition root binds it to metrics. */
export interface CacheObserver {
  /** One lookup of one kind; a lookup that misses exactly and then tries semantically reports twice. */
  lookup(kind: "exact" | "semantic", result: "hit" | "miss", savedMicroUsd: bigint): void;
  store(result: "stored" | "too_large" | "failed"): void;
  /** A backend or embeddings fault that was turned into a miss (or a skipped store). */
  fault(dependency: "store" | "embeddings" | "integrity", op: string, err: unknown): void;
}

/** The answer to a lookup. */
export type LookupResult =
  | { kind: "exact"; similarity: 1; completion: pb.CachedCompletion }
  | { kind: "semantic"; similarity: number; completion: pb.CachedCompletion }
  | { kind: "miss" };

export interface ResponseCacheOptions {
  store: CacheStore;
  /** undefined: exact cache only. */
  embedder: Embedder | undefined;
  /** HMAC key of entry ids and partitions. */
  secret: Buffer;
  policy: (tenant: string) => TenantCachePolicy;
  observer?: CacheObserver;
}

/** A stale vector (its entry expired) is dropped and the search retried at most this often. */
const STALE_RETRIES = 3;

const MISS: LookupResult = { kind: "miss" };

/**
 * The exact and semantic response cache over one store. Every fault of the store or of the
 * embeddings provider becomes a miss (or a store that did not happen): the gateway must never
 * see a cache error as a user-visible one. Every entry read is checked to belong to the asking
 * tenant (and partition) before it is served.
 */
export class ResponseCache {
  private readonly observer: CacheObserver;
  /**
   * The semantic query and vector of recent misses, by entry id: the store that follows a miss
   * (the same request, answered) reuses them instead of embedding the prompt again.
   */
  private readonly recentMisses = new Map<string, { query: SemanticQuery; vector: Float32Array }>();

  constructor(private readonly options: ResponseCacheOptions) {
    this.observer = options.observer ?? { lookup() {}, store() {}, fault() {} };
  }

  /** Looks a validated key up: exact first, then (when the tenant allows it) semantic. */
  async lookup(key: pb.CacheKey, signal?: AbortSignal): Promise<LookupResult> {
    const { store, embedder, secret } = this.options;
    const req = normalise(key);
    const ref = exactRef(secret, req);
    const policy = this.options.policy(req.tenant);
    const query = policy.semantic && embedder ? semanticQuery(secret, req, embedder.id) : undefined;
    // A remote embedding call starts with the exact read, so its latency overlaps; a local one
    // costs microseconds and only runs after an exact miss.
    let early: AbortController | undefined;
    let vector: Promise<Float32Array | undefined> | undefined;
    if (query && embedder && !embedder.local) {
      early = new AbortController();
      vector = this.embed(query, signal ? AbortSignal.any([signal, early.signal]) : early.signal);
    }

    const exact = await this.read(ref.tenant, ref.id, "", signal);
    if (exact) {
      early?.abort();
      this.observer.lookup("exact", "hit", exact.costMicroUsd);
      return { kind: "exact", similarity: 1, completion: exact };
    }
    this.observer.lookup("exact", "miss", 0n);
    if (!query || !embedder || signal?.aborted) return MISS;

    vector ??= this.embed(query, signal);
    const v = await vector;
    if (!v) return MISS;
    this.rememberMiss(ref.id, query, v);
    for (let attempt = 0; attempt < STALE_RETRIES && !signal?.aborted; attempt++) {
      let near;
      try {
        near = await abortable(store.nearest(req.tenant, query.partition, v, policy.similarityThreshold, signal), signal);
      } catch (err) {
        this.observer.fault("store", "nearest", err);
        break;
      }
      if (!near) break;
      const completion = await this.read(req.tenant, near.id, query.partition, signal);
      if (completion) {
        this.observer.lookup("semantic", "hit", completion.costMicroUsd);
        return { kind: "semantic", similarity: near.similarity, completion };
      }
      if (signal?.aborted) break;
      store.forget(req.tenant, query.partition, near.id);
    }
    this.observer.lookup("semantic", "miss", 0n);
    return MISS;
  }

  /**
   * Stores a validated, complete answer under its exact id and, when the tenant uses the
   * semantic cache, indexes it by its last user turn. False when it was not stored.
   */
  async store(key: pb.CacheKey, completion: pb.CachedCompletion, signal?: AbortSignal): Promise<boolean> {
    const { store, embedder, secret } = this.options;
    const req = normalise(key);
    const ref = exactRef(secret, req);
    const missed = this.recentMisses.get(ref.id);
    if (missed) this.recentMisses.delete(ref.id);
    const semanticOn = this.options.policy(req.tenant).semantic && embedder !== undefined;
    const query = !semanticOn ? undefined : (missed?.query ?? semanticQuery(secret, req, embedder.id));
    const vector = !query ? undefined : (missed?.vector ?? (await this.embed(query, signal)));
    const semantic: SemanticSlot | undefined = query && vector ? { partition: query.partition, vector } : undefined;
    const entry = create(pb.CacheEntrySchema, { tenant: req.tenant, partition: semantic?.partition ?? "", completion });
    let stored: boolean;
    try {
      stored = await store.put(ref, toBinary(pb.CacheEntrySchema, entry), semantic);
    } catch (err) {
      this.observer.fault("store", "put", err);
      this.observer.store("failed");
      return false;
    }
    this.observer.store(stored ? "stored" : "too_large");
    return stored;
  }

  private rememberMiss(id: string, query: SemanticQuery, vector: Float32Array): void {
    if (this.recentMisses.size >= 4_096) this.recentMisses.delete(this.recentMisses.keys().next().value!);
    this.recentMisses.set(id, { query, vector });
  }

  /** An entry's completion if it exists and belongs to this tenant (and, for a semantic hit, this partition). */
  private async read(tenant: string, id: string, partition: string, signal: AbortSignal | undefined): Promise<pb.CachedCompletion | undefined> {
    let bytes: Uint8Array | undefined;
    try {
      bytes = await abortable(this.options.store.get({ tenant, id }), signal);
    } catch (err) {
      this.observer.fault("store", "get", err);
      return undefined;
    }
    if (!bytes) return undefined;
    let entry: pb.CacheEntry;
    try {
      entry = fromBinary(pb.CacheEntrySchema, bytes);
    } catch (err) {
      this.observer.fault("integrity", "decode", err);
      return undefined;
    }
    if (entry.tenant !== tenant || (partition !== "" && entry.partition !== partition) || !entry.completion) {
      this.observer.fault("integrity", "owner", new Error("an entry read does not belong to the asking tenant or partition"));
      return undefined;
    }
    return entry.completion;
  }

  private async embed(query: SemanticQuery, signal: AbortSignal | undefined): Promise<Float32Array | undefined> {
    try {
      return await this.options.embedder!.embed(query.text, signal);
    } catch (err) {
      if (!signal?.aborted) this.observer.fault("embeddings", "embed", err);
      return undefined;
    }
  }
}

/** Settles with `promise`, or rejects as soon as `signal` aborts (the work itself may go on). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err as Error);
      },
    );
  });
}
