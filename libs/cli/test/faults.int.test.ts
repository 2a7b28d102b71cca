import { describe, expect, it } from "vitest";
import { DEFAULT_FAULTS_OPTIONS, faultTable, runFaults, type FaultsReport } from "../src/faults/suite.js";

/**
 * The fault suite in its short form (`switchyard faults` runs it in full): the six-process mesh as
 * `switchyard start` runs it, mesh mTLS on, 50 streams in flight the whole time, and four faults,
 * a few seconds each. Whatever a fault does, no client may hang, none may get a half answer
 * followed by [DONE], every failure must be a clean error, and service must come back by itself.
 */
describe("faults under load", () => {
  it("kills of the provider, the cache and the ledger, Postgres away, an upstream's 500 bursts and a mid-stream stall: no hang, no half answer, service back, every request on the books", async () => {
    const report: FaultsReport = await runFaults({
      ...DEFAULT_FAULTS_OPTIONS,
      faults: ["kill-provider", "kill-cache", "kill-ledger", "postgres-down", "upstream-500-bursts", "upstream-stall"],
      concurrency: 50,
      streamIdleTimeoutMs: 1_000,
      timings: {
        baselineMs: 2_000,
        leadMs: 1_000,
        natsDownMs: 0,
        postgresDownMs: 5_000,
        redisDownMs: 0,
        redisPausedMs: 0,
        rateLimitedMs: 0,
        retryAfterS: 0,
        bursts: 2,
        burstMs: 1_500,
        burstGapMs: 1_000,
        stallMs: 3_000,
        settleMs: 3_000,
        recoveryBoundMs: 20_000,
      },
      progress: () => {},
    });
    const table = faultTable(report);
    const summary = report.results.map((r) => ({ fault: r.fault, hung: r.hung, halfAnswerDone: r.halfAnswerDone, unclean: r.unclean, recovered: r.recoveredMs !== null }));
    expect(summary, table).toEqual(
      ["baseline", "kill-provider", "kill-cache", "kill-ledger", "postgres-down", "upstream-500-bursts", "upstream-stall"].map((fault) => ({ fault, hung: 0, halfAnswerDone: 0, unclean: 0, recovered: true })),
    );
    const by = Object.fromEntries(report.results.map((r) => [r.fault, r]));
    // Each fault reached the clients or the upstream, so a pass means something.
    expect(by["kill-provider"]!.httpErrors + by["kill-provider"]!.streamErrors, table).toBeGreaterThan(0);
    expect(by["upstream-500-bursts"]!.notes.upstreamAnswered500, table).toBeGreaterThan(0);
    expect(by["upstream-stall"]!.streamErrors, table).toBeGreaterThan(0);
    expect(by["upstream-stall"]!.notes.worstSilenceBeforeErrorMs as number, table).toBeLessThanOrEqual(2_000);
    // Every check, the supervisor's restarts included, and nothing crashed or went unhandled.
    expect(report.results.flatMap((r) => r.checks.filter((c) => !c.ok).map((c) => `${r.fault}: ${c.name}: ${c.detail}`)), table).toEqual([]);
    expect(report.trouble, table).toEqual([]);
    expect(by.baseline!.served).toBe(by.baseline!.requests);
    // The ledger is off the request path: killing it costs no request. And (in report.trouble,
    // checked above) every request sent, through every fault, is in the ledger exactly once.
    expect(by["kill-ledger"]!.served, table).toBe(by["kill-ledger"]!.requests);
    // Nor does its database going away: the records wait in the stream and are written once it is back.
    expect(by["postgres-down"]!.served, table).toBe(by["postgres-down"]!.requests);
  }, 180_000);
});
