import { tenantTag, type EntryRef } from "./key.js";
import { LruCache } from "./lru.js";
import type { CacheStore, SemanticSlot, StoreStats, StoreStatus } from "./store.js";
import { VectorIndex, type Neighbour } from "./vector-index.js";

export interface MemoryStoreOptions {
  maxEntries: number;
  maxBytes: number;
  ttlMs: number;
  /** Partition size from which lookups use the LSH index. */
  exactScanBelow: number;
  now?: () => number;
  /** Called once per entry evicted to stay within bounds. */
  onEvict?: () => void;
}

/**
 * Entries in this process: one LRU bounded by entries and bytes across all tenants, and a vector
 * index per (tenant, partition) that follows it (an entry evicted or expired leaves its index).
 * An entry's bytes include its place in the index, so `max_bytes` bounds the memory both take.
 */
export class MemoryStore implements CacheStore {
  readonly backend = "memory";
  private readonly lru: LruCache;
  /** tenant → partition → index: a lookup reaches one tenant's partitions only. */
  private readonly indexes = new Map<string, Map<string, VectorIndex>>();
  /** LRU key → where the entry's vector is. */
  private readonly indexedIn = new Map<string, { tenant: string; partition: string; id: string }>();

  constructor(private readonly options: MemoryStoreOptions) {
    this.lru = new LruCache({
      maxEntries: options.maxEntries,
      maxBytes: options.maxBytes,
      ...(options.now ? { now: options.now } : {}),
      onRemove: (key, reason) => {
        this.unindex(key);
        if (reason === "evicted") options.onEvict?.();
      },
    });
  }

  get(ref: EntryRef): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.lru.get(lruKey(ref)));
  }

  put(ref: EntryRef, value: Uint8Array, semantic?: SemanticSlot): Promise<boolean> {
    const key = lruKey(ref);
    if (!this.lru.set(key, value, this.options.ttlMs, semantic ? VectorIndex.bytesPerEntry(semantic.vector.length) : 0)) return Promise.resolve(false);
    this.unindex(key);
    if (semantic) {
      let partitions = this.indexes.get(ref.tenant);
      if (!partitions) this.indexes.set(ref.tenant, (partitions = new Map()));
      let index = partitions.get(semantic.partition);
      if (!index) partitions.set(semantic.partition, (index = new VectorIndex(semantic.vector.length, this.options.exactScanBelow)));
      index.add(ref.id, semantic.vector);
      this.indexedIn.set(key, { tenant: ref.tenant, partition: semantic.partition, id: ref.id });
    }
    return Promise.resolve(true);
  }

  nearest(tenant: string, partition: string, vector: Float32Array, minSimilarity: number): Promise<Neighbour | undefined> {
    const index = this.indexes.get(tenant)?.get(partition);
    if (!index || index.dims !== vector.length) return Promise.resolve(undefined);
    return Promise.resolve(index.nearest(vector, minSimilarity));
  }

  forget(tenant: string, partition: string, id: string): void {
    const key = lruKey({ tenant, id });
    const at = this.indexedIn.get(key);
    if (at && at.partition === partition) this.unindex(key);
  }

  sweep(): void {
    this.lru.sweepExpired();
  }

  stats(): StoreStats {
    const { entries, bytes } = this.lru.stats();
    return { entries, bytes, vectors: this.indexedIn.size };
  }

  status(): StoreStatus {
    return { connected: true, detail: "memory" };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private unindex(key: string): void {
    const at = this.indexedIn.get(key);
    if (!at) return;
    this.indexedIn.delete(key);
    const partitions = this.indexes.get(at.tenant);
    const index = partitions?.get(at.partition);
    if (!partitions || !index) return;
    index.remove(at.id);
    if (index.size === 0) partitions.delete(at.partition);
    if (partitions.size === 0) this.indexes.delete(at.tenant);
  }
}

function lruKey(ref: EntryRef): string {
  return `${tenantTag(ref.tenant)}:${ref.id}`;
}
