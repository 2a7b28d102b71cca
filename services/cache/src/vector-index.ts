/** The closest stored vector and its cosine similarity to the query. */
export interface Neighbour {
  id: string;
  similarity: number;
}

/** Hash tables of the LSH index. */
export const TABLES = 16;
/** Hyperplanes (bits) per table. */
const BITS = 16;

/**
 * Random-hyperplane LSH codes (SimHash): bit b of table t is the sign of the vector's dot product
 * with plane (t, b). Two unit vectors at angle θ agree on a bit with probability 1 − θ/π, so
 * near vectors share buckets. Shared by every index of one dimension; seeded, so every replica
 * computes the same codes.
 */
export class Hyperplanes {
  private static readonly byDims = new Map<number, Hyperplanes>();
  private readonly planes: Float32Array;
  private readonly acc = new Float64Array(TABLES * BITS);

  private constructor(readonly dims: number) {
    this.planes = new Float32Array(TABLES * BITS * dims);
    let state = 0x9e3779b9 ^ dims;
    const uniform = () => {
      // xorshift32: deterministic, good enough to draw plane directions.
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return ((state >>> 0) + 0.5) / 4294967296;
    };
    for (let i = 0; i < this.planes.length; i++) {
      this.planes[i] = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
    }
  }

  /** The shared planes for vectors of `dims` dimensions. */
  static of(dims: number): Hyperplanes {
    let p = Hyperplanes.byDims.get(dims);
    if (!p) Hyperplanes.byDims.set(dims, (p = new Hyperplanes(dims)));
    return p;
  }

  /** Writes the vector's TABLES codes into `out` at `offset`. */
  codes(v: Float32Array, out: Uint32Array, offset: number): void {
    // planes is laid out dimension-major (for each dimension, its weight in all planes), so one
    // pass over the vector's non-zero components accumulates every projection; local embeddings
    // are mostly zeros.
    const n = TABLES * BITS;
    const acc = this.acc;
    acc.fill(0);
    const planes = this.planes;
    for (let i = 0; i < this.dims; i++) {
      const x = v[i]!;
      if (x === 0) continue;
      const base = i * n;
      for (let j = 0; j < n; j++) acc[j]! += x * planes[base + j]!;
    }
    for (let t = 0; t < TABLES; t++) {
      let code = 0;
      for (let b = 0; b < BITS; b++) if (acc[t * BITS + b]! > 0) code |= 1 << b;
      out[offset + t] = code;
    }
  }
}

/**
 * The LSH codes of a unit vector (TABLES numbers), as `VectorIndex.add` computes them. Replicas
 * store them next to the vector so that mirrors need not recompute them; `LSH_CODES_VERSION`
 * names the scheme, and codes of another version are ignored.
 */
export function lshCodes(vector: Float32Array): Uint32Array {
  const out = new Uint32Array(TABLES);
  Hyperplanes.of(vector.length).codes(vector, out, 0);
  return out;
}

/** Changes whenever TABLES, BITS or the plane seed change. */
export const LSH_CODES_VERSION = "lsh2";

/**
 * Nearest-neighbour search over unit vectors by cosine similarity, with add and remove.
 *
 * Up to `exactScanBelow` entries it scans every vector (exact, and fastest at that size). Above,
 * it probes an LSH index: 16 tables of 16-bit SimHash codes, each probed at the query's bucket
 * and the 16 buckets one bit away (multi-probe). The chance that no probe finds a stored vector is
 * about 1e-5 at cosine 0.95 to the query, 3e-3 at 0.9 and 3% at 0.85. Candidates whose 256 code
 * bits differ from the query's in more bits than a vector at the threshold would (see
 * `hammingBound`) are skipped; the rest are scored exactly, so the index can miss a neighbour
 * but never invents one.
 */
export class VectorIndex {
  private readonly planes: Hyperplanes;
  /** Slots ever used (free ones included). */
  private slots = 0;
  private vectors = new Float32Array(0);
  private codes = new Uint32Array(0);
  private seen = new Uint32Array(0);
  private epoch = 0;
  /** slot → id; undefined = free slot. */
  private ids: (string | undefined)[] = [];
  private readonly slotOf = new Map<string, number>();
  private readonly free: number[] = [];
  /** Built once the index grows past `exactScanBelow`; code → slots, one map per table. */
  private tables: Map<number, number[]>[] | undefined;

