/**
 * Gathers the calls of one moment into one batch call: items queued during an event-loop turn
 * leave together when it ends (or as soon as `max` are queued), and each caller gets its own
 * result. Under load, one internal call then carries many requests' lookups or classifications
 * instead of one each; alone, a request waits for no other (the batch leaves at the end of its
 * turn). Deadlines and cancellation stay per caller: see `call`.
 */
export class Batcher<I, O> {
  private pending: { item: I; resolve: (o: O) => void; reject: (e: unknown) => void }[] = [];

  constructor(
    /** Sends a batch; resolves to one result per item, in order. */
    private readonly send: (items: I[], timeoutMs: number) => Promise<O[]>,
    private readonly timeoutMs: number,
    private readonly max = 128,
  ) {}

  /**
   * Queues one item. Rejects when the batch fails, or on its own when `signal` aborts or
   * `timeoutMs` passes first (the batch goes on for the others).
   */
  call(item: I, signal: AbortSignal, timeoutMs = this.timeoutMs): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      let done = false;
      const finish = (fn: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        fn();
      };
      const onAbort = () => finish(() => reject(signal.reason));
      const timer = setTimeout(() => finish(() => reject(new BatchTimeout(timeoutMs))), timeoutMs);
      signal.addEventListener("abort", onAbort, { once: true });
      this.pending.push({ item, resolve: (o) => finish(() => resolve(o)), reject: (e) => finish(() => reject(e)) });
      if (this.pending.length >= this.max) this.flush();
      else if (this.pending.length === 1) setImmediate(this.flush);
    });
  }

  private readonly flush = (): void => {
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    this.send(
      batch.map((b) => b.item),
      this.timeoutMs,
    ).then(
      (results) => {
        batch.forEach((b, i) => (i < results.length ? b.resolve(results[i]!) : b.reject(new Error("the batch answered fewer items than it was sent"))));
      },
      (err: unknown) => {
        for (const b of batch) b.reject(err);
      },
    );
  };
}

/** A caller's own deadline passed before its batch answered. */
export class BatchTimeout extends Error {
  constructor(readonly timeoutMs: number) {
    super(`no answer within ${timeoutMs} ms`);
    this.name = "BatchTimeout";
  }
}
