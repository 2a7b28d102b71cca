import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { CHART_MEMORY_LIMITS_MIB, inCgroup, parseMemoryLimits } from "../src/bench/memory-limits.js";

const mib = (quantity: string) => {
  const m = /^(\d+)(Mi|Gi)$/.exec(quantity);
  if (!m) throw new Error(`not a Mi/Gi quantity: ${quantity}`);
  return Number(m[1]) * (m[2] === "Gi" ? 1024 : 1);
};

describe("bench --memory-limits", () => {
  it("'chart' is the Helm chart's memory limit of every service", () => {
    const values = parse(readFileSync(fileURLToPath(new URL("../../../deploy/helm/switchyard/values.yaml", import.meta.url)), "utf8")) as {
      componentDefaults: { resources: { limits: { memory: string } } };
      components: Record<string, { resources?: { limits?: { memory?: string } } }>;
    };
    const chart = Object.fromEntries(
      Object.keys(CHART_MEMORY_LIMITS_MIB).map((name) => [name, mib(values.components[name]?.resources?.limits?.memory ?? values.componentDefaults.resources.limits.memory)]),
    );
    expect(parseMemoryLimits("chart")).toEqual(chart);
  });

  it("takes service=MiB pairs and refuses anything else by name", () => {
    expect(parseMemoryLimits("gateway=300, provider=256")).toEqual({ gateway: 300, provider: 256 });
    expect(() => parseMemoryLimits("envoy=256")).toThrow(/services: gateway, classifier/);
    expect(() => parseMemoryLimits("gateway=lots")).toThrow(/got "gateway=lots"/);
    expect(() => parseMemoryLimits("gateway=16")).toThrow(/at least 64/);
  });

  it("starts a command in the cgroup by a shell that moves itself there, then execs it with its arguments", () => {
    // A plain folder stands in for the cgroup: the shell writes its pid where the kernel would read it.
    const dir = mkdtempSync(join(tmpdir(), "cgroup-"));
    try {
      const { command, args } = inCgroup(dir, process.execPath, ["-e", "console.log(JSON.stringify([process.pid, process.argv.slice(1)]))", "a b", "$HOME"]);
      const [pid, argv] = JSON.parse(execFileSync(command, args, { encoding: "utf8" })) as [number, string[]];
      expect(argv).toEqual(["a b", "$HOME"]);
      expect(readFileSync(join(dir, "cgroup.procs"), "utf8").trim()).toBe(String(pid)); // exec kept the pid
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
