import { describe, expect, it } from "vitest";
import { ErrorKind, ProviderFailure } from "../src/adapters/types.js";
import { MAX_RETRY_AFTER_MS, RetryAfter } from "../src/retry-after.js";

describe("RetryAfter", () => {
  let now = 1_000_000;
  const clock = () => now;

  it("after a 429 with retry-after, holds that model back for exactly that long", () => {
    const waits = new RetryAfter(clock);
    waits.note("m", new ProviderFailure(ErrorKind.RATE_LIMITED, "p: HTTP 429", 429, 12_000));
    expect(waits.remaining("m")).toBe(12_000);
    expect(waits.remaining("other")).toBe(0);
    now += 11_999;
    expect(waits.remaining("m")).toBe(1);
    now += 1;
    expect(waits.remaining("m")).toBe(0);
  });

  it("after an overloaded answer with retry-after, holds every model of the provider back", () => {
    const waits = new RetryAfter(clock);
    waits.note("m", new ProviderFailure(ErrorKind.OVERLOADED, "p: HTTP 503", 503, 5_000));
    expect([waits.remaining("m"), waits.remaining("other")]).toEqual([5_000, 5_000]);
  });

  it("ignores failures without retry-after and kinds it does not concern, keeps the later of two waits, caps a huge one", () => {
    const waits = new RetryAfter(clock);
    waits.note("m", new ProviderFailure(ErrorKind.RATE_LIMITED, "p: HTTP 429", 429, 0));
    waits.note("m", new ProviderFailure(ErrorKind.TIMEOUT, "p: timeout", 0, 9_000));
    expect(waits.remaining("m")).toBe(0);
    waits.note("m", new ProviderFailure(ErrorKind.RATE_LIMITED, "p: HTTP 429", 429, 8_000));
    waits.note("m", new ProviderFailure(ErrorKind.RATE_LIMITED, "p: HTTP 429", 429, 2_000));
    expect(waits.remaining("m")).toBe(8_000);
    waits.note("n", new ProviderFailure(ErrorKind.RATE_LIMITED, "p: HTTP 429", 429, 3_600_000));
    expect(waits.remaining("n")).toBe(MAX_RETRY_AFTER_MS);
  });

  it("refuses with a retryable RATE_LIMITED failure that carries the time left", () => {
    const f = new RetryAfter(clock).refusal("p/m", 2_500);
    expect([f.kind, f.upstreamStatus, f.retryAfterMs, f.message]).toEqual([ErrorKind.RATE_LIMITED, 429, 2_500, "p/m: the upstream asked to wait (retry-after); 3 s left"]);
  });
});