  constructor(
    readonly dims: number,
    private readonly exactScanBelow = 512,
  ) {
    this.planes = Hyperplanes.of(dims);
  }

  get size(): number {
    return this.slotOf.size;
  }

  /** Vectors the arrays have room for (what the index's memory follows). */
  get capacity(): number {
    return this.vectors.length / this.dims;
  }

  /**
   * Memory one entry takes in an index of `dims` dimensions: its vector in arrays that grow by
   * doubling (1.5 times the vector on average), its codes, and its places in the 16 LSH tables and
   * the id maps. At 256 dimensions: about 3 KB, against 2.96 KB measured per entry over 100,000
   * entries (Node 24, heap and array buffers after a full GC).
   */
  static bytesPerEntry(dims: number): number {
    return dims * 6 + 1_500;
  }

  has(id: string): boolean {
    return this.slotOf.has(id);
  }

  /**
   * Adds or replaces the vector of `id`; it must have `dims` components and unit length.
   * `codes` are its `lshCodes` when already known.
   */
  add(id: string, vector: Float32Array, codes?: Uint32Array): void {
    if (vector.length !== this.dims) throw new RangeError(`vector has ${vector.length} dimensions, index has ${this.dims}`);
    this.remove(id);
    const slot = this.free.pop() ?? this.grow();
    this.ids[slot] = id;
    this.slotOf.set(id, slot);
    this.vectors.set(vector, slot * this.dims);
    if (codes?.length === TABLES) this.codes.set(codes, slot * TABLES);
    else this.planes.codes(vector, this.codes, slot * TABLES);
    if (this.tables) this.bucket(slot);
    else if (this.slotOf.size > this.exactScanBelow) {
      this.tables = Array.from({ length: TABLES }, () => new Map<number, number[]>());
      for (const s of this.slotOf.values()) this.bucket(s);
    }
  }

  /** Removes `id`; false when it was not there. */
  remove(id: string): boolean {
    const slot = this.slotOf.get(id);
    if (slot === undefined) return false;
    this.slotOf.delete(id);
    this.ids[slot] = undefined;
    this.free.push(slot);
    if (this.tables) {
      for (let t = 0; t < TABLES; t++) {
        const code = this.codes[slot * TABLES + t]! | 0;
        const bucket: number[] = this.tables[t]!.get(code)!;
        const at = bucket.indexOf(slot);
        bucket[at] = bucket[bucket.length - 1]!;
        bucket.pop();
        if (bucket.length === 0) this.tables[t]!.delete(code);
      }
    }
    // Arrays only grow as entries come; an index down to a quarter of its slots gives the rest
    // back, so that its memory follows its entries (the cache charges each entry for its place
    // here, and bounds the total by max_bytes).
    if (this.capacity >= 64 && this.slotOf.size * 4 < this.capacity) this.compact();
    return true;
  }

  /** The most similar stored vector with similarity at least `minSimilarity`, if any. */
  nearest(query: Float32Array, minSimilarity: number): Neighbour | undefined {
    if (query.length !== this.dims) throw new RangeError(`query has ${query.length} dimensions, index has ${this.dims}`);
    let bestSlot = -1;
    let best = minSimilarity;
    if (!this.tables) {
      for (const slot of this.slotOf.values()) {
        const s = this.score(query, slot);
        if (s >= best) [best, bestSlot] = [s, slot];
      }
    } else {
      if (++this.epoch === 0xffffffff) {
        this.seen.fill(0);
        this.epoch = 1;
      }
      const epoch = this.epoch;
      const seen = this.seen;
      const q = new Uint32Array(TABLES);
      this.planes.codes(query, q, 0);
      const maxHamming = hammingBound(minSimilarity);
      const tables: Map<number, number[]>[] = this.tables;
      for (let t = 0; t < TABLES; t++) {
        const table = tables[t]!;
        const code = q[t]! | 0; // an int32 key keeps Map lookups on the fast (Smi) path
        for (let flip = -1; flip < BITS; flip++) {
          const bucket: number[] | undefined = table.get(flip < 0 ? code : code ^ (1 << flip));
          if (!bucket) continue;
          for (let j = 0; j < bucket.length; j++) {
            const slot = bucket[j]!;
            if (seen[slot] === epoch) continue;
            seen[slot] = epoch;
            if (this.hamming(q, slot) > maxHamming) continue;
            const s = this.score(query, slot);
            if (s >= best) [best, bestSlot] = [s, slot];
          }
        }
      }
    }
    const id = bestSlot < 0 ? undefined : this.ids[bestSlot];
    return id === undefined ? undefined : { id, similarity: Math.min(1, best) };
  }

