import { describe, it, expect, vi, beforeAll, afterEach } from "vitest";
import { mkdtemp, writeFile, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { evalCommand, scoreCommand, trainCommand } from "../src/commands.js";
import { defaultRouterPath } from "../src/index.js";
import { capture, syntheticRows, toJsonl } from "./fixtures.js";

let dir: string;
let dataPath: string;
let routerPath: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "router-test-"));
  dataPath = join(dir, "data.jsonl");
  routerPath = join(dir, "router.json");
  await writeFile(dataPath, toJsonl(syntheticRows(150)));
  const result = await capture(() => trainCommand(["--data", dataPath, "--out", routerPath, "--epochs", "3"]));
  expect(result.code).toBe(0);
});

afterEach(() => vi.restoreAllMocks());

describe("train", () => {
  it("writes a router file and says what it trained", async () => {
    const json = JSON.parse(await readFile(routerPath, "utf8"));
    expect(json.format).toBe("switchyard-router/1");
    expect(json.models).toEqual(["strong", "weak", "middle"]);
  });

  it("with --calibrate, adds the difficulty fallback and a calibration per model, and the router still scores", async () => {
    const calibrated = join(dir, "calibrated.json");
    const result = await capture(() => trainCommand(["--data", dataPath, "--out", calibrated, "--epochs", "3", "--calibrate"]));
    expect(result.code).toBe(0);
    const json = JSON.parse(await readFile(calibrated, "utf8"));
    expect(json.fallback?.weight).toBe(1);
    expect(Object.keys(json.calibration ?? {}).sort()).toEqual(["middle", "strong", "weak"]);
    const scored = await capture(() => scoreCommand(["--router", calibrated, "--data", dataPath]));
    expect(scored.code).toBe(0);
    const first = JSON.parse(scored.stdout.split("\n")[0]!);
    for (const v of Object.values(first.predicted as Record<string, number>)) expect(v).toBeGreaterThanOrEqual(0);
    expect((await capture(() => trainCommand(["--data", dataPath, "--out", calibrated, "--calibrate=yes"]))).code).toBe(2);
  });

  it("names a missing data file, a bad JSON line and an unknown flag, without a stack trace", async () => {
    const missing = await capture(() => trainCommand(["--data", join(dir, "nope.jsonl"), "--out", routerPath]));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/data file not found: .*nope\.jsonl/);

    const bad = join(dir, "bad.jsonl");
    await writeFile(bad, toJsonl(syntheticRows(2)) + "{not json}\n");
    const badLine = await capture(() => trainCommand(["--data", bad, "--out", routerPath]));
    expect(badLine.code).toBe(1);
    expect(badLine.stderr).toMatch(/bad JSON on line 3/);

    const unknown = await capture(() => trainCommand(["--data", dataPath, "--out", routerPath, "--fast"]));
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown flag --fast/);

    const noOut = await capture(() => trainCommand(["--data", dataPath]));
    expect(noOut.code).toBe(2);
    expect(noOut.stderr).toMatch(/missing --out/);
    for (const r of [missing, badLine, unknown, noOut]) expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe("score", () => {
  it("prints one JSON line per input row, same order, with a tier and every model's prediction", async () => {
    const { code, stdout } = await capture(() => scoreCommand(["--router", routerPath, "--data", dataPath]));
    expect(code).toBe(0);
    const lines = stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines).toHaveLength(150);
    expect(lines[0].id).toBe("syn/0");
    expect(lines[149].id).toBe("syn/149");
    for (const line of lines) {
      expect(Object.keys(line)).toEqual(["id", "tier", "predicted"]);
      expect(["simple", "standard", "complex"]).toContain(line.tier);
      expect(Object.keys(line.predicted)).toEqual(["strong", "weak", "middle"]);
      for (const v of Object.values(line.predicted) as number[]) expect(v >= 0 && v <= 1).toBe(true);
    }
  });

  it("scores rows that have messages only", async () => {
    const plain = join(dir, "plain.jsonl");
    await writeFile(plain, '{"id": 7, "messages": [{"role": "user", "content": "hello"}]}\n');
    const { code, stdout } = await capture(() => scoreCommand(["--router", routerPath, "--data", plain]));
    expect(code).toBe(0);
    expect(JSON.parse(stdout).id).toBe(7);
  });

  it("names a router file that is not a router", async () => {
    const { code, stderr } = await capture(() => scoreCommand(["--router", dataPath, "--data", dataPath]));
    expect(code).toBe(1);
    expect(stderr).toMatch(/router file .*data\.jsonl/);
  });
});

describe("eval", () => {
  it("prints the pair metrics and the quality/cost comparison, and writes the SVG", async () => {
    const svg = join(dir, "curve.svg");
    const { code, stdout } = await capture(() => evalCommand(["--router", routerPath, "--data", dataPath, "--strong", "strong", "--weak", "weak", "--svg", svg]));
    expect(code).toBe(0);
    expect(stdout).toMatch(/router\s+APGR 0\.\d{4}/);
    expect(stdout).toMatch(/CPT\(50%\)/);
    expect(stdout).toMatch(/best single model: strong/);
    // The reliability table: bins of predicted score against observed, and the calibration error.
    expect(stdout).toMatch(/calibration: predicted vs observed score over 400 \(row, model\) predictions/);
    expect(stdout).toMatch(/\n   0\.\d-[01]\.\d\s+\d+\s+0\.\d{4}\s+[01]\.\d{4}\n/);
    expect(stdout).toMatch(/expected calibration error \(ECE\) 0\.\d{4}; by model: strong 0\.\d{3}, weak 0\.\d{3}, middle 0\.\d{3}/);
    const text = await readFile(svg, "utf8");
    expect(text.startsWith("<svg")).toBe(true);
    expect(text).toContain("zero router (hull)");
  });

  it("cross-validates with --kfold", async () => {
    const { code, stdout } = await capture(() => evalCommand(["--data", dataPath, "--kfold", "3", "--epochs", "2"]));
    expect(code).toBe(0);
    expect(stdout).toMatch(/3-fold cross-validation/);
    expect(stdout).toMatch(/strong strong vs weak weak/);
  });

  it("rejects an unknown model and contradictory flags", async () => {
    const unknown = await capture(() => evalCommand(["--router", routerPath, "--data", dataPath, "--strong", "gpt-9"]));
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/--strong gpt-9/);
    const both = await capture(() => evalCommand(["--router", routerPath, "--data", dataPath, "--kfold", "3"]));
    expect(both.code).toBe(2);
    const neither = await capture(() => evalCommand(["--data", dataPath]));
    expect(neither.code).toBe(2);
    expect(neither.stderr).toMatch(/--router/);
  });
});

describe("defaultRouterPath", () => {
  it("points into the package's models folder", () => {
    expect(defaultRouterPath()).toMatch(/libs[/\\]router[/\\]models[/\\]default-router\.json$/);
  });
});

describe("a closed stdout (score ... | head)", () => {
  it("stops quietly with exit code 0 instead of crashing on EPIPE", async () => {
    await writeFile(join(dir, "many.jsonl"), toJsonl(syntheticRows(3000)));
    let writes = 0;
    const out = vi.spyOn(process.stdout, "write").mockImplementation(() => {
      writes++;
      // What Node does when the reader has gone away: an asynchronous 'error' event with EPIPE.
      setImmediate(() => process.stdout.emit("error", Object.assign(new Error("write EPIPE"), { code: "EPIPE" })));
      return true;
    });
    const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      const code = await scoreCommand(["--router", routerPath, "--data", join(dir, "many.jsonl")]);
      expect(code).toBe(0);
      expect(writes).toBe(1);
    } finally {
      out.mockRestore();
      err.mockRestore();
    }
  });
});

