import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify as toYaml } from "yaml";
import { parseConfig, type Config } from "@switchyard/config";
import { Mesh } from "../src/mesh.js";
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
  const ports: Record<string, number> = {};
  for (const n of names) ports[n] = await freePort();
  const configPath = join(dir, "switchyard.yaml");
  writeFileSync(
    configPath,
    toYaml({
      listen_host: "127.0.0.1",
      ports,
      tiers: TIERS,
      providers: [FAST_SIM_PROVIDER],
      nats: { enabled: false },
      // Its own books: an embedded database in the test's folder, and its own stream on a shared NATS.
      ledger: isolatedLedger(dir),
      telemetry: { log_level: "warn" },
      limits: { shutdown_grace_ms: 5000 },
      ...extra,
    }),
  );
  const config = parseConfig(readFileSync(configPath, "utf8"), configPath);
  const mesh = new Mesh({
    config,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, SWITCHYARD_CONFIG: configPath, ...env },
    log: () => {},
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
  return {
    config,
    configPath,
    mesh,
    httpUrl: `http://127.0.0.1:${ports.gateway_http}`,
    grpcUrl: `http://127.0.0.1:${ports.gateway_grpc}`,
    stop: async () => {
      await mesh.stop(5_000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
