import { fork, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml, stringify as toYaml } from "yaml";
import { defaultConfigPath, parseConfig } from "@switchyard/config";
import { Mesh } from "../mesh.js";
import { freePort } from "../ports.js";
import { DEFAULT_FAKE_UPSTREAM, type FakeUpstreamOptions } from "./fake-upstream.js";
import type { LoadJob, LoadResult } from "./loadgen.js";
import { addDeltas, svg, table, toRow, type BenchRow } from "./report.js";
import { MemoryCgroups } from "./memory-limits.js";

const here = dirname(fileURLToPath(import.meta.url));

/** Another OpenAI-compatible gateway measured beside Switchyard, in front of the same upstream. */
export interface Peer {
  name: string;
  /** Base URL up to /v1. */
  url: string;
  headers: Record<string, string>;
  /** The model the peer is asked for (default "fixed", the fake upstream's, as a plain proxy forwards it). */
  model?: string;
}

export type Layout = "direct" | "five" | "single";
export type Mode = "openai-stream" | "openai-json" | "grpc-stream" | "grpc-json";

export interface BenchOptions {
  layouts: Layout[];
  modes: Mode[];
  concurrency: number[];
  durationMs: number;
  warmupMs: number;
  peers: Peer[];
  /** Modes measured on peers (default: both OpenAI modes). */
  peerModes: Mode[];
  upstream: FakeUpstreamOptions;
  /** Port of the fake upstream (0 = any free port). */
  upstreamPort?: number;
  /** Extra configuration merged over the bench configuration (YAML file). */
  configOverlay?: string;
  /** Memory limit per service of the five-process mesh, MiB (each in its own memory cgroup). */
  memoryLimitsMib?: Record<string, number>;
  out: string;
}

/** A running target: where to send load and which processes to watch. */
interface Target {
  name: string;
  openaiUrl: string;
  grpcAddress?: string;
  model: string;
  headers: Record<string, string>;
  pids: () => Record<string, number>;
  modes: Mode[];
  stop: () => Promise<void>;
}

/**
 * Runs the whole benchmark in one go: a fake upstream in its own process, a load generator in
 * another, then every target (direct, the five-process mesh, the one-process mesh, peers) at every
 * concurrency and mode, so that every figure comes from the same machine state. Returns the rows.
 */
