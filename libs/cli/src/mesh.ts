import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { SERVICE_NAMES, type Config, type ServiceName } from "@switchyard/config";
import { health } from "@switchyard/proto";
import { createServiceClient, generateMeshCertificates, loadMeshCa, ServingStatus, writeMeshCertificates } from "@switchyard/rpc";
import { inCgroup } from "./bench/memory-limits.js";

const require = createRequire(import.meta.url);

/** Where a service's compiled entry point is. */
export function serviceEntry(name: ServiceName): string {
  return join(dirname(require.resolve(`@switchyard/${name}/package.json`)), "dist", "main.js");
}

/** The port that serves grpc.health.v1 for a service. */
export function healthPort(config: Config, name: ServiceName): number {
  return name === "gateway" ? config.ports.gateway_grpc : config.ports[name];
}

/** A service process ended before it reported SERVING (with restarts off). */
export class ServiceExitedError extends Error {
  override readonly name = "ServiceExitedError";
  constructor(
    readonly service: string,
    readonly code: number | null,
    readonly signal: NodeJS.Signals | null,
  ) {
    super(`${service} exited (${signal ? `signal ${signal}` : `code ${String(code)}`}) before it was ready`);
  }
}

export interface MeshOptions {
  config: Config;
  /** Environment of every child (config file, NATS, keys). */
  env: NodeJS.ProcessEnv;
  /** Called with each line a supervisor event produces. */
  log: (event: string, fields?: Record<string, unknown>) => void;
  /** "inherit" shows children's logs; "ignore" hides them (benchmarks). */
  childOutput?: "inherit" | "ignore";
  /** Restart a child that exits unexpectedly (default true). */
  restart?: boolean;
  /** Run all six services in one child process (`switchyard start --single-process`). */
  singleProcess?: boolean;
  /** A memory cgroup folder to start a service in (`switchyard bench --memory-limits`). */
  cgroupOf?: (name: ServiceName) => string | undefined;
}

/** Six service processes, watched and restarted. */
export class Mesh {
  private readonly children = new Map<ServiceName, ChildProcess>();
  private readonly restarts = new Map<ServiceName, number>();
  private stopping = false;
  private started: Promise<void> | undefined;
  /** Where the generated mesh certificates are (removed at stop). */
  private tlsDir: string | undefined;
  private childEnv: NodeJS.ProcessEnv;

  constructor(private readonly options: MeshOptions) {
    this.childEnv = options.env;
  }

  /**
   * Starts every service; the gateway last, so its warm-up finds the others listening. Unless
   * the configuration brings its own certificates or turns mesh TLS off, a fresh mesh CA and a
   * certificate per service are made first (in a private temporary folder, removed at stop), so
   * the services authenticate each other even on a laptop.
   */
  start(): Promise<void> {
    return (this.started ??= this.launch());
  }

  private async launch(): Promise<void> {
    if (this.options.singleProcess) {
      this.spawn("gateway");
      return;
    }
    const tls = this.options.config.mesh.tls;
    if (tls.mode !== "off" && !(tls.ca_file && tls.cert_file && tls.key_file) && !this.options.env.SWITCHYARD_MESH_TLS_DIR) {
      this.tlsDir = mkdtempSync(join(tmpdir(), "switchyard-mesh-"));
      writeMeshCertificates(this.tlsDir, await generateMeshCertificates([...SERVICE_NAMES]));
      this.childEnv = { ...this.options.env, SWITCHYARD_MESH_TLS_DIR: this.tlsDir };
    }
    const order: ServiceName[] = ["provider", "policy", "cache", "classifier", "ledger", "gateway"];
    for (const name of order) this.spawn(name);
  }

