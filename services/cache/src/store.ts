import type { EntryRef } from "./key.js";
import type { Neighbour } from "./vector-index.js";

/** A vector to index an entry under, in one tenant's semantic partition. */
export interface SemanticSlot {
  partition: string;
  vector: Float32Array;
}

/** What a store holds, for the entries and bytes gauges. */
export interface StoreStats {
  /** Entries held; undefined when the store cannot tell cheaply (Redis). */
  entries?: number;
  /** Bytes held by entries; undefined when the store cannot tell cheaply (Redis). */
  bytes?: number;
  /** Vectors in this replica's semantic indexes (for Redis: its local mirrors). */
  vectors: number;
}

/** Whether a store can serve, for readiness. */
export interface StoreStatus {
  connected: boolean;
  detail: string;
}

/**
 * Where entries live: in this process, or in Redis shared by several replicas. Entries are opaque
 * bytes for the store's TTL; vectors index them per (tenant, partition) and a lookup reads one
 * partition of one tenant only. Methods may reject (a backend fault); callers turn that into a miss.
 */
export interface CacheStore {
  readonly backend: "memory" | "redis";
  /** The bytes stored under `ref`, or undefined when absent or expired. */
  get(ref: EntryRef): Promise<Uint8Array | undefined>;
  /** Stores `value` under `ref` and, with `semantic`, indexes it there; false when it cannot be kept (too large). */
  put(ref: EntryRef, value: Uint8Array, semantic?: SemanticSlot): Promise<boolean>;
  /** The closest vector (at least `minSimilarity`) in one partition of one tenant; its id is an entry id of that tenant. */
  nearest(tenant: string, partition: string, vector: Float32Array, minSimilarity: number, signal?: AbortSignal): Promise<Neighbour | undefined>;
  /** Drops a vector whose entry turned out to be gone, so the next lookup finds the next best. */
  forget(tenant: string, partition: string, id: string): void;
  /** Drops expired entries (a periodic chore; lookups never serve them anyway). */
  sweep(): void;
  stats(): StoreStats;
  status(): StoreStatus;
  close(): Promise<void>;
}
