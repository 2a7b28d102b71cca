import { ErrorKind, ProviderFailure } from "./adapters/types.js";

/**
 * Per-provider capacity: at most `concurrency` calls at once, a bounded FIFO queue behind them,
 * and a wait that ends when the caller's deadline does. A full queue fails fast so the gateway can
 * fall back to another provider instead of piling up.
 */
export class ConcurrencyLimiter {
  private active = 0;
  private readonly queue: { resolve: () => void; reject: (e: Error) => void }[] = [];

  constructor(
    private readonly label: string,
    private readonly concurrency: number,
    private readonly maxQueue = concurrency * 4,
  ) {}

  get inFlight(): number {
    return this.active;
  }

  /** Waits for a slot; the returned function releases it (call exactly once). */
  async acquire(signal: AbortSignal): Promise<() => void> {
    if (this.active < this.concurrency) {
      this.active++;
      return this.releaser();
    }
    if (this.queue.length >= this.maxQueue) {
      throw new ProviderFailure(ErrorKind.CAPACITY, `${this.label}: at capacity (${this.concurrency} in flight, ${this.queue.length} queued)`);
    }
    await new Promise<void>((resolve, reject) => {
      const waiter = { resolve, reject };
      this.queue.push(waiter);
      signal.addEventListener(
        "abort",
        () => {
          const i = this.queue.indexOf(waiter);
          if (i >= 0) this.queue.splice(i, 1);
          reject(new ProviderFailure(ErrorKind.CAPACITY, `${this.label}: no capacity before the deadline`));
        },
        { once: true },
      );
    });
    return this.releaser();
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.queue.shift();
      if (next) next.resolve();
      else this.active--;
    };
  }
}
