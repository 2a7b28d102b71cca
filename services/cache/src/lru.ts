/** An entry with its size and expiry. */
interface Slot {
  value: Uint8Array;
  expiresAtMs: number;
}

export interface LruStats {
  entries: number;
  bytes: number;
  evictions: number;
}

/**
 * A byte-bounded LRU map with per-entry TTL. A Map keeps insertion order, so re-inserting on
 * access makes the first key the least recently used: O(1) get, set and eviction.
 */
export class LruCache {
  private readonly map = new Map<string, Slot>();
  private bytes = 0;
  private evictions = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly maxBytes: number,
    private readonly now: () => number = Date.now,
  ) {}

  get(key: string): Uint8Array | undefined {
    const slot = this.map.get(key);
    if (!slot) return undefined;
    if (slot.expiresAtMs <= this.now()) {
      this.delete(key, slot);
      return undefined;
    }
    this.map.delete(key);
    this.map.set(key, slot);
    return slot.value;
  }

  /** Stores a value; false when it alone is larger than the whole cache. */
  set(key: string, value: Uint8Array, ttlMs: number): boolean {
    const size = value.byteLength + key.length * 2;
    if (size > this.maxBytes) return false;
    const old = this.map.get(key);
    if (old) this.delete(key, old);
    this.map.set(key, { value, expiresAtMs: this.now() + ttlMs });
    this.bytes += size;
    while (this.map.size > this.maxEntries || this.bytes > this.maxBytes) {
      const [oldestKey, oldest] = this.map.entries().next().value as [string, Slot];
      this.delete(oldestKey, oldest);
      this.evictions++;
    }
    return true;
  }

  stats(): LruStats {
    return { entries: this.map.size, bytes: this.bytes, evictions: this.evictions };
  }

  private delete(key: string, slot: Slot): void {
    this.map.delete(key);
    this.bytes -= slot.value.byteLength + key.length * 2;
  }
}
