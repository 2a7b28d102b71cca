/**
 * Nearest-neighbour outcome estimates: for a request, the similarity-weighted mean score of each model
 * on the k most similar training prompts.
 *
 * Prompts are compared by cosine similarity of TF-IDF vectors over hashed word unigrams and bigrams of
 * their "focus" (the last paragraphs of the last user message, where the actual question is; see
 * {@link extractFeatures}). Every training prompt keeps only its {@link KnnSettings.termsPerDoc}
 * heaviest terms (still normalised over all its terms), and terms seen in a single training prompt
 * are dropped (they can never match another training prompt, so leave-one-out estimates on the
 * training rows would not see them either). Search is an inverted index over the kept terms: a query
 * touches only the postings of its own terms, so it costs tens of microseconds for ~12k prompts.
 *
 * The router blends these estimates with its logistic heads (an average in logit space, see
 * model.ts). Where the trainer needs estimates for its own training rows (the difficulty knots), it
 * computes them leave-one-out: the row's own prompt, and every prompt with the same question, are
 * excluded.
 */
import { fromBase64, toBase64 } from "./hash.js";
import type { SparseVector } from "./features.js";

/** A row's request features plus its focus terms (for neighbour search), as `featurizeRows` returns them. */
export type RowFeatures = SparseVector & { terms?: Uint32Array };

/** Neighbour-search settings. */
export interface KnnSettings {
  /** Neighbours per query (default 24). */
  k: number;
  /** Weight of a neighbour = similarity^power (default 2). */
  power: number;
  /** Pseudo-weight of the model's mean score mixed into every estimate (default 0.3). */
  shrink: number;
  /** Terms kept per training prompt (default 24). */
  termsPerDoc: number;
  /** Terms in more than this share of the training prompts are not indexed (they still count in norms; default 0.05). */
  maxDocFrequency: number;
}

export const DEFAULT_KNN_SETTINGS: KnnSettings = { k: 24, power: 2, shrink: 0.3, termsPerDoc: 24, maxDocFrequency: 0.05 };

/** The stored index (arrays as base64 of little-endian typed arrays). */
export interface KnnJSON {
  settings: KnnSettings;
  docs: number;
  /** Per model (router order): mean score over the indexed prompts that have it. */
  priors: number[];
  /** Idf of a term seen in no or one training prompt. */
  unseenIdf: number;
  /** Uint32 term hashes, ascending. */
  vocab: string;
  /** Uint16 document frequency per vocabulary term (capped at 65535); idf = ln(1 + docs / df). */
  df: string;
  /** Uint16 number of postings per vocabulary term (postings are stored term by term, in vocabulary order). */
  counts: string;
  /** Uint16 document of each posting. */
  postingDocs: string;
  /** Uint16 weight of each posting, quantised: weight = q / 65535. */
  postingWeights: string;
  /** Uint8 score per document and model (docs × models, row-major): round(score·254), 255 = no outcome. */
  outcomes: string;
}

/** Turns a list of term hashes (with repeats) into parallel arrays of distinct terms and counts. */
function countTerms(terms: ArrayLike<number>): { terms: Uint32Array; counts: Float32Array } {
  const sorted = Uint32Array.from(terms as ArrayLike<number>).sort();
  const outTerms = new Uint32Array(sorted.length);
  const counts = new Float32Array(sorted.length);
  let k = -1;
  for (let i = 0; i < sorted.length; i++) {
    const t = sorted[i] as number;
    if (k >= 0 && outTerms[k] === t) counts[k] = (counts[k] as number) + 1;
    else {
      k++;
      outTerms[k] = t;
      counts[k] = 1;
    }
  }
  return { terms: outTerms.subarray(0, k + 1), counts: counts.subarray(0, k + 1) };
}

const MISSING = 255;

/**
 * Builds an index over training prompts.
 * @param docTerms focus terms of each training prompt (see `extractFeatures(..., terms)`).
 * @param scores scores[doc][model], undefined where the model has no outcome.
 */