  /** Bits in which the query's codes and the codes of `slot` differ (of TABLES × BITS). */
  private hamming(q: Uint32Array, slot: number): number {
    const codes = this.codes;
    const base = slot * TABLES;
    let n = 0;
    for (let t = 0; t < TABLES; t++) {
      let x = q[t]! ^ codes[base + t]!;
      x -= (x >>> 1) & 0x55555555;
      x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
      n += (Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
    }
    return n;
  }

  /** Dot product of the query with the vector in `slot` (cosine: both are unit vectors). */
  private score(query: Float32Array, slot: number): number {
    const d = this.dims;
    const vectors = this.vectors;
    const base = slot * d;
    let s0 = 0;
    let s1 = 0;
    let i = 0;
    for (; i + 1 < d; i += 2) {
      s0 += query[i]! * vectors[base + i]!;
      s1 += query[i + 1]! * vectors[base + i + 1]!;
    }
    if (i < d) s0 += query[i]! * vectors[base + i]!;
    return s0 + s1;
  }

  private bucket(slot: number): void {
    for (let t = 0; t < TABLES; t++) {
      const code = this.codes[slot * TABLES + t]! | 0;
      const table = this.tables![t]!;
      const bucket = table.get(code);
      if (bucket) bucket.push(slot);
      else table.set(code, [slot]);
    }
  }

  /** Moves the live entries to the front of arrays twice their number, and rebuilds the tables. */
  private compact(): void {
    const live = [...this.slotOf];
    const allocated = Math.max(1, live.length * 2);
    const d = this.dims;
    const vectors = new Float32Array(allocated * d);
    const codes = new Uint32Array(allocated * TABLES);
    const ids: (string | undefined)[] = [];
    live.forEach(([id, old], slot) => {
      vectors.set(this.vectors.subarray(old * d, (old + 1) * d), slot * d);
      codes.set(this.codes.subarray(old * TABLES, (old + 1) * TABLES), slot * TABLES);
      ids.push(id);
      this.slotOf.set(id, slot);
    });
    this.vectors = vectors;
    this.codes = codes;
    this.seen = new Uint32Array(allocated);
    this.epoch = 0;
    this.ids = ids;
    this.slots = live.length;
    this.free.length = 0;
    this.tables = undefined;
    if (live.length > this.exactScanBelow) {
      this.tables = Array.from({ length: TABLES }, () => new Map<number, number[]>());
      for (let slot = 0; slot < live.length; slot++) this.bucket(slot);
    }
  }

  private grow(): number {
    const slot = this.slots++;
    if (this.slots * this.dims > this.vectors.length) {
      // Doubling from one slot: most partitions (a prompt with its own numbers, a conversation of
      // its own) hold one entry, and a 16-slot start cost 16 KB each at 256 dimensions.
      const allocated = Math.max(1, slot * 2);
      const vectors = new Float32Array(allocated * this.dims);
      vectors.set(this.vectors);
      this.vectors = vectors;
      const codes = new Uint32Array(allocated * TABLES);
      codes.set(this.codes);
      this.codes = codes;
      const seen = new Uint32Array(allocated);
      seen.set(this.seen);
      this.seen = seen;
    }
    this.ids.push(undefined);
    return slot;
  }
}

/**
 * The most bits in which the codes of two vectors at cosine `minSimilarity` differ, but for a
 * 1-in-30,000 chance: each of the TABLES × BITS bits differs with probability θ/π, so the count
 * is binomial; the bound is its mean plus four standard deviations. Unrelated vectors differ in
 * about half the bits and are skipped without computing their similarity.
 */
function hammingBound(minSimilarity: number): number {
  const n = TABLES * BITS;
  const p = Math.acos(Math.max(-1, Math.min(1, minSimilarity))) / Math.PI;
  return Math.ceil(n * p + 4 * Math.sqrt(n * p * (1 - p)));
}
