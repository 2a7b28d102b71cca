import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);

/** The benchmark's smoke: it starts every target, measures, and writes its files. Never its targets. */
describe("switchyard bench", () => {
  it("measures the upstream alone and the five-process mesh over both APIs, and writes JSON and SVG", async () => {
    const dir = mkdtempSync(join(tmpdir(), "switchyard-bench-test-"));
    const out = join(dir, "load.json");
    try {
      const { stdout } = await run(
        process.execPath,
        ["libs/cli/bin/switchyard.js", "bench", "--duration-ms", "1500", "--warmup-ms", "300", "--concurrency", "1,4", "--layouts", "direct,five", "--modes", "openai-stream,openai-json,grpc-stream", "--out", out],
        { timeout: 120_000 },
      );
      expect(stdout).toContain("machine:");
      const report = JSON.parse(readFileSync(out, "utf8")) as { rows: { target: string; api: string; stream: boolean; concurrency: number; requests: number; errors: number }[] };
      const key = (r: { target: string; api: string; stream: boolean; concurrency: number }) => `${r.target} ${r.api} ${r.stream ? "stream" : "json"} ${r.concurrency}`;
      expect(report.rows.map(key).sort()).toEqual(
        [
          "direct openai stream 1", "direct openai stream 4", "direct openai json 1", "direct openai json 4",
          ...["openai stream", "openai json", "grpc stream"].flatMap((m) => [1, 4].map((c) => `switchyard (6 processes) ${m} ${c}`)),
        ].sort(),
      );
      for (const r of report.rows) {
        expect(r.requests, key(r)).toBeGreaterThan(0);
        expect(r.errors, key(r)).toBe(0);
      }
      expect(readFileSync(out.replace(/\.json$/, ".svg"), "utf8")).toContain("<svg");
    } finally {
      rmSync(dir, { recursive: true, force: true });
      expect(existsSync(dir)).toBe(false);
    }
  }, 150_000);
});