export async function runBench(o: BenchOptions): Promise<BenchRow[]> {
  const upstream = await startChild(join(here, "upstream-main.js"), [JSON.stringify(o.upstream), String(o.upstreamPort ?? 0)]);
  const upstreamPort = ((await upstream.firstMessage) as { port: number }).port;
  const upstreamBase = `http://127.0.0.1:${upstreamPort}/v1`;
  process.stderr.write(`fake upstream at ${upstreamBase}\n`);
  const loadgen = await startChild(join(here, "loadgen-main.js"), []);
  const expectText = Array.from({ length: o.upstream.chunks }, (_, i) => `tok${i} `).join("");
  const rows: BenchRow[] = [];
  const dir = mkdtempSync(join(tmpdir(), "switchyard-bench-"));
  try {
    const targets: (() => Promise<Target>)[] = [];
    if (o.layouts.includes("direct")) {
      targets.push(async () => ({
        name: "direct",
        openaiUrl: `http://127.0.0.1:${upstreamPort}/v1`,
        model: "fixed",
        headers: {},
        pids: () => ({ upstream: upstream.child.pid! }),
        modes: o.modes.filter((m) => m.startsWith("openai")),
        stop: async () => {},
      }));
    }
    for (const layout of ["five", "single"] as const) {
      if (!o.layouts.includes(layout)) continue;
      targets.push(() => startMesh(layout, upstreamBase, dir, o));
    }
    for (const peer of o.peers) {
      const headers = Object.fromEntries(Object.entries(peer.headers).map(([k, v]) => [k, v.replaceAll("{upstream}", upstreamBase)]));
      targets.push(async () => ({ name: peer.name, openaiUrl: peer.url, model: peer.model ?? "fixed", headers, pids: () => ({}), modes: o.peerModes, stop: async () => {} }));
    }
    for (const start of targets) {
      const target = await start();
      try {
        for (const mode of o.modes.filter((m) => target.modes.includes(m))) {
          for (const concurrency of o.concurrency) {
            const api = mode.startsWith("grpc") ? "grpc" : "openai";
            const stream = mode.endsWith("stream");
            const job: LoadJob = {
              api,
              url: api === "grpc" ? target.grpcAddress! : target.openaiUrl,
              headers: target.headers,
              stream,
              concurrency,
              durationMs: o.durationMs,
              warmupMs: o.warmupMs,
              model: target.model,
              expectText,
              deadlineMs: 30_000,
            };
            const watch = watchProcesses({ ...target.pids(), client: loadgen.child.pid! });
            const result = (await loadgen.ask(job)) as LoadResult;
            const usage = watch.stop();
            const row = toRow(target.name, api, stream, concurrency, result);
            if (result.requests > 0) {
              row.cpuUsPerRequest = Object.fromEntries(Object.entries(usage.cpuMs).map(([k, ms]) => [k, (ms * 1000) / result.requests]));
            }
            row.peakRssMb = usage.peakRssMb;
            rows.push(row);
            process.stderr.write(`${target.name} ${mode} c=${concurrency}: ${row.perSecond.toFixed(0)}/s, TTFT p50 ${row.ttft.p50.toFixed(1)} ms, errors ${row.errors}\n`);
          }
        }
      } finally {
        await target.stop();
      }
    }
  } finally {
    loadgen.child.kill();
    upstream.child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
  addDeltas(rows);
  return rows;
}

/** Writes the table to stdout and the JSON and SVG files; returns the table. */
export function writeReport(rows: BenchRow[], o: BenchOptions): string {
  const machine = `${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, Node ${process.version}, ${process.platform}`;
  const header =
    `switchyard bench: ${o.durationMs} ms per run after ${o.warmupMs} ms warm-up; upstream TTFT ${o.upstream.ttftMs} ms, ` +
    `${o.upstream.chunks} chunks ${o.upstream.chunkIntervalMs} ms apart\nmachine: ${machine}\n` +
    (o.memoryLimitsMib ? `memory limits of the six-process mesh (MiB, one cgroup per service): ${Object.entries(o.memoryLimitsMib).map(([n, mib]) => `${n} ${mib}`).join(", ")}\n` : "") +
    (process.env.NODE_OPTIONS ? `NODE_OPTIONS: ${process.env.NODE_OPTIONS}\n` : "") +
    "\n";
  const text = header + table(rows);
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, JSON.stringify({ date: new Date().toISOString(), machine, options: o, rows }, null, 2) + "\n");
  writeFileSync(o.out.replace(/\.json$/, "") + ".svg", svg(rows, `switchyard bench, ${machine}`));
  return text;
}

async function startMesh(layout: "five" | "single", upstreamUrl: string, dir: string, o: BenchOptions): Promise<Target> {
  const ports: Record<string, number> = {};
  for (const n of ["gateway_http", "gateway_grpc", "classifier", "policy", "cache", "provider", "ledger", "classifier_http", "policy_http", "cache_http", "provider_http", "ledger_http"]) ports[n] = await freePort();
  const configPath = join(dir, `${layout}.yaml`);
  writeFileSync(configPath, benchConfig(upstreamUrl, ports, join(dir, `${layout}-ledger`), o.configOverlay));
  const config = parseConfig(readFileSync(configPath, "utf8"), configPath);
  const limits = layout === "five" ? o.memoryLimitsMib : undefined;
  const cgroups = limits ? MemoryCgroups.open() : undefined;
  const cgroupDirs = new Map<string, string>();
  try {
    for (const [name, mib] of Object.entries(limits ?? {})) cgroupDirs.set(name, cgroups!.create(name, mib));
  } catch (err) {
    cgroups?.remove();
    throw err;
  }
  const mesh = new Mesh({
    config,
    env: { ...process.env, SWITCHYARD_CONFIG: configPath, SWITCHYARD_NATS_ENABLED: "false" },
    // Under --memory-limits a service may be killed for its memory: say so rather than only "not ready".
    log: (event, fields) => {
      if (event.startsWith("service exited")) process.stderr.write(`switchyard bench: ${event} ${JSON.stringify(fields ?? {})}\n`);
    },
    childOutput: process.env.SWITCHYARD_BENCH_LOGS ? "inherit" : "ignore",
    restart: false,
    singleProcess: layout === "single",
    cgroupOf: (name) => cgroupDirs.get(name),
  });
  try {
    await mesh.start();
    await mesh.waitReady();
  } catch (err) {
    await mesh.stop(1_000);
    cgroups?.remove();
    throw err;
  }
  return {
    name: layout === "five" ? "switchyard (6 processes)" : "switchyard (1 process)",
    openaiUrl: `http://127.0.0.1:${config.ports.gateway_http}/v1`,
    grpcAddress: `127.0.0.1:${config.ports.gateway_grpc}`,
    model: "switchyard/auto",
    headers: {},
    pids: () => mesh.pids(),
    modes: o.modes,
    stop: async () => {
      await mesh.stop(5_000);
      cgroups?.remove();
    },
  };
}

