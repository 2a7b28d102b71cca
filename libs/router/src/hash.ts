/** Small deterministic numeric helpers: 32-bit hashing, a seeded PRNG, binary (de)serialisation. */

/** FNV-1a offset basis: the starting state of {@link fnvStep}. */
export const FNV_OFFSET = 0x811c9dc5;

/** One FNV-1a step over a 16-bit code unit. */
export function fnvStep(h: number, code: number): number {
  return Math.imul(h ^ code, 0x01000193);
}

/** murmur3's 32-bit finaliser: spreads the bits of an integer hash. Returns an unsigned 32-bit value. */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Combines two hashes into one (order matters). */
export function combine(a: number, b: number): number {
  return mix32(Math.imul(a, 0x9e3779b1) ^ (b + 0x7f4a7c15));
}

/** Hash of a whole string (FNV-1a, then mixed). */
export function hashString(s: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < s.length; i++) h = fnvStep(h, s.charCodeAt(i));
  return mix32(h);
}

/** A seeded PRNG (mulberry32): same seed, same sequence, on every platform. Returns values in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher-Yates shuffle in place with the given PRNG. */
export function shuffleInPlace<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const tmp = items[i] as T;
    items[i] = items[j] as T;
    items[j] = tmp;
  }
  return items;
}

/** Encodes a typed array's bytes (little-endian on every platform Node runs on) as base64. */
export function toBase64(array: Float32Array | Int32Array | Uint32Array | Int16Array): string {
  return Buffer.from(array.buffer, array.byteOffset, array.byteLength).toString("base64");
}

/** Decodes base64 into a fresh, aligned byte buffer. */
export function fromBase64(text: string): ArrayBuffer {
  const bytes = Buffer.from(text, "base64");
  const copy = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(copy).set(bytes);
  return copy;
}
