import { ConfigError, loadConfig, type Config } from "@switchyard/config";
import { Mesh } from "../mesh.js";
import { planNats } from "../nats.js";
import { startSingleProcess } from "../single.js";

/**
 * `switchyard start`: validates the configuration, finds or starts NATS, starts the six services
 * as child processes, restarts any that dies, prints the URLs and one "ready" line, and stops
 * everything on Ctrl-C / SIGTERM.
 */
export async function startCommand(argv: string[]): Promise<number> {
  const single = argv[0] === "--single-process";
  const extra = argv.slice(single ? 1 : 0);
  if (extra.length > 0) {
    process.stderr.write(`switchyard start: unexpected argument "${extra[0]}" (options: --single-process; configure with SWITCHYARD_CONFIG or ./switchyard.yaml)\n`);
    return 2;
  }
  let config: Config;
  let source: string;
  try {
    ({ config, source } = loadConfig());
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`switchyard: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const say = (event: string, fields: Record<string, unknown> = {}) =>
    process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), level: "info", service: "supervisor", msg: event, ...fields }) + "\n");
  say("configuration loaded", { source });

  const env: NodeJS.ProcessEnv = { ...process.env, SWITCHYARD_CONFIG: source };
  let stopNats: (() => Promise<void>) | undefined;
  let stopNatsNow: (() => void) | undefined;
  let natsNote: string;
  if (!config.nats.enabled) {
    natsNote = "disabled in the configuration";
  } else {
    const plan = await planNats(config.nats.url);
    if (plan.mode === "external") {
      env.NATS_URL = plan.url;
      natsNote = `connected to ${plan.url}`;
    } else if (plan.mode === "embedded") {
      env.NATS_URL = plan.url;
      stopNats = plan.stop;
      stopNatsNow = plan.stopNow;
      natsNote = `started nats-server with JetStream at ${plan.url}`;
    } else {
      env.SWITCHYARD_NATS_ENABLED = "false";
      natsNote = `none (${plan.why}): running without broadcast, prices from the config file, health observed where it happens`;
      process.stderr.write(`switchyard: warning: no NATS: ${plan.why}; running without broadcast\n`);
    }
  }
  say("nats", { status: natsNote });

  if (single) {
    // One process: the services' own SIGTERM handling (serve) stops it; the embedded NATS too.
    Object.assign(process.env, env);
    if (stopNatsNow) process.once("exit", stopNatsNow);
    const { config: effective } = loadConfig();
    await startSingleProcess(effective, source);
    printReady(effective, natsNote, "all six services SERVING in one process", false);
    return new Promise<number>(() => {}); // runs until a signal stops it
  }

  const mesh = new Mesh({ config, env, log: say });
  let stopping: Promise<void> | undefined;
  const stop = (signal: string) =>
    (stopping ??= (async () => {
      say("stopping", { signal });
      await mesh.stop(config.limits.shutdown_grace_ms + 2_000);
      await stopNats?.();
      say("stopped");
    })());
  const exit = new Promise<number>((resolve) => {
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => void stop(signal).then(() => resolve(0)));
  });

  await mesh.start();
  try {
    await mesh.waitReady();
  } catch (err) {
    process.stderr.write(`switchyard: ${(err as Error).message}\n`);
    await stop("startup failure");
    return 1;
  }
  printReady(config, natsNote, "all six services SERVING", true);
  return exit;
}

function printReady(config: Config, natsNote: string, what: string, separateProcesses: boolean): void {
  const host = config.listen_host === "0.0.0.0" ? "127.0.0.1" : config.listen_host;
  const lines = [
    "",
    `  OpenAI-compatible API  http://${host}:${config.ports.gateway_http}/v1   (model: "switchyard/auto")`,
    `  gRPC / Connect         http://${host}:${config.ports.gateway_grpc}      (switchyard.gateway.v1.GatewayService)`,
    `  dashboard              http://${host}:${config.ports.gateway_http}/dashboard   (spend, savings, routes, last requests)`,
    `  health, metrics        http://${host}:${config.ports.gateway_http}/readyz  /metrics`,
    separateProcesses
      ? `  internal services      classifier :${config.ports.classifier}  policy :${config.ports.policy}  cache :${config.ports.cache}  provider :${config.ports.provider}  ledger :${config.ports.ledger}`
      : "  internal services      in this process (Connect in-memory transport)",
    `  NATS                   ${natsNote}`,
    `  ledger                 ${process.env[config.ledger.database_url_env] ? `Postgres (${config.ledger.database_url_env})` : `PGlite in ${config.ledger.data_dir}`}   (switchyard usage, switchyard keys)`,
    "",
    `switchyard ready: ${what} at http://${host}:${config.ports.gateway_http}`,
    "",
  ];
  process.stdout.write(lines.join("\n"));
}
