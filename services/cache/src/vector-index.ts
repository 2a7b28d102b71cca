import { dot } from "./embedding.js";

/** The closest stored vector and its cosine similarity to the query. */
export interface Neighbour {
  id: string;
  similarity: number;
}

/** Hash tables of the LSH index. */
const TABLES = 16;
/** Hyperplanes (bits) per table. */
const BITS = 14;

/**
 * Random-hyperplane LSH codes (SimHash): bit b of table t is the sign of the vector's dot product
 * with plane (t, b). Two unit vectors at angle θ agree on a bit with probability 1 − θ/π, so
 * near vectors share buckets. Shared by every index of one dimension; seeded, so every replica
 * computes the same codes.
 */
export class Hyperplanes {
  private static readonly byDims = new Map<number, Hyperplanes>();
  private readonly planes: Float32Array;

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
  codes(v: Float32Array, out: Uint32Array, offset: number, vOffset = 0): void {
    const d = this.dims;
    let p = 0;
    for (let t = 0; t < TABLES; t++) {
      let code = 0;
      for (let b = 0; b < BITS; b++) {
        let s = 0;
        for (let i = 0; i < d; i++) s += this.planes[p + i]! * v[vOffset + i]!;
        p += d;
        if (s > 0) code |= 1 << b;
      }
      out[offset + t] = code;
    }
  }
}

/**
 * Nearest-neighbour search over unit vectors by cosine similarity, with add and remove.
 *
 * Up to `exactScanBelow` entries it scans every vector (exact, and fastest at that size). Above,
 * it probes an LSH index: 16 tables of 14-bit SimHash codes, each probed at the query's bucket
 * and the 14 buckets one bit away (multi-probe). The chance that no probe finds a stored vector is
 * about 1e-6 at cosine 0.95 to the query, 5e-4 at 0.9 and under 1% at 0.85. Candidates are
 * scored exactly, so the index can miss a neighbour but never invents one.
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
    private readonly exactScanBelow = 2_048,
  ) {
    this.planes = Hyperplanes.of(dims);
  }

  get size(): number {
    return this.slotOf.size;
  }

  has(id: string): boolean {
    return this.slotOf.has(id);
  }

  /** Adds or replaces the vector of `id`; it must have `dims` components and unit length. */
  add(id: string, vector: Float32Array): void {
    if (vector.length !== this.dims) throw new RangeError(`vector has ${vector.length} dimensions, index has ${this.dims}`);
    this.remove(id);
    const slot = this.free.pop() ?? this.grow();
    this.ids[slot] = id;
    this.slotOf.set(id, slot);
    this.vectors.set(vector, slot * this.dims);
    this.planes.codes(vector, this.codes, slot * TABLES);
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
        const code = this.codes[slot * TABLES + t]!;
        const bucket: number[] = this.tables[t]!.get(code)!;
        const at = bucket.indexOf(slot);
        bucket[at] = bucket[bucket.length - 1]!;
        bucket.pop();
        if (bucket.length === 0) this.tables[t]!.delete(code);
      }
    }
    return true;
  }

  /** The most similar stored vector with similarity at least `minSimilarity`, if any. */
  nearest(query: Float32Array, minSimilarity: number): Neighbour | undefined {
    if (query.length !== this.dims) throw new RangeError(`query has ${query.length} dimensions, index has ${this.dims}`);
    let bestSlot = -1;
    let best = minSimilarity;
    const consider = (slot: number) => {
      const s = dot(query, this.vectors, slot * this.dims);
      if (s >= best) {
        best = s;
        bestSlot = slot;
      }
    };
    if (!this.tables) {
      for (const slot of this.slotOf.values()) consider(slot);
    } else {
      if (++this.epoch === 0xffffffff) {
        this.seen.fill(0);
        this.epoch = 1;
      }
      const q = new Uint32Array(TABLES);
      this.planes.codes(query, q, 0);
      for (let t = 0; t < TABLES; t++) {
        const table = this.tables[t]!;
        const code = q[t]!;
        for (let flip = -1; flip < BITS; flip++) {
          const bucket: number[] | undefined = table.get(flip < 0 ? code : code ^ (1 << flip));
          if (!bucket) continue;
          for (const slot of bucket) {
            if (this.seen[slot] === this.epoch) continue;
            this.seen[slot] = this.epoch;
            consider(slot);
          }
        }
      }
    }
    const id = bestSlot < 0 ? undefined : this.ids[bestSlot];
    return id === undefined ? undefined : { id, similarity: Math.min(1, best) };
  }

  private bucket(slot: number): void {
    for (let t = 0; t < TABLES; t++) {
      const code = this.codes[slot * TABLES + t]!;
      const table = this.tables![t]!;
      const bucket = table.get(code);
      if (bucket) bucket.push(slot);
      else table.set(code, [slot]);
    }
  }

  private grow(): number {
    const slot = this.slots++;
    if (this.slots * this.dims > this.vectors.length) {
      const allocated = Math.max(16, slot * 2);
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