  /** Waits until every service reports SERVING over grpc.health.v1, or throws naming the laggards. */
  async waitReady(timeoutMs = 60_000): Promise<void> {
    const host = this.options.config.listen_host === "0.0.0.0" ? "127.0.0.1" : this.options.config.listen_host;
    await this.start();
    const pending = new Set<ServiceName>(this.options.singleProcess ? ["gateway"] : SERVICE_NAMES);
    // Internal services serve TLS when they have mesh certificates: health needs only the CA.
    const ca = this.options.singleProcess ? undefined : loadMeshCa(this.options.config, this.childEnv);
    const clients = new Map(
      SERVICE_NAMES.map((n) => [n, createServiceClient(health.Health, `http://${host}:${healthPort(this.options.config, n)}`, ca && n !== "gateway" ? { tls: { ca } } : {})]),
    );
    const deadline = Date.now() + timeoutMs;
    try {
      while (pending.size > 0) {
        // Without restarts, a service that exited will never be ready: say which and how at once.
        if (this.options.restart === false) {
          for (const name of pending) {
            const child = this.children.get(name);
            if (child && (child.exitCode !== null || child.signalCode !== null)) throw new ServiceExitedError(name, child.exitCode, child.signalCode);
          }
        }
        if (Date.now() > deadline) throw new Error(`not ready after ${timeoutMs} ms: ${[...pending].join(", ")}`);
        await Promise.all(
          [...pending].map(async (name) => {
            try {
              const res = await clients.get(name)!.client.check({ service: "" }, { timeoutMs: 500 });
              if (res.status === ServingStatus.SERVING) pending.delete(name);
            } catch {
              // not listening yet
            }
          }),
        );
        if (pending.size > 0) await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      for (const c of clients.values()) c.close();
    }
  }

  /** SIGTERM to every child, SIGKILL to any still running after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    const exits = [...this.children.values()].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
          child.once("exit", () => {
            clearTimeout(timer);
            resolve();
          });
          child.kill("SIGTERM");
        }),
    );
    await Promise.all(exits);
    if (this.tlsDir) rmSync(this.tlsDir, { recursive: true, force: true });
  }

  /** The folder of the mesh certificates this supervisor generated (undefined when it generated none). */
  get meshTlsDir(): string | undefined {
    return this.tlsDir;
  }

  /** Process id of each running service (one entry, "switchyard", in one-process mode). */
  pids(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, child] of this.children) {
      if (child.pid !== undefined && child.exitCode === null) out[this.options.singleProcess ? "switchyard" : name] = child.pid;
    }
    return out;
  }

  /** Kills one service (fault tests and demos); the supervisor restarts it. */
  kill(name: ServiceName, signal: NodeJS.Signals = "SIGKILL"): void {
    this.children.get(name)?.kill(signal);
  }

  private spawn(name: ServiceName): void {
    const args = this.options.singleProcess ? [join(dirname(fileURLToPath(import.meta.url)), "..", "bin", "switchyard.js"), "start", "--single-process"] : [serviceEntry(name)];
    const cgroup = this.options.cgroupOf?.(name);
    const command = cgroup ? inCgroup(cgroup, process.execPath, args) : { command: process.execPath, args };
    const child = spawn(command.command, command.args, {
      env: { ...this.childEnv, OTEL_SERVICE_NAME: name },
      stdio: ["ignore", this.options.childOutput ?? "inherit", this.options.childOutput ?? "inherit", "ipc"],
    });
    this.children.set(name, child);
    child.once("exit", (code, signal) => {
      if (this.stopping) return;
      const count = (this.restarts.get(name) ?? 0) + 1;
      this.restarts.set(name, count);
      if (this.options.restart === false) {
        this.options.log("service exited", { service: name, code, signal });
        return;
      }
      // Back off when a service keeps dying (a bad config would otherwise spin).
      const delay = Math.min(10_000, 250 * 2 ** Math.min(count - 1, 6));
      this.options.log("service exited; restarting", { service: name, code, signal, restart: count, in_ms: delay });
      setTimeout(() => {
        if (!this.stopping) this.spawn(name);
      }, delay).unref();
    });
  }
}
