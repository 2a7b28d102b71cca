import { endianness } from "node:os";
import { Redis } from "ioredis";
import type { Logger } from "@switchyard/telemetry";
import { tenantTag, type EntryRef } from "./key.js";
import type { CacheStore, SemanticSlot, StoreStats, StoreStatus } from "./store.js";
import { LSH_CODES_VERSION, lshCodes, TABLES, VectorIndex, type Neighbour } from "./vector-index.js";

export interface RedisStoreOptions {
  url: string;
  /** Prefix of every key written, e.g. "switchyard:cache:". */
  keyPrefix: string;
  ttlMs: number;
  /** A command slower than this fails (and so does connecting). */
  timeoutMs: number;
  /** Partition size from which lookups use the LSH index. */
  exactScanBelow: number;
  /** Vectors all local mirrors may hold together; the least recently used partitions go first. */
  maxMirrorVectors: number;
  logger?: Logger;
}

/** Stream entries read per XRANGE while a mirror catches up. */
const SYNC_BATCH = 2_000;
const LITTLE_ENDIAN = endianness() === "LE";

/** A replica's local copy of one partition's vectors, caught up from the partition's stream. */
interface Mirror {
  tenant: string;
  partition: string;
  streamKey: string;
  index: VectorIndex | undefined;
  /** Last stream entry id applied ("" = none yet). */
  lastId: string;
  /** Entries in stream order with their stream time, to drop those older than the TTL. */
  order: { ms: number; id: string }[];
  head: number;
  /** id → stream time of the vector the index holds for it. */
  addedMs: Map<string, number>;
  syncing: Promise<void> | undefined;
}

/**
 * Entries in Redis, shared by every cache replica that uses the same Redis, prefix and HMAC key.
 *
 * - An entry is a string key `<prefix>e:<tenant tag>:<id>` set with PX = TTL: Redis expires it.
 * - A semantic partition is a stream `<prefix>s:<tenant tag>:<partition>` of (id, vector, LSH codes) entries,
 *   appended on store and trimmed by age (XADD MINID) so it holds about one TTL of entries; the
 *   stream key itself expires one TTL after its last append.
 * - Each replica mirrors the partitions it is asked about in a local `VectorIndex`, catching up
 *   with one XRANGE from its last seen id before every semantic lookup: an answer stored through
 *   any replica is visible to semantic lookups on every replica as soon as it is stored.
 *
 * The entry key is the truth: a mirror may hold a vector whose entry expired or was evicted by
 * Redis; reading that entry finds nothing, and the caller `forget`s the vector. The client never
 * queues commands while disconnected and gives up on a command after `timeoutMs`, so a Redis
 * that goes away turns into fast failures (misses for the caller) while it reconnects in the
 * background.
 */
export class RedisStore implements CacheStore {
  readonly backend = "redis";
  readonly client: Redis;
  private readonly mirrors = new Map<string, Mirror>();
  private mirroredVectors = 0;
  private connectedOnce = false;

