import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify as toYaml } from "yaml";
import { parseConfig, type Config } from "@switchyard/config";
import { spawn } from "node:child_process";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Mesh, ServiceExitedError, serviceEntry } from "../src/mesh.js";
import { freePort } from "../src/ports.js";

/** A running mesh of six real service processes on free ports. */
export interface TestMesh {
  config: Config;
  configPath: string;
  mesh: Mesh;
  /** http://127.0.0.1:<gateway_http> */
  httpUrl: string;
  /** http://127.0.0.1:<gateway_grpc> */
  grpcUrl: string;
  /** Stops every process and starts them again on the same configuration and data. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Simulator models fast enough for tests, at three price points over three tiers. */
export const FAST_SIM_PROVIDER = {
  name: "sim",
  kind: "simulator",
  enabled: true,
  models: [
    { name: "small", input_usd_per_mtok: 0.1, output_usd_per_mtok: 0.4, tiers: ["simple", "standard"], simulator: { ttft_ms: 5, tokens_per_second: 5000, output_tokens: 30, quality: 0.55 } },
    { name: "medium", input_usd_per_mtok: 0.6, output_usd_per_mtok: 2.4, tiers: ["standard", "complex"], simulator: { ttft_ms: 5, tokens_per_second: 5000, output_tokens: 40, quality: 0.75 } },
    { name: "large", input_usd_per_mtok: 3, output_usd_per_mtok: 15, tiers: ["complex"], simulator: { ttft_ms: 5, tokens_per_second: 5000, output_tokens: 50, quality: 0.92 } },
  ],
};

const TIERS = [
  { name: "simple", max_difficulty: 0.35, quality_target: 0.5 },
  { name: "standard", max_difficulty: 0.7, quality_target: 0.7 },
  { name: "complex", max_difficulty: 1, quality_target: 0.85 },
];

/** Removes a test's usage stream from a shared NATS (best effort). */
async function deleteStream(url: string, stream: string): Promise<void> {
  try {
    const nc = await connect({ servers: url, timeout: 2_000 });
    try {
      await (await jetstreamManager(nc)).streams.delete(stream);
    } finally {
      await nc.close();
    }
  } catch {
    // already gone, or NATS is away: it expires after stream_max_age_hours anyway
  }
}

/** Ledger settings of one test mesh: data in `dir`, a stream, subjects and consumer no other mesh uses. */
export function isolatedLedger(dir: string): Record<string, unknown> {
  const id = Math.random().toString(36).slice(2, 10);
  return { data_dir: join(dir, "ledger"), stream: `SY_TEST_USAGE_${id}`, subject_prefix: `sytest.${id}.usage`, consumer: `ledger-${id}`, stream_max_age_hours: 1 };
}

/**
 * Starts the mesh as `switchyard start` does (separate processes, built dist/ code) with a
 * temporary configuration. `extra` is merged over the defaults (providers, nats, limits, ...).
 */
export async function startTestMesh(extra: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = {}, singleProcess = false): Promise<TestMesh> {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-test-"));
  const names = ["gateway_http", "gateway_grpc", "classifier", "policy", "cache", "provider", "ledger", "classifier_http", "policy_http", "cache_http", "provider_http", "ledger_http"];
  const configPath = join(dir, "switchyard.yaml");
  const configure = async () => {
    const ports: Record<string, number> = {};
    for (const n of names) ports[n] = await freePort();
    writeConfig(ports);
    return parseConfig(readFileSync(configPath, "utf8"), configPath);
  };
  const writeConfig = (ports: Record<string, number>) => writeFileSync(
    configPath,
    toYaml({
      listen_host: "127.0.0.1",
      ports,
      tiers: TIERS,
      providers: [FAST_SIM_PROVIDER],
      nats: { enabled: false },
      // Its own books: an embedded database in the test's folder, and its own stream on a shared NATS.
      telemetry: { log_level: "warn" },
      limits: { shutdown_grace_ms: 5000 },
      ...extra,
      ports: { ...ports, ...(extra.ports as object | undefined) },
      ledger: { ...isolatedLedger(dir), ...(extra.ledger as object | undefined) },
    }),
  );
  let config = await configure();
  const launch = async () => {
    const mesh = new Mesh({
      config,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, SWITCHYARD_CONFIG: configPath, ...env },
      log: (event, fields) => {
        if (event.startsWith("service exited")) process.stderr.write(`test mesh: ${event} ${JSON.stringify(fields ?? {})}\n`);
      },
      childOutput: process.env.SWITCHYARD_TEST_LOGS ? "inherit" : "ignore",
      restart: false,
      singleProcess,
    });
    await mesh.start();
    try {
      await mesh.waitReady(30_000);
    } catch (err) {
      await mesh.stop(1_000);
      throw err;
    }
    return mesh;
  };
  let first: Mesh | undefined;
  for (let attempt = 1; !first; attempt++) {
    try {
      first = await launch();
    } catch (err) {
      // A port found free can be taken by another test's process before the service binds it:
      // the service exits at once. Try again on other ports.
      if (!(err instanceof ServiceExitedError) || attempt === 3) throw err;
      process.stderr.write(`test mesh: ${(err as Error).message}; starting again on other ports\n`);
      config = await configure();
    }
  }
  const test: TestMesh = {
    config,
    configPath,
    mesh: first,
    httpUrl: `http://127.0.0.1:${config.ports.gateway_http}`,
    grpcUrl: `http://127.0.0.1:${config.ports.gateway_grpc}`,
    restart: async () => {
      await test.mesh.stop(5_000);
      test.mesh = await launch();
    },
    stop: async () => {
      await test.mesh.stop(5_000);
      rmSync(dir, { recursive: true, force: true });
      if (config.nats.enabled) await deleteStream(config.nats.url, config.ledger.stream);
    },
  };
  return test;
}

/** A second gateway process on free ports, in front of the same internal services (a replica). */
export interface GatewayReplica {
  httpUrl: string;
  grpcUrl: string;
  stop(): Promise<void>;
}

/** Starts another gateway of a test mesh, as Kubernetes would run a second replica. */
export async function startGatewayReplica(m: TestMesh): Promise<GatewayReplica> {
  const http = await freePort();
  const grpcPort = await freePort();
  const child = spawn(process.execPath, [serviceEntry("gateway")], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      SWITCHYARD_CONFIG: m.configPath,
      SWITCHYARD_GATEWAY_HTTP_PORT: String(http),
      SWITCHYARD_GATEWAY_GRPC_PORT: String(grpcPort),
      OTEL_SERVICE_NAME: "gateway",
      ...(m.mesh.meshTlsDir ? { SWITCHYARD_MESH_TLS_DIR: m.mesh.meshTlsDir } : {}),
    },
    stdio: process.env.SWITCHYARD_TEST_LOGS ? "inherit" : "ignore",
  });
  const httpUrl = `http://127.0.0.1:${http}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the gateway replica exited (${child.exitCode})`);
    const ready = await fetch(`${httpUrl}/readyz`).then((r) => r.ok, () => false);
    if (ready) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error("the gateway replica did not become ready");
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    httpUrl,
    grpcUrl: `http://127.0.0.1:${grpcPort}`,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}
