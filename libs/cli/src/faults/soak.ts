import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname } from "node:path";
import { DEFAULT_FAKE_UPSTREAM, type FakeUpstreamOptions } from "../bench/fake-upstream.js";
import { handles, LoadProcess, MeshUnderTest, NatsServer, rssMb, Upstreams, type MeshProcess } from "./harness.js";
import { Outcome } from "./load.js";

export interface SoakOptions {
  durationMs: number;
  /** Load before the measured part: not in the first quarter (JIT, heap sizing, pools filling). */
  warmupMs: number;
  concurrency: number;
  sampleEveryMs: number;
  /** The cache's bounds for the run: every prompt is unique, so the cache fills to them and then evicts. */
  cacheMaxEntries: number;
  cacheMaxBytes: number;
  /** Most RSS growth, first to last quarter, that counts as flat (0.10 = 10 %). */
  rssTolerance: number;
  /** Most growth of the highest fd or TCP socket count, first to last quarter, per process. */
  handleGrowthBound: number;
  deadlineMs: number;
  upstream: FakeUpstreamOptions;
  logDir?: string;
  progress: (line: string) => void;
}

export const DEFAULT_SOAK_OPTIONS: Omit<SoakOptions, "progress"> = {
  durationMs: 10 * 60_000,
  warmupMs: 60_000,
  concurrency: 100,
  sampleEveryMs: 5_000,
  cacheMaxEntries: 2_000,
  cacheMaxBytes: 8 * 1024 * 1024,
  rssTolerance: 0.1,
  handleGrowthBound: 16,
  deadlineMs: 15_000,
  upstream: DEFAULT_FAKE_UPSTREAM,
};

/** One process at one sample. */
interface ProcessSample {
  pid: number;
  rssMb: number;
  fds: number;
  tcp: number;
  /** From the service's own /metrics (services only): V8 heap in use, and libuv handles alive. */
  heapUsedMb?: number;
  handles?: number;
}

export interface SoakSample {
  /** ms since the measured part began (negative during warm-up). */
  atMs: number;
  processes: Partial<Record<string, ProcessSample>>;
}

export interface SoakProcessResult {
  process: string;
  /** Part of the mesh (judged) or of the harness (shown only). */
  role: "mesh" | "harness";
  pids: number[];
  rssFirstQuarterMb: number;
  rssLastQuarterMb: number;
  rssChange: number;
  rssMaxMb: number;
  /** Lowest V8 heap in use in the quarter (just after a collection: what is really alive), services only. */
  heapFloorFirstQuarterMb?: number;
  heapFloorLastQuarterMb?: number;
  handlesFirstQuarterMax?: number;
  handlesLastQuarterMax?: number;
  fdsFirstQuarterMax: number;
  fdsLastQuarterMax: number;
  tcpFirstQuarterMax: number;
  tcpLastQuarterMax: number;
  ok: boolean;
  problems: string[];
}

export interface SoakReport {
  date: string;
  machine: string;
  options: Omit<SoakOptions, "progress">;
  cacheNote: string;
  load: { requests: number; served: number; perSecond: number; cleanErrors: number; hung: number; halfAnswerDone: number; unclean: number; errorKinds: Record<string, number> };
  processes: SoakProcessResult[];
  /** Crash, exit and unhandled-rejection lines in the mesh's captured output. */
  trouble: string[];
  /** Error-level log lines in the mesh's output (count; the first few in `errorSamples`). */
  errorLines: number;
  errorSamples: string[];
  samples: SoakSample[];
  ok: boolean;
}

const MESH: MeshProcess[] = ["supervisor", "gateway", "classifier", "policy", "cache", "provider"];
const SERVICES = ["gateway", "classifier", "policy", "cache", "provider"] as const;

/**
 * A soak: the five-process mesh as `switchyard start` runs it, steady closed-loop streamed load for
 * `durationMs` after a warm-up, and every process's RSS, open file descriptors and TCP sockets
 * sampled from /proc. Judged: RSS of every mesh process flat within `rssTolerance` from the first
 * to the last quarter, no growing fd or socket count, no restart, no crash or unhandled rejection in
 * any process's output, every request served.
 */
