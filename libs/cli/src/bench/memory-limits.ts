import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * Memory limits per service, in MiB, as the Helm chart sets them (deploy/helm/switchyard/values.yaml):
 * Node sizes V8's heap from the limit it runs under, so a benchmark without them measures another
 * garbage collector than the one a deployment gets.
 */
export const CHART_MEMORY_LIMITS_MIB: Readonly<Record<string, number>> = {
  gateway: 768,
  classifier: 768,
  policy: 512,
  cache: 512,
  provider: 512,
  ledger: 1536,
};

/** `chart`, or `name=MiB,...` (services not named run without a limit). */
export function parseMemoryLimits(value: string): Record<string, number> {
  if (value === "chart") return { ...CHART_MEMORY_LIMITS_MIB };
  const limits: Record<string, number> = {};
  for (const part of value.split(",").map((s) => s.trim()).filter(Boolean)) {
    const [name, mib] = part.split("=");
    const n = Number(mib);
    if (!name || !Object.hasOwn(CHART_MEMORY_LIMITS_MIB, name) || !Number.isInteger(n) || n < 64) {
      throw new Error(`--memory-limits takes "chart" or service=MiB pairs (services: ${Object.keys(CHART_MEMORY_LIMITS_MIB).join(", ")}; at least 64), got "${part}"`);
    }
    limits[name] = n;
  }
  return limits;
}

/**
 * One memory cgroup per limited service, made for one run and removed after it. Needs a writable
 * cgroup file system (root on Linux); works with cgroup v2 (memory.max) and v1 (memory.limit_in_bytes).
 */
export class MemoryCgroups {
  private readonly made: string[] = [];

  private constructor(
    private readonly base: string,
    private readonly limitFile: string,
    private readonly swapFile: string,
  ) {}

  static open(): MemoryCgroups {
    const v2 = "/sys/fs/cgroup";
    if (existsSync(join(v2, "cgroup.subtree_control"))) {
      // cgroup v2: children get a memory.max only where the parent delegates the memory controller.
      if (!readFileSync(join(v2, "cgroup.subtree_control"), "utf8").split(/\s+/).includes("memory")) {
        throw new Error(`--memory-limits: ${v2} does not delegate the memory controller to its children (cgroup.subtree_control lacks "memory")`);
      }
      return new MemoryCgroups(v2, "memory.max", "memory.swap.max");
    }
    const v1 = "/sys/fs/cgroup/memory";
    if (existsSync(join(v1, "memory.limit_in_bytes"))) return new MemoryCgroups(v1, "memory.limit_in_bytes", "memory.memsw.limit_in_bytes");
    throw new Error("--memory-limits needs a memory cgroup file system at /sys/fs/cgroup (Linux)");
  }

  /** Makes a cgroup limited to `mib` (swap included) and returns its folder, into which a child moves itself. */
  create(name: string, mib: number): string {
    const dir = join(this.base, `switchyard-bench-${process.pid}-${name}`);
    try {
      mkdirSync(dir);
      this.made.push(dir);
      writeFileSync(join(dir, this.limitFile), String(mib * 1024 * 1024));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(`--memory-limits could not make a memory cgroup in ${this.base} (${code ?? (err as Error).message})${code === "EACCES" || code === "EPERM" || code === "EROFS" ? ": it needs root" : ""}`);
    }
    // Where swap is accounted, none: a service over its limit is killed, as in Kubernetes, not swapped.
    try {
      writeFileSync(join(dir, this.swapFile), this.swapFile === "memory.swap.max" ? "0" : String(mib * 1024 * 1024));
    } catch {
      // no swap accounting on this kernel: nothing to limit
    }
    return dir;
  }

  /** Removes the cgroups (once their processes have exited). */
  remove(): void {
    for (const dir of this.made.splice(0)) {
      try {
        rmdirSync(dir);
      } catch {
        // a process still in it: the kernel refuses; rmdir works once it has exited
      }
    }
  }
}

/** The command that runs `command args...` inside the cgroup at `dir`: a shell that moves itself in, then execs. */
export function inCgroup(dir: string, command: string, args: string[]): { command: string; args: string[] } {
  return { command: "/bin/sh", args: ["-c", `echo $$ > '${dir}/cgroup.procs' && exec "$0" "$@"`, command, ...args] };
}