  constructor(private readonly options: RedisStoreOptions) {
    const log = options.logger;
    this.client = new Redis(options.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: options.timeoutMs,
      commandTimeout: options.timeoutMs,
      // Reconnect forever in the background, backing off to every 2 s.
      retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2_000),
    });
    let announcedDown = false;
    this.client.on("ready", () => {
      this.connectedOnce = true;
      announcedDown = false;
      log?.info("redis connected", { backend: "redis" });
    });
    this.client.on("error", (err: Error) => {
      if (!announcedDown) log?.warn("redis unavailable; lookups miss and stores are skipped until it is back", { error: err.message });
      announcedDown = true;
    });
  }

  async get(ref: EntryRef): Promise<Uint8Array | undefined> {
    return (await this.client.getBuffer(this.entryKey(ref))) ?? undefined;
  }

  async put(ref: EntryRef, value: Uint8Array, semantic?: SemanticSlot): Promise<boolean> {
    const ttl = this.options.ttlMs;
    const batch = this.client.multi().set(this.entryKey(ref), Buffer.from(value.buffer, value.byteOffset, value.byteLength), "PX", ttl);
    if (semantic) {
      const stream = this.streamKey(ref.tenant, semantic.partition);
      const codes = lshCodes(semantic.vector);
      // Codes are written little-endian only; a big-endian replica leaves them out and readers recompute.
      const codesField = LITTLE_ENDIAN ? [LSH_CODES_VERSION, Buffer.from(codes.buffer, codes.byteOffset, codes.byteLength)] : [];
      batch.xadd(stream, "MINID", "~", String(Date.now() - ttl), "*", "id", ref.id, "v", encodeVector(semantic.vector), ...codesField).pexpire(stream, ttl);
    }
    const results = await batch.exec();
    if (!results) throw new Error("redis transaction was discarded");
    for (const [err] of results) if (err) throw err;
    return true;
  }

  async nearest(tenant: string, partition: string, vector: Float32Array, minSimilarity: number): Promise<Neighbour | undefined> {
    const mirror = this.mirror(tenant, partition);
    await this.sync(mirror);
    if (!mirror.index || mirror.index.dims !== vector.length) return undefined;
    return mirror.index.nearest(vector, minSimilarity);
  }

  forget(tenant: string, partition: string, id: string): void {
    const mirror = this.mirrors.get(mirrorKey(tenant, partition));
    if (mirror && mirror.addedMs.delete(id)) {
      mirror.index?.remove(id);
      this.mirroredVectors--;
    }
  }

  sweep(): void {
    // Redis expires entries itself; mirrors drop vectors older than the TTL as they catch up.
  }

  stats(): StoreStats {
    return { vectors: this.mirroredVectors };
  }

  status(): StoreStatus {
    const s = this.client.status;
    if (s === "ready") return { connected: true, detail: "redis connected" };
    return { connected: false, detail: `redis ${this.connectedOnce ? "lost" : "not connected yet"} (${s}); lookups miss until it is back` };
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }

  private entryKey(ref: EntryRef): string {
    return `${this.options.keyPrefix}e:${tenantTag(ref.tenant)}:${ref.id}`;
  }

  private streamKey(tenant: string, partition: string): string {
    return `${this.options.keyPrefix}s:${tenantTag(tenant)}:${partition}`;
  }

  /** The mirror of a partition, marked most recently used. */
  private mirror(tenant: string, partition: string): Mirror {
    const key = mirrorKey(tenant, partition);
    let m = this.mirrors.get(key);
    if (m) this.mirrors.delete(key);
    else m = { tenant, partition, streamKey: this.streamKey(tenant, partition), index: undefined, lastId: "", order: [], head: 0, addedMs: new Map(), syncing: undefined };
    this.mirrors.set(key, m);
    return m;
  }

  /** Catches a mirror up with its stream; concurrent lookups share one catch-up. */
  private sync(m: Mirror): Promise<void> {
    m.syncing ??= this.pull(m).finally(() => {
      m.syncing = undefined;
    });
    return m.syncing;
  }

  private async pull(m: Mirror): Promise<void> {
    for (;;) {
      const batch = await this.client.xrangeBuffer(m.streamKey, m.lastId ? `(${m.lastId}` : "-", "+", "COUNT", SYNC_BATCH);
      for (const [rawId, fields] of batch) {
        m.lastId = rawId.toString();
        const ms = Number(m.lastId.slice(0, m.lastId.indexOf("-")));
        let id: string | undefined;
        let vector: Float32Array | undefined;
        let codes: Uint32Array | undefined;
        for (let i = 0; i + 1 < fields.length; i += 2) {
          const name = fields[i]!.toString();
          if (name === "id") id = fields[i + 1]!.toString();
          else if (name === "v") vector = decodeVector(fields[i + 1]!);
          else if (name === LSH_CODES_VERSION && LITTLE_ENDIAN && fields[i + 1]!.length === TABLES * 4) codes = new Uint32Array(new Uint8Array(fields[i + 1]!).buffer);
        }
        if (!id || !vector || vector.length === 0) continue;
        m.index ??= new VectorIndex(vector.length, this.options.exactScanBelow);
        if (vector.length !== m.index.dims) continue;
        if (!m.addedMs.has(id)) this.mirroredVectors++;
        m.index.add(id, vector, codes);
        m.addedMs.set(id, ms);
        m.order.push({ ms, id });
      }
      if (batch.length < SYNC_BATCH) break;
    }
    this.prune(m);
    this.bound(m);
  }

  /** Drops vectors appended more than one TTL before the newest (Redis clock on both sides). */
  private prune(m: Mirror): void {
    if (!m.lastId) return;
    const horizon = Number(m.lastId.slice(0, m.lastId.indexOf("-"))) - this.options.ttlMs;
    while (m.head < m.order.length && m.order[m.head]!.ms < horizon) this.dropOldest(m);
    if (m.head > 1_024 && m.head * 2 > m.order.length) {
      m.order = m.order.slice(m.head);
      m.head = 0;
    }
  }

  /** Keeps all mirrors within `maxMirrorVectors`: other partitions by least recent use, then this one's oldest. */
  private bound(current: Mirror): void {
    for (const [key, m] of this.mirrors) {
      if (this.mirroredVectors <= this.options.maxMirrorVectors) return;
      if (m === current || m.syncing) continue;
      this.mirrors.delete(key);
      this.mirroredVectors -= m.addedMs.size;
    }
    while (this.mirroredVectors > this.options.maxMirrorVectors && current.head < current.order.length) this.dropOldest(current);
  }

  private dropOldest(m: Mirror): void {
    const { ms, id } = m.order[m.head++]!;
    if (m.addedMs.get(id) === ms) {
      m.addedMs.delete(id);
      m.index?.remove(id);
      this.mirroredVectors--;
    }
  }
}

function mirrorKey(tenant: string, partition: string): string {
  return `${tenantTag(tenant)}:${partition}`;
}

/** float32 little-endian, the same bytes on every replica. */
function encodeVector(v: Float32Array): Buffer {
  if (LITTLE_ENDIAN) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  const b = Buffer.allocUnsafe(v.length * 4);
  for (let i = 0; i < v.length; i++) b.writeFloatLE(v[i]!, i * 4);
  return b;
}

function decodeVector(b: Buffer): Float32Array | undefined {
  if (b.length % 4 !== 0) return undefined;
  const v = new Float32Array(b.length / 4);
  if (LITTLE_ENDIAN) new Uint8Array(v.buffer).set(b);
  else for (let i = 0; i < v.length; i++) v[i] = b.readFloatLE(i * 4);
  return v;
}