export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  const machine = `${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, Node ${process.version}, ${process.platform}, load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")} at start`;
  const cacheNote = `every prompt unique; cache bounded at max_entries ${o.cacheMaxEntries}, max_bytes ${o.cacheMaxBytes} (it fills during the warm-up, then evicts)`;
  const cleanups: (() => Promise<void>)[] = [];
  const samples: SoakSample[] = [];
  try {
    const nats = await NatsServer.start();
    cleanups.push(() => nats.close());
    const upstreams = await Upstreams.start(o.upstream, 1);
    cleanups.push(() => upstreams.close());
    const mesh = await MeshUnderTest.start(
      {
        upstreams: upstreams.controls.map((c) => `${c.baseUrl}/v1`),
        natsUrl: nats.url,
        streamIdleTimeoutMs: 60_000,
        firstTokenTimeoutMs: 15_000,
        extra: { cache: { backend: "memory", max_entries: o.cacheMaxEntries, max_bytes: o.cacheMaxBytes } },
      },
      o.logDir,
    );
    cleanups.push(() => mesh.stop());
    const load = LoadProcess.start();
    cleanups.push(() => load.close());
    const expectText = Array.from({ length: o.upstream.chunks }, (_, i) => `tok${i} `).join("");
    o.progress(`mesh ready; ${o.concurrency} streams in flight; ${o.warmupMs / 1000} s warm-up, then ${o.durationMs / 1000} s measured; ${cacheNote}`);
    o.progress(`output of every mesh process in ${mesh.logFile}`);

    const measuredFrom = Date.now() + o.warmupMs;
    const sample = async () => {
      const atMs = Date.now() - measuredFrom;
      const pids: Record<string, number | undefined> = { ...mesh.pids(), "nats-server": nats.pid, upstream: upstreams.pid, "load generator": load.pid };
      const processes: SoakSample["processes"] = {};
      for (const [name, pid] of Object.entries(pids)) {
        if (pid === undefined) continue;
        const rss = rssMb(pid);
        const h = handles(pid);
        if (rss !== undefined && h) processes[name] = { pid, rssMb: Math.round(rss * 10) / 10, fds: h.fds, tcp: h.tcp };
      }
      await Promise.all(
        SERVICES.map(async (name) => {
          const p = processes[name];
          const m = p ? await mesh.runtimeMetrics(name) : undefined;
          if (p && m) Object.assign(p, m);
        }),
      );
      samples.push({ atMs, processes });
    };
    await load.run({ url: mesh.openaiUrl, model: "switchyard/auto", concurrency: o.concurrency, deadlineMs: o.deadlineMs, expectText }, "warm-up");
    await new Promise((r) => setTimeout(r, o.warmupMs));
    await load.phase("soak");
    const warm = await load.collect("warm-up");
    const started = Date.now();
    const timer = setInterval(async () => {
      await sample();
      const last = samples.at(-1)!;
      const minute = Math.floor(last.atMs / 60_000);
      if (samples.length > 1 && Math.floor(samples.at(-2)!.atMs / 60_000) !== minute) {
        o.progress(`${minute} min: ${MESH.map((p) => `${p} ${last.processes[p]?.rssMb ?? "-"} MB/${last.processes[p]?.fds ?? "-"} fds`).join(", ")}`);
      }
    }, o.sampleEveryMs);
    await sample();
    await new Promise((r) => setTimeout(r, o.durationMs));
    clearInterval(timer);
    await sample();
    await load.stop();
    const measured = await load.collect("soak");
    const elapsed = Date.now() - started;
    const count = (x: Outcome) => measured.records.filter((r) => r[2] === x).length;
    const warmBad = warm.records.filter((r) => r[2] === Outcome.hung || r[2] === Outcome.halfAnswerDone || r[2] === Outcome.unclean).length;
    const loadResult = {
      requests: measured.records.length,
      served: count(Outcome.served),
      perSecond: Math.round((count(Outcome.served) / elapsed) * 1000 * 10) / 10,
      cleanErrors: count(Outcome.httpError) + count(Outcome.streamError),
      hung: count(Outcome.hung),
      halfAnswerDone: count(Outcome.halfAnswerDone),
      unclean: count(Outcome.unclean) + warmBad,
      errorKinds: sumKinds(warm.kinds, measured.kinds),
    };
    const processes = judgeProcesses(samples.filter((s) => s.atMs >= 0), o);
    const trouble = mesh.trouble(0);
    const errors = mesh.errorLines();
    const ok =
      processes.every((p) => p.ok) &&
      trouble.length === 0 &&
      loadResult.served === loadResult.requests &&
      loadResult.served > 0 &&
      loadResult.unclean === 0;
    return {
      date: new Date().toISOString(),
      machine,
      options: withoutProgress(o),
      cacheNote,
      load: loadResult,
      processes,
      trouble,
      errorLines: errors.length,
      errorSamples: errors.slice(0, 5),
      samples,
      ok,
    };
  } finally {
    for (const c of cleanups.reverse()) await c().catch((err: unknown) => o.progress(`cleanup: ${(err as Error).message}`));
  }
}