export function buildKnn(docTerms: readonly ArrayLike<number>[], scores: readonly (readonly (number | undefined)[])[], models: number, settings: KnnSettings = DEFAULT_KNN_SETTINGS): KnnJSON {
  const n = Math.min(docTerms.length, 65535);
  const counted = docTerms.slice(0, n).map(countTerms);
  const df = new Map<number, number>();
  for (const d of counted) for (const t of d.terms) df.set(t, (df.get(t) ?? 0) + 1);
  const unseenIdf = Math.log(1 + n);
  const idfOf = (t: number): number => {
    const f = df.get(t) ?? 0;
    return f >= 2 ? Math.log(1 + n / f) : unseenIdf;
  };
  // Each document's kept (term, weight) pairs.
  const postings = new Map<number, { doc: number; weight: number }[]>();
  const maxDf = Math.max(2, Math.floor(settings.maxDocFrequency * n));
  for (let d = 0; d < n; d++) {
    const { terms, counts } = counted[d] as { terms: Uint32Array; counts: Float32Array };
    const weights = new Float64Array(terms.length);
    let norm = 0;
    for (let i = 0; i < terms.length; i++) {
      const w = (1 + Math.log(counts[i] as number)) * idfOf(terms[i] as number);
      weights[i] = w;
      norm += w * w;
    }
    norm = Math.sqrt(norm) || 1;
    const candidates: number[] = [];
    for (let i = 0; i < terms.length; i++) {
      const f = df.get(terms[i] as number) ?? 0;
      if (f >= 2 && f <= maxDf) candidates.push(i);
    }
    candidates.sort((a, b) => (weights[b] as number) - (weights[a] as number) || (terms[a] as number) - (terms[b] as number));
    for (const i of candidates.slice(0, settings.termsPerDoc)) {
      const t = terms[i] as number;
      const list = postings.get(t);
      const entry = { doc: d, weight: (weights[i] as number) / norm };
      if (list) list.push(entry);
      else postings.set(t, [entry]);
    }
  }
  // Terms too common to index keep a vocabulary entry (their idf counts in query norms) with no postings.
  for (const [t, f] of df) if (f > maxDf) postings.set(t, []);
  const vocab = Uint32Array.from(postings.keys()).sort();
  const dfs = new Uint16Array(vocab.length);
  const counts = new Uint16Array(vocab.length);
  const offsets = new Int32Array(vocab.length + 1);
  let total = 0;
  vocab.forEach((t, i) => {
    dfs[i] = Math.min(65535, df.get(t) ?? 1);
    offsets[i] = total;
    counts[i] = (postings.get(t) as unknown[]).length;
    total += counts[i] as number;
  });
  const postingDocs = new Uint16Array(total);
  const postingWeights = new Uint16Array(total);
  vocab.forEach((t, i) => {
    let o = offsets[i] as number;
    for (const p of postings.get(t) as { doc: number; weight: number }[]) {
      postingDocs[o] = p.doc;
      postingWeights[o] = Math.max(1, Math.min(65535, Math.round(p.weight * 65535)));
      o++;
    }
  });
  const outcomes = new Uint8Array(n * models);
  const sums = new Float64Array(models);
  const seen = new Float64Array(models);
  for (let d = 0; d < n; d++) {
    for (let j = 0; j < models; j++) {
      const s = scores[d]?.[j];
      if (s === undefined) outcomes[d * models + j] = MISSING;
      else {
        outcomes[d * models + j] = Math.round(Math.min(1, Math.max(0, s)) * 254);
        sums[j] = (sums[j] as number) + s;
        seen[j] = (seen[j] as number) + 1;
      }
    }
  }
  return {
    settings: { ...settings },
    docs: n,
    priors: Array.from(sums, (s, j) => Number(((seen[j] as number) > 0 ? s / (seen[j] as number) : 0.5).toPrecision(6))),
    unseenIdf: Number(unseenIdf.toPrecision(8)),
    vocab: toBase64(new Int32Array(vocab.buffer, vocab.byteOffset, vocab.length)),
    df: toBase64(new Int16Array(dfs.buffer)),
    counts: toBase64(new Int16Array(counts.buffer)),
    postingDocs: toBase64(new Int16Array(postingDocs.buffer)),
    postingWeights: toBase64(new Int16Array(postingWeights.buffer)),
    outcomes: Buffer.from(outcomes).toString("base64"),
  };
}

