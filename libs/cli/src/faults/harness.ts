import { execFile, fork, spawn, type ChildProcess } from "node:child_process";
import { createServer, connect as tcpConnect, type Server, type Socket } from "node:net";
import { promisify } from "node:util";
import { accessSync, closeSync, constants, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify as toYaml } from "yaml";
import { SERVICE_NAMES, type ServiceName } from "@switchyard/config";
import type { FakeUpstreamOptions } from "../bench/fake-upstream.js";
import { freePort, reachable } from "../ports.js";
import type { FaultLoadJob, PhaseRecords } from "./load.js";
import { UpstreamControl } from "./upstream.js";

/** libs/cli, from src/faults or dist/faults alike. */
const CLI_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/**
 * A script of this package as compiled JavaScript. Child processes always run the built code
 * (as the services do), also when the suite itself runs from TypeScript sources under vitest.
 */
export function compiled(relative: string): string {
  return join(CLI_ROOT, "dist", relative);
}

/** An executable on the PATH, or in the sbin folders where Debian puts nats-server. */
function findBinary(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/usr/local/sbin"]) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once("exit", () => r()));
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function terminate(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = exited(child);
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await gone;
  clearTimeout(timer);
}

/** A nats-server of our own (JetStream, data in a folder), which a fault stops and starts again on the same port and folder. */
export class NatsServer {
  private child: ChildProcess | undefined;
  readonly dir = mkdtempSync(join(tmpdir(), "switchyard-faults-nats-"));

  private constructor(
    private readonly binary: string,
    readonly port: number,
  ) {}

  static async start(): Promise<NatsServer> {
    const binary = findBinary("nats-server");
    if (!binary) throw new Error("nats-server is not installed (the fault suite runs the mesh against a NATS of its own)");
    const server = new NatsServer(binary, await freePort());
    await server.resume();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.exitCode === null ? this.child.pid : undefined;
  }

  /** Starts it (again) on the same port and folder; resolves once it accepts connections. */
  async resume(): Promise<void> {
    this.child = spawn(this.binary, ["-a", "127.0.0.1", "-p", String(this.port), "-js", "-sd", this.dir], { stdio: "ignore" });
    const child = this.child;
    await waitFor("nats-server", async () => {
      if (child.exitCode !== null) throw new Error(`nats-server exited (${child.exitCode})`);
      return reachable("127.0.0.1", this.port, 200);
    }, 10_000);
  }

  /** Stops it (SIGTERM, as an operator or an orchestrator would). */
  async halt(): Promise<void> {
    if (this.child) await terminate(this.child);
  }

  async close(): Promise<void> {
    await this.halt();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A redis-server of our own with no persistence, which faults stop, start, pause and resume. */
export class RedisServer {
  private child: ChildProcess | undefined;

  private constructor(
    private readonly binary: string,
    readonly port: number,
  ) {}

  static async start(): Promise<RedisServer> {
    const binary = findBinary("redis-server");
    if (!binary) throw new Error("redis-server is not installed (the Redis faults need one of their own)");
    const server = new RedisServer(binary, await freePort());
    await server.resume();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.exitCode === null ? this.child.pid : undefined;
  }

  async resume(): Promise<void> {
    this.child = spawn(this.binary, ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
    const child = this.child;
    await waitFor("redis-server", async () => {
      if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode})`);
      return reachable("127.0.0.1", this.port, 200);
    }, 10_000);
  }

  async halt(): Promise<void> {
    if (this.child) {
      this.child.kill("SIGCONT"); // a paused server cannot act on SIGTERM
      await terminate(this.child);
    }
  }

  /** SIGSTOP: the port still accepts connections (the kernel does), nothing answers. */
  pause(): void {
    this.child?.kill("SIGSTOP");
  }

  unpause(): void {
    this.child?.kill("SIGCONT");
  }

  close(): Promise<void> {
    return this.halt();
  }
}

/** A child process of this package spoken to over IPC, request by request. */
export class IpcChild {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly first: Promise<unknown>;

  constructor(readonly child: ChildProcess) {
    let gotFirst: (v: unknown) => void = () => {};
    this.first = new Promise((resolve, reject) => {
      gotFirst = resolve;
      child.once("exit", (code) => reject(new Error(`child exited (${code})`)));
    });
    this.first.catch(() => {});
    child.on("message", (m: { id?: number; ok?: boolean; result?: unknown; error?: string }) => {
      if (m.id === undefined) return gotFirst(m);
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(m.error));
    });
    child.once("exit", (code, signal) => {
      for (const p of this.pending.values()) p.reject(new Error(`child exited (${code ?? signal})`));
      this.pending.clear();
    });
  }

  static fork(script: string, args: string[] = []): IpcChild {
    return new IpcChild(fork(script, args, { stdio: ["ignore", "inherit", "inherit", "ipc"], execArgv: [] }));
  }

  ask<T>(message: Record<string, unknown>): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ ...message, id });
    });
  }

  async close(): Promise<void> {
    this.child.disconnect?.();
    await terminate(this.child, 2_000);
  }
}

/** The load generator's process. */
export class LoadProcess {
  private constructor(private readonly ipc: IpcChild) {}

  static start(): LoadProcess {
    return new LoadProcess(IpcChild.fork(compiled("faults/load-main.js")));
  }

  get pid(): number {
    return this.ipc.child.pid!;
  }

  run(job: FaultLoadJob, phase: string): Promise<void> {
    return this.ipc.ask({ op: "start", job, phase });
  }

  phase(name: string): Promise<void> {
    return this.ipc.ask({ op: "phase", phase: name });
  }

  collect(name: string): Promise<PhaseRecords> {
    return this.ipc.ask({ op: "collect", phase: name });
  }

  stop(): Promise<void> {
    return this.ipc.ask({ op: "stop" });
  }

  close(): Promise<void> {
    return this.ipc.close();
  }
}

/** Two (or more) switchable upstreams in one process of their own. */
export class Upstreams {
  private constructor(
    private readonly ipc: IpcChild,
    readonly controls: UpstreamControl[],
  ) {}

  static async start(options: FakeUpstreamOptions, count: number): Promise<Upstreams> {
    const ipc = IpcChild.fork(compiled("faults/upstream-main.js"), [JSON.stringify(options), String(count)]);
    const { ports } = (await ipc.first) as { ports: number[] };
    return new Upstreams(ipc, ports.map((p) => new UpstreamControl(`http://127.0.0.1:${p}`)));
  }

  get pid(): number {
    return this.ipc.child.pid!;
  }

  close(): Promise<void> {
    return this.ipc.close();
  }
}

/** What the mesh runs on and how it is configured for a run. */
/**
 * A Postgres database of the run's own (on the Postgres at `host:port`, trust auth, created and
 * dropped with `psql`), reached through a TCP relay the suite can cut: while cut, every connection
 * is reset and new ones are refused, as when the database host goes away.
 */
export class PostgresUnderTest {
  private readonly sockets = new Set<Socket>();
  private cut = false;

  private constructor(
    private readonly relay: Server,
    readonly port: number,
    readonly database: string,
    private readonly target: { host: string; port: number; user: string },
  ) {}

  static async start(target = { host: "127.0.0.1", port: 5432, user: "postgres" }): Promise<PostgresUnderTest> {
    const database = `switchyard_faults_${Math.random().toString(36).slice(2, 10)}`;
    await psql(target, `CREATE DATABASE ${database}`);
    const relay = createServer();
    const port = await freePort();
    const pg: PostgresUnderTest = new PostgresUnderTest(relay, port, database, target);
    relay.on("connection", (client) => pg.relayConnection(client));
    await new Promise<void>((resolve) => relay.listen(port, "127.0.0.1", resolve));
    return pg;
  }

  /** DATABASE_URL of the ledger: through the relay. */
  get url(): string {
    return `postgres://${this.target.user}@127.0.0.1:${this.port}/${this.database}`;
  }

  /** Cuts every connection and refuses new ones until `restore`. */
  down(): void {
    this.cut = true;
    for (const s of this.sockets) s.destroy();
  }

  restore(): void {
    this.cut = false;
  }

  async close(): Promise<void> {
    this.down();
    await new Promise<void>((resolve) => this.relay.close(() => resolve()));
    await psql(this.target, `DROP DATABASE IF EXISTS ${this.database} WITH (FORCE)`).catch(() => {});
  }

  private relayConnection(client: Socket): void {
    if (this.cut) {
      client.destroy();
      return;
    }
    const upstream = tcpConnect(this.target.port, this.target.host);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
      s.on("error", () => {});
    }
    client.pipe(upstream).pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  }
}

async function psql(target: { host: string; port: number; user: string }, sql: string): Promise<void> {
  const binary = findBinary("psql");
  if (!binary) throw new Error("psql is not installed (the Postgres fault creates a database of its own with it)");
  await promisify(execFile)(binary, ["-h", target.host, "-p", String(target.port), "-U", target.user, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql], { timeout: 30_000 });
}

export interface MeshSetup {
  /** Base URLs (up to /v1) of the upstreams: the first is the cheapest, so the primary route. */
  upstreams: string[];
  natsUrl?: string;
  redisUrl?: string;
  /** Idle timeout of a started upstream stream (the stall fault's bound). */
  streamIdleTimeoutMs: number;
  firstTokenTimeoutMs: number;
  /** Extra keys merged over the top level (cache bounds for the soak). */
  extra?: Record<string, unknown>;
  /** The ledger's Postgres (else PGlite in the run's folder). */
  databaseUrl?: string;
}

/** The pieces of the mesh, by the name the suite uses. */
export type MeshProcess = "supervisor" | ServiceName;

/**
 * The six-process mesh exactly as `switchyard start` runs it: the real command in a process of its
 * own (its supervisor restarts a service that dies; mesh mTLS on, with a fresh CA), a partial
 * configuration file merged onto the embedded defaults, every process's output captured in one
 * log file so a run can look for crashes and unhandled rejections afterwards.
 */
export class MeshUnderTest {
  private constructor(
    readonly supervisor: ChildProcess,
    readonly dir: string,
    readonly logFile: string,
    readonly openaiUrl: string,
    readonly sidePorts: Record<Exclude<ServiceName, "gateway">, number> & { gateway: number },
    /** The gateway's gRPC port (its admin API: the books). */
    readonly grpcUrl: string,
  ) {}

  static async start(setup: MeshSetup, logDir?: string): Promise<MeshUnderTest> {
    const dir = mkdtempSync(join(tmpdir(), "switchyard-faults-"));
    const runId = Math.random().toString(36).slice(2, 10);
    const ports: Record<string, number> = {};
    for (const n of ["gateway_http", "gateway_grpc", "classifier", "policy", "cache", "provider", "ledger", "classifier_http", "policy_http", "cache_http", "provider_http", "ledger_http"]) ports[n] = await freePort();
    const allTiers = ["simple", "standard", "complex"];
    const providers = setup.upstreams.map((url, i) => ({
      name: `up${String.fromCharCode(97 + i)}`,
      kind: "openai",
      base_url: url,
      enabled: true,
      first_token_timeout_ms: setup.firstTokenTimeoutMs,
      stream_idle_timeout_ms: setup.streamIdleTimeoutMs,
      // The first upstream is the cheapest: the primary route; the others are where fallback goes.
      models: [{ name: "fixed", input_usd_per_mtok: 1 + i, output_usd_per_mtok: 2 + 2 * i, tiers: allTiers }],
    }));
    const config = {
      listen_host: "127.0.0.1",
      ports,
      providers,
      nats: setup.natsUrl ? { enabled: true, url: setup.natsUrl } : { enabled: false },
      // The books of this run alone: an embedded database in its folder, its own stream on a shared NATS.
      ledger: { data_dir: join(dir, "ledger"), stream: `SY_FAULTS_USAGE_${runId}`, subject_prefix: `syfaults.${runId}.usage`, consumer: `ledger-${runId}`, stream_max_age_hours: 1 },
      cache: setup.redisUrl ? { backend: "redis", redis_url: setup.redisUrl } : { backend: "memory" },
      telemetry: { log_level: "warn" },
      limits: { shutdown_grace_ms: 2_000 },
      ...setup.extra,
    };
    const configPath = join(dir, "switchyard.yaml");
    writeFileSync(configPath, toYaml(config));
    if (logDir) mkdirSync(logDir, { recursive: true });
    const logFile = join(logDir ?? dir, "mesh.log");
    writeFileSync(logFile, "");
    const out = openSync(logFile, "a");
    // Only what the command needs: no NATS_URL or SWITCHYARD_* of the caller's shell changes the run.
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, SWITCHYARD_CONFIG: configPath, ...(setup.databaseUrl ? { DATABASE_URL: setup.databaseUrl } : {}) };
    // For digging into a failure: Node options for the mesh's processes only (e.g. --import a hook).
    if (process.env.SWITCHYARD_MESH_NODE_OPTIONS) env.NODE_OPTIONS = process.env.SWITCHYARD_MESH_NODE_OPTIONS;
    const supervisor = spawn(process.execPath, [join(CLI_ROOT, "bin", "switchyard.js"), "start"], { env, stdio: ["ignore", out, out] });
    closeSync(out);
    const mesh = new MeshUnderTest(supervisor, dir, logFile, `http://127.0.0.1:${ports.gateway_http}/v1`, {
      gateway: ports.gateway_http!,
      classifier: ports.classifier_http!,
      policy: ports.policy_http!,
      cache: ports.cache_http!,
      provider: ports.provider_http!,
      ledger: ports.ledger_http!,
    }, `http://127.0.0.1:${ports.gateway_grpc}`);
    try {
      await waitFor("switchyard start: ready", () => {
        if (supervisor.exitCode !== null) throw new Error(`switchyard start exited (${supervisor.exitCode}): ${readFileSync(logFile, "utf8").slice(-2_000)}`);
        return readFileSync(logFile, "utf8").includes("switchyard ready");
      }, 60_000, 100);
    } catch (err) {
      await mesh.stop();
      throw err;
    }
    return mesh;
  }

  /** Process id of the supervisor and of each service running now (from /proc: the supervisor's children). */
  pids(): Partial<Record<MeshProcess, number>> {
    const out: Partial<Record<MeshProcess, number>> = {};
    const root = this.supervisor.pid;
    if (root === undefined || this.supervisor.exitCode !== null) return out;
    out.supervisor = root;
    for (const pid of childrenOf(root)) {
      let cmdline = "";
      try {
        cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      } catch {
        continue; // gone meanwhile
      }
      const name = SERVICE_NAMES.find((n) => cmdline.includes(`/services/${n}/dist/main.js`));
      if (name) out[name] = pid;
    }
    return out;
  }

  /** SIGKILL to one service, as an OOM killer or a crash would; the supervisor restarts it. Returns the killed pid. */
  kill(name: ServiceName): number {
    const pid = this.pids()[name];
    if (pid === undefined) throw new Error(`${name} is not running`);
    process.kill(pid, "SIGKILL");
    return pid;
  }

  /** A service's /readyz on its HTTP/1.1 side port (plain HTTP: probes need no certificate); undefined when it does not answer. */
  async readiness(name: ServiceName): Promise<{ ready: boolean; checks: Record<string, string> } | undefined> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.sidePorts[name]}/readyz`, { signal: AbortSignal.timeout(1_000) });
      return { ready: res.ok, checks: ((await res.json()) as { checks?: Record<string, string> }).checks ?? {} };
    } catch {
      return undefined;
    }
  }

  /** V8 heap in use (MB) and libuv handles alive, from a service's own Prometheus metrics; undefined when it does not answer. */
  async runtimeMetrics(name: ServiceName): Promise<{ heapUsedMb: number; handles: number } | undefined> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.sidePorts[name]}/metrics`, { signal: AbortSignal.timeout(1_000) });
      const text = await res.text();
      const value = (metric: string) => {
        const m = new RegExp(`^switchyard_${metric}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, "m").exec(text);
        return m ? Number(m[1]) : undefined;
      };
      const heap = value("nodejs_heap_size_used_bytes");
      const handles = value("nodejs_active_handles_total");
      return heap === undefined || handles === undefined ? undefined : { heapUsedMb: Math.round((heap / 1048576) * 10) / 10, handles };
    } catch {
      return undefined;
    }
  }

  /**
   * Lines of the captured output that tell of a crash, an exit or an unhandled rejection. The
   * supervisor's notes of the first `expectedKills` services that died of SIGKILL are not trouble:
   * the suite killed them.
   */
  trouble(expectedKills = 0): string[] {
    let kills = expectedKills;
    return readFileSync(this.logFile, "utf8")
      .split("\n")
      .filter((l) => /unhandled|uncaught|triggerUncaughtException|FATAL|service exited|out of memory|heap limit/i.test(l))
      .filter((l) => !(kills > 0 && l.includes('"msg":"service exited; restarting"') && l.includes('"signal":"SIGKILL"') && kills-- > 0));
  }

  /** Lines of the captured output at error level (JSON log lines). */
  errorLines(): string[] {
    return readFileSync(this.logFile, "utf8")
      .split("\n")
      .filter((l) => l.includes('"level":"error"') || l.includes('"level":"fatal"'));
  }

  async stop(): Promise<void> {
    const services = Object.entries(this.pids())
      .filter(([name]) => name !== "supervisor")
      .map(([, pid]) => pid);
    await terminate(this.supervisor, 10_000);
    // A service the supervisor left behind (it had to be killed): ours to end, by its id.
    for (const pid of services) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone, as it should be
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Direct children of a process, from every thread's children list. */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const list = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim();
      if (list) out.push(...list.split(/\s+/).map(Number));
    }
  } catch {
    // gone, or not Linux
  }
  return out;
}

/** Resident set size of a process in MB, from /proc. */
export function rssMb(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Open file descriptors of a process, and how many of them are TCP sockets. */
export function handles(pid: number): { fds: number; tcp: number } | undefined {
  let entries: string[];
  try {
    entries = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return undefined;
  }
  const sockets = new Set<string>();
  for (const fd of entries) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) sockets.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  let tcp = 0;
  for (const table of ["tcp", "tcp6"]) {
    try {
      for (const line of readFileSync(`/proc/${pid}/net/${table}`, "utf8").split("\n").slice(1)) {
        const inode = line.trim().split(/\s+/)[9];
        if (inode && sockets.has(inode)) tcp++;
      }
    } catch {
      // no such table
    }
  }
  return { fds: entries.length, tcp };
}

export { SERVICE_NAMES, waitFor };
