import { ErrorKind, ProviderFailure } from "./adapters/types.js";

interface Waiter {
  resolve: () => void;
  reject: (e: Error) => void;
  signal: AbortSignal;
  onAbort: () => void;
}

/** Parks a caller in `queue` until resolved, or until `signal` aborts (then it leaves the queue). */
function park(queue: Waiter[], signal: AbortSignal, abortFailure: () => ProviderFailure, onParked: () => void = () => {}): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      reject(abortFailure());
      return;
    }
    const waiter: Waiter = {
      resolve: () => {
        signal.removeEventListener("abort", waiter.onAbort);
        resolve();
      },
      reject,
      signal,
      onAbort: () => {
        const i = queue.indexOf(waiter);
        if (i >= 0) queue.splice(i, 1);
        reject(abortFailure());
      },
    };
    signal.addEventListener("abort", waiter.onAbort, { once: true });
    queue.push(waiter);
    onParked();
  });
}

/**
 * Per-provider concurrency: at most `concurrency` calls at once, a bounded FIFO queue behind them,
 * and a wait that ends when the caller's deadline does. A full queue fails fast so the gateway can
 * fall back to another provider instead of piling up.
 */
export class ConcurrencyLimiter {
  private active = 0;
  private readonly queue: Waiter[] = [];

  constructor(
    private readonly label: string,
    private readonly concurrency: number,
    private readonly maxQueue = concurrency * 4,
  ) {}

  /** Calls holding a slot now. */
  get inFlight(): number {
    return this.active;
  }

  /** Calls waiting for a slot now. */
  get queued(): number {
    return this.queue.length;
  }

  /** Waits for a slot; the returned function releases it (extra calls are ignored). Throws CAPACITY. */
  async acquire(signal: AbortSignal): Promise<() => void> {
    if (this.active < this.concurrency && this.queue.length === 0) {
      this.active++;
      return this.releaser();
    }
    if (this.queue.length >= this.maxQueue) {
      throw new ProviderFailure(ErrorKind.CAPACITY, `${this.label}: at capacity (${this.concurrency} in flight, ${this.queue.length} queued)`);
    }
    // A released slot passes straight to the first waiter, so `active` already counts it.
    await park(this.queue, signal, () => new ProviderFailure(ErrorKind.CAPACITY, `${this.label}: no free slot before the deadline`));
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

/**
 * Per-provider request rate: a token bucket refilled at `ratePerSecond` holding at most `burst`
 * tokens, with a bounded FIFO queue. Since the bucket says exactly when a queued request's token
 * comes, a request whose token would come after its deadline fails at once (CAPACITY) instead of
 * waiting to fail: the gateway can fall back while there is still time.
 */
export class RateLimiter {
  private tokens: number;
  private refilledAt: number;
  private readonly queue: Waiter[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly label: string,
    private readonly ratePerSecond: number,
    private readonly burst = Math.max(1, Math.floor(ratePerSecond)),
    private readonly maxQueue = Math.max(1, Math.ceil(ratePerSecond)) * 4,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.refilledAt = now();
  }

  /** Requests waiting for a token now. */
  get queued(): number {
    return this.queue.length;
  }

  /**
   * Takes a token, waiting in line for one if needed. `deadlineAt` (on the `now` clock) is when
   * the caller gives up; `signal` ends the wait early. Throws CAPACITY.
   */
  async acquire(signal: AbortSignal, deadlineAt = Number.POSITIVE_INFINITY): Promise<void> {
    this.refill();
    if (this.queue.length === 0 && this.tokens >= 1) {
      this.tokens -= 1;
      return;
    }
    if (this.queue.length >= this.maxQueue) {
      throw new ProviderFailure(ErrorKind.CAPACITY, `${this.label}: rate limit queue full (${this.ratePerSecond}/s, ${this.queue.length} queued)`);
    }
    const waitMs = ((this.queue.length + 1 - this.tokens) / this.ratePerSecond) * 1000;
    if (this.now() + waitMs > deadlineAt) {
      throw new ProviderFailure(ErrorKind.CAPACITY, `${this.label}: rate limit (${this.ratePerSecond}/s) has no slot before the deadline (next in ${Math.ceil(waitMs)} ms)`);
    }
    await park(this.queue, signal, () => new ProviderFailure(ErrorKind.CAPACITY, `${this.label}: no rate-limit slot before the deadline`), () => this.schedule());
  }

  private refill(): void {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.ratePerSecond);
    this.refilledAt = now;
  }

  private schedule(): void {
    if (this.timer) return;
    this.refill();
    while (this.queue.length > 0 && this.tokens >= 1) {
      this.tokens -= 1;
      this.queue.shift()!.resolve();
    }
    if (this.queue.length === 0) return;
    const waitMs = ((1 - this.tokens) / this.ratePerSecond) * 1000;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.schedule();
    }, Math.max(1, Math.ceil(waitMs)));
  }
}