/** What a neighbour search returns: an estimate per model, and how much evidence backs it. */
export interface KnnEstimate {
  /** Shrunk similarity-weighted mean score per model. */
  scores: Float64Array;
  /** Highest cosine similarity found (0 when nothing matched). */
  maxSimilarity: number;
  /** Evidence: the summed neighbour weights (similarity^power) behind the estimate. */
  weight: number;
}

/** A loaded index, ready to answer queries. */
export class KnnIndex {
  readonly settings: KnnSettings;
  readonly docs: number;
  readonly models: number;
  readonly priors: Float64Array;
  private readonly unseenIdf: number;
  private readonly tableKeys: Uint32Array;
  private readonly tableValues: Int32Array;
  private readonly tableMask: number;
  private readonly idf: Float32Array;
  private readonly offsets: Int32Array;
  private readonly postingDocs: Uint16Array;
  private readonly postingWeights: Uint16Array;
  private readonly outcomes: Uint8Array;
  private readonly acc: Float32Array;
  private readonly touched: Int32Array;
  private readonly heapDocs: Int32Array;
  private readonly heapSims: Float64Array;

  constructor(json: KnnJSON, models: number) {
    this.settings = { ...DEFAULT_KNN_SETTINGS, ...json.settings };
    this.docs = json.docs;
    this.models = models;
    this.priors = Float64Array.from(json.priors);
    if (this.priors.length !== models) throw new Error(`knn index has ${this.priors.length} priors for ${models} models`);
    this.unseenIdf = json.unseenIdf;
    const vocab = new Uint32Array(fromBase64(json.vocab));
    const df = new Uint16Array(fromBase64(json.df));
    const counts = new Uint16Array(fromBase64(json.counts));
    if (df.length !== vocab.length || counts.length !== vocab.length) throw new Error("knn index arrays have inconsistent lengths");
    this.idf = Float32Array.from(df, (f) => (f >= 2 ? Math.log(1 + this.docs / f) : this.unseenIdf));
    this.offsets = new Int32Array(vocab.length + 1);
    for (let i = 0; i < vocab.length; i++) this.offsets[i + 1] = (this.offsets[i] as number) + (counts[i] as number);
    this.postingDocs = new Uint16Array(fromBase64(json.postingDocs));
    this.postingWeights = new Uint16Array(fromBase64(json.postingWeights));
    this.outcomes = new Uint8Array(fromBase64(json.outcomes));
    if (this.offsets[vocab.length] !== this.postingDocs.length || this.postingWeights.length !== this.postingDocs.length) {
      throw new Error("knn index arrays have inconsistent lengths");
    }
    if (this.outcomes.length !== this.docs * models) throw new Error(`knn index has ${this.outcomes.length} outcomes for ${this.docs} prompts × ${models} models`);
    let capacity = 16;
    while (capacity < vocab.length * 2) capacity *= 2;
    this.tableMask = capacity - 1;
    this.tableKeys = new Uint32Array(capacity);
    this.tableValues = new Int32Array(capacity).fill(-1);
    for (let i = 0; i < vocab.length; i++) {
      const key = vocab[i] as number;
      let slot = KnnIndex.slot(key) & this.tableMask;
      while (this.tableValues[slot] !== -1) slot = (slot + 1) & this.tableMask;
      this.tableKeys[slot] = key;
      this.tableValues[slot] = i;
    }
    this.acc = new Float32Array(this.docs);
    this.touched = new Int32Array(this.docs);
    this.heapDocs = new Int32Array(this.settings.k);
    this.heapSims = new Float64Array(this.settings.k);
  }

  private static slot(key: number): number {
    return Math.imul(key ^ (key >>> 15), 0x2c1b3c6d) >>> 7;
  }

  private lookup(term: number): number {
    let slot = KnnIndex.slot(term) & this.tableMask;
    for (;;) {
      const v = this.tableValues[slot] as number;
      if (v === -1) return -1;
      if (this.tableKeys[slot] === term) return v;
      slot = (slot + 1) & this.tableMask;
    }
  }

