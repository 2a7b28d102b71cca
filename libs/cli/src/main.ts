import { evalCommand, scoreCommand, trainCommand } from "@switchyard/router";
import { benchCommand } from "./commands/bench.js";
import { configCommand } from "./commands/config.js";
import { keysCommand } from "./commands/keys.js";
import { pricesCommand } from "./commands/prices.js";
import { routeCommand } from "./commands/route.js";
import { startCommand } from "./commands/start.js";
import { usageCommand } from "./commands/usage.js";
import { faultsCommand, soakCommand } from "./faults/command.js";

const USAGE = `usage: switchyard <command> [options]

commands:
  start                                   run the mesh (six services) with the configuration in
                                          SWITCHYARD_CONFIG or ./switchyard.yaml, else the embedded defaults
  train --data FILE... --out ROUTER.json  fit the router on routing-outcome JSONL files
        [--calibrate]                     (and its difficulty fallback and calibration, under 5-fold CV)
  score --router ROUTER.json --data FILE  predicted quality of every known model, one JSON line per prompt
  eval  --router ROUTER.json --data FILE  APGR, CPT, quality/cost curve (--svg OUT.svg)
  bench                                   gateway overhead: direct vs through the mesh
  prices publish FILE                     publish a price table (YAML or JSON) to NATS
  route "PROMPT" [--tenant T] [--model M] [--json] [--url URL]
                                          explain how the gateway would route a prompt: features, tier,
                                          every candidate's quality, price and expected cost, the choice
  usage [--tenant T] [--since 7d] [--by model|tier|day] [--json]
                                          what the traffic cost and what routing saved (from the ledger)
  keys create|list|revoke                 API keys managed at run time (budgets, rate limits)
  config check|print [FILE]               validate a configuration without starting / print it merged and redacted
  faults [--quick]                        kill services, stop NATS and Redis, break upstreams under load; per-fault table
  soak [--minutes 10] [--concurrency N]   steady load: RSS, file descriptors and sockets of every process over time
`;

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  start: startCommand,
  train: trainCommand,
  score: scoreCommand,
  eval: evalCommand,
  bench: benchCommand,
  prices: pricesCommand,
  route: routeCommand,
  config: configCommand,
  usage: usageCommand,
  keys: keysCommand,
  faults: faultsCommand,
  soak: soakCommand,
};

/** Runs one `switchyard` command; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "help" || name === "--help" || name === "-h") {
    process.stdout.write(USAGE);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`switchyard: unknown command "${name}"\n\n${USAGE}`);
    return 2;
  }
  try {
    return await command(rest);
  } catch (err) {
    process.stderr.write(`switchyard ${name}: ${(err as Error).message}\n`);
    return 1;
  }
}
