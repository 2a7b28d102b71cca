/** An entry with its expiry. */
interface Slot {
  value: Uint8Array;
  expiresAtMs: number;
  /** What the entry is charged against `maxBytes`. */
  bytes: number;
}

/** Why an entry left the cache (replacing an entry by the same key reports nothing). */
export type RemovalReason = "evicted" | "expired";

export interface LruOptions {
  maxEntries: number;
  maxBytes: number;
  now?: () => number;
  /** Called for every entry that leaves, after it left. */
  onRemove?: (key: string, reason: RemovalReason) => void;
}

export interface LruStats {
  entries: number;
  bytes: number;
  evictions: number;
}

/**
 * Bytes an entry is charged: its value, its key (UTF-16) and the bookkeeping around them (the
 * Map entry, the slot, the Uint8Array and its backing store: about 500 bytes measured on Node 24
 * with `node --expose-gc`, heap and array buffers after a full GC).
 */
export function entryBytes(key: string, value: Uint8Array): number {
  return value.byteLength + key.length * 2 + 512;
}

/**
 * A byte- and entry-bounded LRU map with per-entry TTL. A Map keeps insertion order, so
 * re-inserting on access makes the first key the least recently used: O(1) get, set and eviction.
 */
export class LruCache {
  private readonly map = new Map<string, Slot>();
  private readonly now: () => number;
  private bytes = 0;
  private evictions = 0;

  constructor(private readonly options: LruOptions) {
    this.now = options.now ?? Date.now;
  }

  get(key: string): Uint8Array | undefined {
    const slot = this.map.get(key);
    if (!slot) return undefined;
    if (slot.expiresAtMs <= this.now()) {
      this.remove(key, slot, "expired");
      return undefined;
    }
    this.map.delete(key);
    this.map.set(key, slot);
    return slot.value;
  }

  /**
   * Stores a value; false when it alone is larger than the whole cache. `extraBytes` is memory
   * held elsewhere for this entry (its vector in a semantic index), charged until it leaves.
   */
  set(key: string, value: Uint8Array, ttlMs: number, extraBytes = 0): boolean {
    const size = entryBytes(key, value) + extraBytes;
    if (size > this.options.maxBytes) return false;
    const old = this.map.get(key);
    if (old) {
      this.map.delete(key);
      this.bytes -= old.bytes;
    }
    this.map.set(key, { value, expiresAtMs: this.now() + ttlMs, bytes: size });
    this.bytes += size;
    while (this.map.size > this.options.maxEntries || this.bytes > this.options.maxBytes) {
      const [oldestKey, oldest] = this.map.entries().next().value as [string, Slot];
      this.evictions++;
      this.remove(oldestKey, oldest, "evicted");
    }
    return true;
  }

  /** Drops every expired entry; returns how many. Lookups drop them lazily too. */
  sweepExpired(): number {
    const now = this.now();
    let removed = 0;
    for (const [key, slot] of this.map) {
      if (slot.expiresAtMs <= now) {
        this.remove(key, slot, "expired");
        removed++;
      }
    }
    return removed;
  }

  stats(): LruStats {
    return { entries: this.map.size, bytes: this.bytes, evictions: this.evictions };
  }

  private remove(key: string, slot: Slot, reason: RemovalReason): void {
    this.map.delete(key);
    this.bytes -= slot.bytes;
    this.options.onRemove?.(key, reason);
  }
}
