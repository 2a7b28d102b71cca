import { describe, expect, it } from "vitest";
import { DEFAULT_SOAK_OPTIONS, runSoak, soakTable } from "../src/faults/soak.js";

/**
 * The soak in its short form (`switchyard soak` runs it for 10 minutes and also judges RSS, which
 * needs minutes to mean anything): half a minute of steady streamed load through the five-process
 * mesh as `switchyard start` runs it, sampled every second.
 */
describe("soak", () => {
  it("keeps every process up, with no unhandled rejection, no growing fd or socket count, every request served", async () => {
    const report = await runSoak({
      ...DEFAULT_SOAK_OPTIONS,
      durationMs: 25_000,
      warmupMs: 5_000,
      concurrency: 50,
      sampleEveryMs: 1_000,
      handleGrowthBound: 8,
      progress: () => {},
    });
    const table = soakTable(report);
    expect(report.trouble, table).toEqual([]);
    const mesh = report.processes.filter((p) => p.role === "mesh");
    expect(mesh.map((p) => p.process).sort(), table).toEqual(["cache", "classifier", "gateway", "policy", "provider", "supervisor"]);
    // One process each for the whole run (no restart), fds and TCP sockets not growing.
    expect(
      mesh.map((p) => ({ process: p.process, pids: p.pids.length, problems: p.problems.filter((x) => !x.startsWith("RSS")) })),
      table,
    ).toEqual(mesh.map((p) => ({ process: p.process, pids: 1, problems: [] })));
    expect(report.load.requests, table).toBeGreaterThan(100);
    expect(report.load.served, table).toBe(report.load.requests);
    expect(report.load.unclean + report.load.hung + report.load.halfAnswerDone, table).toBe(0);
    expect(report.samples.length, table).toBeGreaterThanOrEqual(20);
  }, 90_000);
});