function sumKinds(...all: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const kinds of all) for (const [k, n] of Object.entries(kinds)) out[k] = (out[k] ?? 0) + n;
  return out;
}

function withoutProgress(o: SoakOptions): Omit<SoakOptions, "progress"> {
  const { progress: _, ...rest } = o;
  return rest;
}

/** First-versus-last-quarter RSS (mean) and handles (highest) of every process sampled. */
export function judgeProcesses(samples: SoakSample[], o: Pick<SoakOptions, "rssTolerance" | "handleGrowthBound">): SoakProcessResult[] {
  const names = [...new Set(samples.flatMap((s) => Object.keys(s.processes)))];
  const quarter = Math.max(1, Math.floor(samples.length / 4));
  const first = samples.slice(0, quarter);
  const last = samples.slice(-quarter);
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
  const max = (xs: number[]) => (xs.length ? Math.max(...xs) : 0);
  const min = (xs: number[]) => (xs.length ? Math.min(...xs) : 0);
  const of = (set: SoakSample[], name: string) => set.map((s) => s.processes[name]).filter((p): p is ProcessSample => p !== undefined);
  return names.map((name) => {
    const all = of(samples, name);
    const role: SoakProcessResult["role"] = (MESH as string[]).includes(name) ? "mesh" : "harness";
    const rssFirst = mean(of(first, name).map((p) => p.rssMb));
    const rssLast = mean(of(last, name).map((p) => p.rssMb));
    const r: SoakProcessResult = {
      process: name,
      role,
      pids: [...new Set(all.map((p) => p.pid))],
      rssFirstQuarterMb: Math.round(rssFirst * 10) / 10,
      rssLastQuarterMb: Math.round(rssLast * 10) / 10,
      rssChange: rssFirst > 0 ? Math.round(((rssLast - rssFirst) / rssFirst) * 1000) / 1000 : 0,
      rssMaxMb: max(all.map((p) => p.rssMb)),
      ...(all.some((p) => p.heapUsedMb !== undefined)
        ? {
            heapFloorFirstQuarterMb: min(of(first, name).flatMap((p) => (p.heapUsedMb === undefined ? [] : [p.heapUsedMb]))),
            heapFloorLastQuarterMb: min(of(last, name).flatMap((p) => (p.heapUsedMb === undefined ? [] : [p.heapUsedMb]))),
            handlesFirstQuarterMax: max(of(first, name).flatMap((p) => (p.handles === undefined ? [] : [p.handles]))),
            handlesLastQuarterMax: max(of(last, name).flatMap((p) => (p.handles === undefined ? [] : [p.handles]))),
          }
        : {}),
      fdsFirstQuarterMax: max(of(first, name).map((p) => p.fds)),
      fdsLastQuarterMax: max(of(last, name).map((p) => p.fds)),
      tcpFirstQuarterMax: max(of(first, name).map((p) => p.tcp)),
      tcpLastQuarterMax: max(of(last, name).map((p) => p.tcp)),
      ok: true,
      problems: [],
    };
    if (role === "mesh") {
      if (r.pids.length > 1) r.problems.push(`restarted (pids ${r.pids.join(", ")})`);
      // Growth is what a leak does; memory handed back to the system is not a problem.
      if (r.rssChange > o.rssTolerance) r.problems.push(`RSS ${r.rssFirstQuarterMb} -> ${r.rssLastQuarterMb} MB (${(r.rssChange * 100).toFixed(1)} %)`);
      if (r.fdsLastQuarterMax - r.fdsFirstQuarterMax > o.handleGrowthBound) r.problems.push(`fds ${r.fdsFirstQuarterMax} -> ${r.fdsLastQuarterMax}`);
      if (r.tcpLastQuarterMax - r.tcpFirstQuarterMax > o.handleGrowthBound) r.problems.push(`TCP sockets ${r.tcpFirstQuarterMax} -> ${r.tcpLastQuarterMax}`);
      if (r.handlesFirstQuarterMax !== undefined && r.handlesLastQuarterMax! - r.handlesFirstQuarterMax > o.handleGrowthBound) {
        r.problems.push(`libuv handles ${r.handlesFirstQuarterMax} -> ${r.handlesLastQuarterMax}`);
      }
      r.ok = r.problems.length === 0;
    }
    return r;
  });
}

