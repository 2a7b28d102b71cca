/** Turns a text into a unit-length vector; similar texts get a high dot product. */
export interface Embedder {
  /** Names the embedding space: vectors of two ids are never compared (it is part of the partition). */
  readonly id: string;
  /** true: computed in process in microseconds, no I/O. */
  readonly local: boolean;
  embed(text: string, signal?: AbortSignal): Promise<Float32Array>;
}

/** Words that carry little meaning in a question; they count a quarter of other words. */
const STOPWORDS = new Set(
  (
    "a an the and or but of to in on at for with by from as is are was were be been being do does did " +
    "i me my you your we our it its this that these those there here what which who whom how can could " +
    "would should will shall may might must please tell give show explain me about some any"
  ).split(" "),
);

/**
 * A local embedding that needs no network and no model: signed feature hashing of words, word
 * pairs and character trigrams into `dims` dimensions, L2-normalised. Deterministic and fast
 * (tens of microseconds for a question).
 *
 * Its limits, honestly: it measures shared wording, not meaning. It matches rephrasings that
 * keep most words ("what's the capital of France?" / "What is the capital of france"), typos and
 * inflections (through trigrams); it does not match true synonyms ("car" / "automobile") or
 * other languages, and it sees negation only as one more word. Use an embeddings provider for
 * those, and keep the threshold high with this one.
 */
export class LocalEmbedder implements Embedder {
  readonly id: string;
  readonly local = true;

  constructor(readonly dims = 256) {
    if (!Number.isInteger(dims) || dims < 8) throw new Error("LocalEmbedder needs at least 8 dimensions");
    this.id = `local/v1/${dims}`;
  }

  embed(text: string): Promise<Float32Array> {
    return Promise.resolve(this.embedSync(text));
  }

  /** The same as `embed`, without the promise. */
  embedSync(text: string): Float32Array {
    const v = new Float32Array(this.dims);
    const words = text.normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
    let previous = "";
    for (const word of words) {
      const minor = word.length === 1 || STOPWORDS.has(word);
      const weight = minor ? 0.25 : 1;
      this.add(v, "w\u0001" + word, weight);
      if (!minor) {
        // Pairs of meaningful words in order: "dog bites man" and "man bites dog" differ.
        if (previous) this.add(v, "b\u0001" + previous + " " + word, 0.5);
        previous = word;
      }
      const padded = "<" + word + ">";
      const grams = padded.length - 2;
      const gramWeight = (0.6 * weight) / Math.sqrt(grams);
      for (let i = 0; i < grams; i++) this.add(v, "c\u0001" + padded.slice(i, i + 3), gramWeight);
    }
    return normaliseInPlace(v);
  }

  private add(v: Float32Array, feature: string, weight: number): void {
    const h = hash32(feature);
    const i = h % this.dims;
    v[i]! += h & 0x80000000 ? -weight : weight;
  }
}

export interface OpenAiEmbedderOptions {
  /** e.g. https://api.openai.com/v1 (the path `/embeddings` is appended). */
  baseUrl: string;
  apiKey: string | undefined;
  model: string;
  dimensions?: number;
  /** Applies to every call, on top of any caller's signal. */
  timeoutMs: number;
  fetch?: typeof fetch;
}

/** Why an embeddings call failed, without URLs or keys. */
export class EmbeddingError extends Error {
  override readonly name = "EmbeddingError";
}

/** Embeddings from any OpenAI-compatible `POST /embeddings` (OpenAI, vLLM, Ollama, TEI, ...). */
export class OpenAiEmbedder implements Embedder {
  readonly id: string;
  readonly local = false;
  private readonly url: string;
  private readonly fetch: typeof fetch;

  constructor(private readonly options: OpenAiEmbedderOptions) {
    this.id = `openai/${options.model}/${options.dimensions ?? "default"}`;
    this.url = options.baseUrl.replace(/\/+$/, "") + "/embeddings";
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  async embed(text: string, signal?: AbortSignal): Promise<Float32Array> {
    const timeout = AbortSignal.timeout(this.options.timeoutMs);
    let res: Response;
    try {
      res = await this.fetch(this.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(this.options.apiKey ? { authorization: `Bearer ${this.options.apiKey}` } : {}),
        },
        body: JSON.stringify({
          model: this.options.model,
          input: [text],
          encoding_format: "float",
          ...(this.options.dimensions === undefined ? {} : { dimensions: this.options.dimensions }),
        }),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (err) {
      throw new EmbeddingError(timeout.aborted ? `embeddings call timed out after ${this.options.timeoutMs} ms` : `embeddings call failed: ${(err as Error).name}`);
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new EmbeddingError(`embeddings call answered HTTP ${res.status}`);
    }
    const body = (await res.json().catch(() => undefined)) as { data?: { embedding?: unknown; index?: number }[] } | undefined;
    const embedding = body?.data?.find((d) => (d.index ?? 0) === 0)?.embedding;
    if (!Array.isArray(embedding) || embedding.length === 0 || !embedding.every((x) => typeof x === "number" && Number.isFinite(x))) {
      throw new EmbeddingError("embeddings response has no data[0].embedding of finite numbers");
    }
    return normaliseInPlace(Float32Array.from(embedding as number[]));
  }
}

/**
 * Remembers the last `capacity` embeddings by text, so the Store that follows a Lookup miss does
 * not pay a second remote call for the same turn.
 */
export class MemoisedEmbedder implements Embedder {
  readonly id: string;
  readonly local: boolean;
  private readonly recent = new Map<string, Float32Array>();

  constructor(
    private readonly inner: Embedder,
    private readonly capacity = 1_024,
  ) {
    this.id = inner.id;
    this.local = inner.local;
  }

  async embed(text: string, signal?: AbortSignal): Promise<Float32Array> {
    const known = this.recent.get(text);
    if (known) return known;
    const v = await this.inner.embed(text, signal);
    this.recent.set(text, v);
    if (this.recent.size > this.capacity) this.recent.delete(this.recent.keys().next().value as string);
    return v;
  }
}

/** Cosine similarity of two unit vectors (their dot product). */
export function dot(a: Float32Array, b: Float32Array, bOffset = 0): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[bOffset + i]!;
  return s;
}

function normaliseInPlace(v: Float32Array): Float32Array {
  const norm = Math.sqrt(dot(v, v));
  if (norm > 0) for (let i = 0; i < v.length; i++) v[i]! /= norm;
  return v;
}

/** FNV-1a over UTF-16 code units, finished with murmur3's avalanche so every bit is usable. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