  /**
   * Estimates every model's score for a prompt's focus terms.
   * @param exclude documents that must not count as neighbours (leave-one-out during training).
   */
  estimate(terms: ArrayLike<number>, exclude?: (doc: number) => boolean, out: Float64Array = new Float64Array(this.models)): KnnEstimate {
    const { terms: ids, counts } = countTerms(terms);
    // Query weights, normalised over every term (unknown terms count with the unseen idf).
    let norm = 0;
    const known: number[] = [];
    const qWeights: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const v = this.lookup(ids[i] as number);
      const w = (1 + Math.log(counts[i] as number)) * (v >= 0 ? (this.idf[v] as number) : this.unseenIdf);
      norm += w * w;
      if (v >= 0) {
        known.push(v);
        qWeights.push(w);
      }
    }
    norm = Math.sqrt(norm) || 1;
    const acc = this.acc;
    const touched = this.touched;
    let nTouched = 0;
    for (let q = 0; q < known.length; q++) {
      const v = known[q] as number;
      const qw = (qWeights[q] as number) / norm / 65535;
      const end = this.offsets[v + 1] as number;
      for (let o = this.offsets[v] as number; o < end; o++) {
        const d = this.postingDocs[o] as number;
        const a = acc[d] as number;
        if (a === 0) touched[nTouched++] = d;
        acc[d] = a + qw * (this.postingWeights[o] as number);
      }
    }
    // Top k by similarity (a min-heap of size k; ties broken by document order for determinism).
    const k = this.settings.k;
    const hd = this.heapDocs;
    const hs = this.heapSims;
    let size = 0;
    for (let t = 0; t < nTouched; t++) {
      const d = touched[t] as number;
      const sim = acc[d] as number;
      acc[d] = 0;
      if (exclude?.(d)) continue;
      if (size < k) {
        let i = size++;
        while (i > 0) {
          const p = (i - 1) >> 1;
          if (!KnnIndex.less(sim, d, hs[p] as number, hd[p] as number)) break;
          hs[i] = hs[p] as number;
          hd[i] = hd[p] as number;
          i = p;
        }
        hs[i] = sim;
        hd[i] = d;
      } else if (KnnIndex.less(hs[0] as number, hd[0] as number, sim, d)) {
        let i = 0;
        for (;;) {
          const l = 2 * i + 1;
          if (l >= size) break;
          const r = l + 1;
          const c = r < size && KnnIndex.less(hs[r] as number, hd[r] as number, hs[l] as number, hd[l] as number) ? r : l;
          if (!KnnIndex.less(hs[c] as number, hd[c] as number, sim, d)) break;
          hs[i] = hs[c] as number;
          hd[i] = hd[c] as number;
          i = c;
        }
        hs[i] = sim;
        hd[i] = d;
      }
    }
    const m = this.models;
    const shrink = this.settings.shrink;
    const power = this.settings.power;
    let maxSimilarity = 0;
    let weight = 0;
    for (let j = 0; j < m; j++) out[j] = shrink * (this.priors[j] as number);
    const weightSums = new Float64Array(m).fill(shrink);
    for (let i = 0; i < size; i++) {
      const sim = hs[i] as number;
      if (sim > maxSimilarity) maxSimilarity = sim;
      const w = power === 2 ? sim * sim : Math.pow(sim, power);
      weight += w;
      const base = (hd[i] as number) * m;
      for (let j = 0; j < m; j++) {
        const y = this.outcomes[base + j] as number;
        if (y === MISSING) continue;
        out[j] = (out[j] as number) + (w * y) / 254;
        weightSums[j] = (weightSums[j] as number) + w;
      }
    }
    for (let j = 0; j < m; j++) out[j] = shrink > 0 || (weightSums[j] as number) > 0 ? (out[j] as number) / (weightSums[j] as number) : (this.priors[j] as number);
    return { scores: out, maxSimilarity, weight };
  }

  /** Min-heap order: lower similarity first; among equal similarities, the later document first. */
  private static less(simA: number, docA: number, simB: number, docB: number): boolean {
    return simA < simB || (simA === simB && docA > docB);
  }
}
