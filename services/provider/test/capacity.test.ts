import { afterEach, describe, expect, it } from "vitest";
import { setTimeout as sleep } from "node:timers/promises";
import { OpenAiAdapter } from "../src/adapters/openai.js";
import { ErrorKind, ProviderFailure } from "../src/adapters/types.js";
import { Upstream } from "../src/adapters/upstream.js";
import { HealthTracker } from "../src/health.js";
import { ConcurrencyLimiter, RateLimiter } from "../src/limiter.js";
import { sseReply, startFakeUpstream, type FakeUpstream } from "./fake-upstream.js";
import { OPENAI_TEXT } from "./fixtures.js";
import { chatInput, collect } from "./helpers.js";

const kindOf = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ProviderFailure);
    return (err as ProviderFailure).kind;
  }
  return undefined;
};

describe("ConcurrencyLimiter", () => {
  it("admits up to the limit, queues in order, hands a released slot to the first waiter", async () => {
    const limiter = new ConcurrencyLimiter("p", 2, 2);
    const signal = new AbortController().signal;
    const a = await limiter.acquire(signal);
    await limiter.acquire(signal);
    const order: string[] = [];
    const c = limiter.acquire(signal).then((release) => (order.push("c"), release));
    const d = limiter.acquire(signal).then((release) => (order.push("d"), release));
    expect(await kindOf(limiter.acquire(signal))).toBe(ErrorKind.CAPACITY);
    a();
    a(); // a second release of the same slot changes nothing
    (await c)();
    await d;
    expect(order).toEqual(["c", "d"]);
    expect(limiter.inFlight).toBe(2);
  });

  it("drops a waiter whose deadline passes, with CAPACITY", async () => {
    const limiter = new ConcurrencyLimiter("p", 1, 4);
    await limiter.acquire(new AbortController().signal);
    expect(await kindOf(limiter.acquire(AbortSignal.timeout(30)))).toBe(ErrorKind.CAPACITY);
    expect(limiter.queued).toBe(0);
  });
});

describe("RateLimiter", () => {
  it("lets a burst through at once, then paces at the rate", async () => {
    const limiter = new RateLimiter("p", 20, 3, 10);
    const signal = new AbortController().signal;
    const started = performance.now();
    const times: number[] = [];
    await Promise.all(Array.from({ length: 6 }, () => limiter.acquire(signal).then(() => times.push(performance.now() - started))));
    times.sort((x, y) => x - y);
    expect(times[2]).toBeLessThan(20); // the burst
    expect(times[5]).toBeGreaterThan(130); // three more at 50 ms each
    expect(times[5]).toBeLessThan(400);
  });

  it("fails at once when the token would come after the deadline, and when the queue is full", async () => {
    const limiter = new RateLimiter("p", 2, 1, 1);
    const signal = new AbortController().signal;
    await limiter.acquire(signal);
    const now = performance.now();
    expect(await kindOf(limiter.acquire(signal, now + 100))).toBe(ErrorKind.CAPACITY);
    expect(performance.now() - now).toBeLessThan(50);
    const queued = limiter.acquire(signal, now + 5_000);
    expect(await kindOf(limiter.acquire(signal, now + 5_000))).toBe(ErrorKind.CAPACITY);
    expect(await kindOf(queued)).toBeUndefined();
  });

  it("leaves the queue when the caller gives up", async () => {
    const limiter = new RateLimiter("p", 1, 1, 4);
    await limiter.acquire(new AbortController().signal);
    expect(await kindOf(limiter.acquire(AbortSignal.timeout(20)))).toBe(ErrorKind.CAPACITY);
    expect(limiter.queued).toBe(0);
  });
});

describe("HealthTracker", () => {
  it("starts each average at its first sample, even after failures without one", () => {
    const t = new HealthTracker(() => 1);
    t.started("p", "m");
    t.finished("p", "m", { ok: false, totalMs: 5, countsAgainstProvider: true });
    t.started("p", "m");
    t.finished("p", "m", { ok: true, ttftMs: 100, totalMs: 400, countsAgainstProvider: false });
    const [o] = t.snapshot();
    expect(o).toMatchObject({ ewmaTtftMs: 100, ewmaTotalMs: 400, errorRate: 0.8, consecutiveFailures: 0, requests: 2, inFlight: 0 });
  });

  it("weighs new samples by 0.2 and keeps failures the caller caused out of the error rate", () => {
    const t = new HealthTracker();
    t.finished("p", "m", { ok: true, ttftMs: 100, totalMs: 200, countsAgainstProvider: false });
    t.finished("p", "m", { ok: true, ttftMs: 200, totalMs: 300, countsAgainstProvider: false });
    t.finished("p", "m", { ok: false, totalMs: 1, countsAgainstProvider: false }); // bad request
    const [o] = t.snapshot();
    expect(o!.ewmaTtftMs).toBeCloseTo(120);
    expect(o!.ewmaTotalMs).toBeCloseTo(220);
    expect(o!.errorRate).toBe(0);
  });
});

describe("warm connection pool", () => {
  let upstream: FakeUpstream | undefined;
  afterEach(async () => {
    await upstream?.close();
    upstream = undefined;
  });

  it("opens the warm connections before any request, and the first request reuses one", async () => {
    upstream = await startFakeUpstream(sseReply(OPENAI_TEXT));
    const adapter = new OpenAiAdapter({ name: "oa", baseUrl: `${upstream.url}/v1`, apiKey: "k", warmConnections: 3, keepWarmIntervalMs: 0 });
    await adapter.warm();
    expect(upstream.connections).toBe(3);
    expect(adapter.poolStats()).toEqual({ busy: 0, idle: 3 });
    await collect(adapter, chatInput());
    await sleep(50); // the rest of the body after [DONE] drains in the background
    expect(upstream.connections).toBe(3);
    expect(adapter.poolStats()).toEqual({ busy: 0, idle: 3 });
    adapter.close();
  });

  it("re-opens warm connections the server closed, and sends no credentials doing it", async () => {
    upstream = await startFakeUpstream();
    const pool = new Upstream({ baseUrl: upstream.url, label: "oa" });
    await pool.warm(2);
    for (const s of upstream.openSockets) s.destroy();
    await sleep(50);
    expect(pool.stats().idle).toBe(0);
    pool.keepWarm(2, 100);
    await sleep(250);
    expect(pool.stats()).toEqual({ busy: 0, idle: 2 });
    expect(upstream.connections).toBe(4);
    expect(upstream.warmups.length).toBeGreaterThanOrEqual(4);
    expect(upstream.warmups.every((h) => h.headers.authorization === undefined && h.headers["x-api-key"] === undefined)).toBe(true);
    pool.close();
  });

  it("sends nothing when warm connections are turned off", async () => {
    upstream = await startFakeUpstream();
    const adapter = new OpenAiAdapter({ name: "oa", baseUrl: upstream.url, apiKey: "k", warmConnections: 0 });
    await adapter.warm();
    await sleep(20);
    expect(upstream.connections).toBe(0);
    adapter.close();
  });
});