/**
 * The embedded defaults with one provider, an OpenAI-compatible one at the fake upstream: nothing
 * else is tuned. NATS is off so that runs do not publish into a shared server (the broadcast is
 * off the request path either way).
 */
function benchConfig(upstreamUrl: string, ports: Record<string, number>, ledgerDir: string, overlay?: string): string {
  const defaults = parseYaml(readFileSync(defaultConfigPath(), "utf8")) as Record<string, unknown>;
  const extra = overlay ? (parseYaml(readFileSync(overlay, "utf8")) as Record<string, unknown>) : {};
  return toYaml({
    ...defaults,
    listen_host: "127.0.0.1",
    ports,
    providers: [
      {
        name: "bench",
        kind: "openai",
        base_url: upstreamUrl,
        enabled: true,
        models: [{ name: "fixed", input_usd_per_mtok: 1, output_usd_per_mtok: 2, tiers: ((defaults.tiers as { name: string }[]) ?? []).map((t) => t.name) }],
      },
    ],
    nats: { ...(defaults.nats as object), enabled: false },
    // Every request is accounted in the run as in production: records go to the ledger (PGlite here).
    ledger: { data_dir: ledgerDir },
    ...extra,
  });
}

interface Child {
  child: ChildProcess;
  firstMessage: Promise<unknown>;
  ask(message: unknown): Promise<unknown>;
}

async function startChild(script: string, args: string[]): Promise<Child> {
  const child = fork(script, args, { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const firstMessage = new Promise<unknown>((resolve, reject) => {
    child.once("message", resolve);
    child.once("exit", (code) => reject(new Error(`${script} exited (${code})`)));
  });
  return {
    child,
    firstMessage,
    ask: (message) =>
      new Promise((resolve, reject) => {
        const onExit = (code: number | null) => reject(new Error(`load generator exited (${code})`));
        child.once("exit", onExit);
        child.once("message", (reply: { ok: boolean; result?: unknown; error?: string }) => {
          child.off("exit", onExit);
          if (reply.ok) resolve(reply.result);
          else reject(new Error(reply.error));
        });
        child.send(message as object);
      }),
  };
}

/** CPU time (from /proc) and peak RSS of some processes while a run goes on. Linux only; empty elsewhere. */
function watchProcesses(pids: Record<string, number>): { stop: () => { cpuMs: Record<string, number>; peakRssMb: Record<string, number> } } {
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMsOf(pid)]));
  const peak: Record<string, number> = {};
  const sample = () => {
    for (const [k, pid] of Object.entries(pids)) {
      const rss = rssMbOf(pid);
      if (rss !== undefined && rss > (peak[k] ?? 0)) peak[k] = rss;
    }
  };
  sample();
  const timer = setInterval(sample, 250);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      const cpuMs: Record<string, number> = {};
      for (const [k, pid] of Object.entries(pids)) {
        const a = cpu0[k];
        const b = cpuMsOf(pid);
        if (a !== undefined && b !== undefined) cpuMs[k] = b - a;
      }
      return { cpuMs, peakRssMb: peak };
    },
  };
}

const TICKS_PER_SECOND = 100;

function cpuMsOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

function rssMbOf(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

export { DEFAULT_FAKE_UPSTREAM };