/** The table a person reads. */
export function soakTable(report: SoakReport): string {
  const head = ["process", "RSS first 1/4", "RSS last 1/4", "change", "RSS max", "live heap first->last", "fds first->last", "TCP first->last", "handles first->last", "ok"];
  const rows = report.processes.map((p) => [
    p.role === "mesh" ? p.process : `(${p.process})`,
    `${p.rssFirstQuarterMb.toFixed(1)} MB`,
    `${p.rssLastQuarterMb.toFixed(1)} MB`,
    `${p.rssChange >= 0 ? "+" : ""}${(p.rssChange * 100).toFixed(1)} %`,
    `${p.rssMaxMb.toFixed(1)} MB`,
    p.heapFloorFirstQuarterMb === undefined ? "" : `${p.heapFloorFirstQuarterMb.toFixed(1)} -> ${p.heapFloorLastQuarterMb!.toFixed(1)} MB`,
    `${p.fdsFirstQuarterMax} -> ${p.fdsLastQuarterMax}`,
    `${p.tcpFirstQuarterMax} -> ${p.tcpLastQuarterMax}`,
    p.handlesFirstQuarterMax === undefined ? "" : `${p.handlesFirstQuarterMax} -> ${p.handlesLastQuarterMax}`,
    p.role === "harness" ? "" : p.ok ? "ok" : "FAILED",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const l = report.load;
  const out = [
    line(head),
    line(widths.map((w) => "-".repeat(w))),
    ...rows.map(line),
    "",
    "(parenthesised: the harness, shown, not judged. RSS: mean of each quarter. live heap: the lowest V8 heap in use in each quarter, from",
    " the service's /metrics, i.e. what survives a collection; a leak raises it, heap sizing and allocator slack do not. fds, TCP",
    " sockets and libuv handles: the highest count in each quarter)",
    `load: ${l.requests} requests, ${l.served} served (${l.perSecond}/s), ${l.cleanErrors} clean errors, ${l.hung} hung, ${l.halfAnswerDone} half+[DONE], ${l.unclean} unclean`,
    `cache: ${report.cacheNote}`,
    `crashes / unhandled rejections in the mesh's output: ${report.trouble.length === 0 ? "none" : report.trouble.length}; error-level log lines: ${report.errorLines}`,
  ];
  for (const t of report.trouble.slice(0, 10)) out.push(`  ${t}`);
  for (const p of report.processes) for (const problem of p.problems) out.push(`FAIL ${p.process}: ${problem}`);
  if (l.served !== l.requests || l.unclean > 0) out.push(`FAIL load: ${l.requests - l.served} of ${l.requests} requests not served`);
  if (Object.keys(l.errorKinds).length) out.push(`failures: ${JSON.stringify(l.errorKinds)}`);
  return out.join("\n") + "\n";
}

export function writeSoakReport(report: SoakReport, path: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(report, null, 2) + "\n");
}
