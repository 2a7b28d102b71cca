import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { DEFAULT_FAKE_UPSTREAM, runBench, writeReport, type BenchOptions, type Layout, type Mode, type Peer } from "../bench/run.js";
import { parseMemoryLimits } from "../bench/memory-limits.js";
import { percentile } from "../bench/report.js";
import { measurePropagation } from "../propagation.js";

const USAGE = `usage: switchyard bench [options]            load: direct, through the mesh, beside other gateways
       switchyard bench propagation [--flips N] [--nats URL]

options:
  --concurrency 1,20,200       concurrent clients (closed loop), a list
  --duration-ms 4000           measured time per run (after --warmup-ms 1000 of the same load)
  --layouts direct,five,single targets: the upstream alone, five processes, --single-process
  --modes openai-stream,openai-json,grpc-stream,grpc-json
  --peer URL                   another OpenAI-compatible gateway in front of the same upstream
                               (its base URL up to /v1); repeatable; the upstream's URL is
                               printed at start and in {upstream} of --peer-header values
  --peer-name NAME             name of the last --peer in the table
  --peer-header name:value     a header for the last --peer (repeatable)
  --peer-model NAME            the model the last --peer is asked for (default: the upstream's,
                               "fixed"; switchyard/auto for a Switchyard started on its own)
  --peer-modes openai-json     modes measured on peers (default: non-streamed only)
  --upstream-port N            run the fake upstream on this port (so a peer can be pointed at it)
  --ttft-ms 50 --chunks 8 --chunk-interval-ms 1.6   the fake upstream's answer
  --config FILE                YAML merged over the bench configuration (e.g. capacity settings)
  --memory-limits chart        run each service of the five-process mesh under a memory limit, in
                               its own cgroup (needs root): "chart" for the Helm chart's, or
                               gateway=768,provider=512,... in MiB. Node sizes its heap from it
  --smoke                      a few hundred ms per run: checks the harness, not the targets
  --out .bench/load.json       JSON results; the SVG plot goes beside it`;

/**
 * `switchyard bench`: throughput and latency under load. A fake OpenAI-compatible upstream with a
 * fixed time to first token answers every target alike; the same closed-loop load generator runs
 * every target at every concurrency, streamed and not, over the OpenAI API and gRPC, in one run.
 * The difference to the direct call is what a gateway adds.
 */
export async function benchCommand(argv: string[]): Promise<number> {
  if (argv[0] === "propagation") return propagationBench(argv.slice(1));
  if (argv[0] === "--help" || argv[0] === "-h") {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const options = parseOptions(argv);
  const rows = await runBench(options);
  process.stdout.write(writeReport(rows, options));
  process.stdout.write(`\nwritten to ${options.out} and ${options.out.replace(/\.json$/, "")}.svg\n`);
  return 0;
}

function parseOptions(argv: string[]): BenchOptions {
  const o: BenchOptions = {
    layouts: ["direct", "five", "single"],
    modes: ["openai-stream", "openai-json", "grpc-stream", "grpc-json"],
    concurrency: [1, 20, 200],
    durationMs: 4_000,
    warmupMs: 1_000,
    peers: [],
    peerModes: ["openai-json"],
    upstream: { ...DEFAULT_FAKE_UPSTREAM },
    out: ".bench/load.json",
  };
  const list = (v: string) => v.split(",").map((s) => s.trim()).filter(Boolean);
  const number = (flag: string, v: string | undefined) => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || n < 0) throw new Error(`${flag} needs a non-negative number`);
    return n;
  };
  const modes = (v: string) => {
    const all: Mode[] = ["openai-stream", "openai-json", "grpc-stream", "grpc-json"];
    const out = list(v) as Mode[];
    for (const m of out) if (!all.includes(m)) throw new Error(`unknown mode "${m}" (modes: ${all.join(", ")})`);
    return out;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    const take = () => {
      if (value === undefined) throw new Error(`${flag} needs a value`);
      i++;
      return value;
    };
    const lastPeer = (): Peer => {
      const p = o.peers.at(-1);
      if (!p) throw new Error(`${flag} must follow --peer`);
      return p;
    };
    switch (flag) {
      case "--concurrency":
        o.concurrency = list(take()).map((c) => number(flag, c));
        if (o.concurrency.some((c) => c < 1 || !Number.isInteger(c))) throw new Error("--concurrency takes whole numbers of at least 1");
        break;
      case "--duration-ms":
        o.durationMs = number(flag, take());
        break;
      case "--warmup-ms":
        o.warmupMs = number(flag, take());
        break;
      case "--layouts": {
        const all: Layout[] = ["direct", "five", "single"];
        o.layouts = list(take()) as Layout[];
        for (const l of o.layouts) if (!all.includes(l)) throw new Error(`unknown layout "${l}" (layouts: ${all.join(", ")})`);
        break;
      }
      case "--modes":
        o.modes = modes(take());
        break;
      case "--peer-modes":
        o.peerModes = modes(take());
        break;
      case "--peer": {
        const url = take();
        o.peers.push({ name: new URL(url).host, url, headers: {} });
        break;
      }
      case "--peer-name":
        lastPeer().name = take();
        break;
      case "--peer-model":
        lastPeer().model = take();
        break;
      case "--peer-header": {
        const peer = lastPeer();
        const v = take();
        const colon = v.indexOf(":");
        if (colon <= 0) throw new Error(`--peer-header takes name:value, got "${v}"`);
        peer.headers[v.slice(0, colon).trim().toLowerCase()] = v.slice(colon + 1).trim();
        break;
      }
      case "--upstream-port":
        o.upstreamPort = number(flag, take());
        break;
      case "--ttft-ms":
        o.upstream.ttftMs = number(flag, take());
        break;
      case "--chunks":
        o.upstream.chunks = Math.max(1, Math.round(number(flag, take())));
        break;
      case "--chunk-interval-ms":
        o.upstream.chunkIntervalMs = number(flag, take());
        break;
      case "--config":
        o.configOverlay = take();
        break;
      case "--memory-limits":
        o.memoryLimitsMib = parseMemoryLimits(take());
        break;
      case "--smoke":
        o.durationMs = 300;
        o.warmupMs = 100;
        break;
      case "--out":
        o.out = take();
        break;
      default:
        throw new Error(`bad option "${flag}"\n${USAGE}`);
    }
  }
  return o;
}

/**
 * `switchyard bench propagation [--flips N] [--nats URL]`: publish-to-routing-change latency of
 * price updates over NATS, measured on two policy replicas.
 */
async function propagationBench(argv: string[]): Promise<number> {
  let flips = 50;
  let natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--flips" && Number(argv[i + 1]) > 0) flips = Number(argv[++i]);
    else if (argv[i] === "--nats" && argv[i + 1]) natsUrl = argv[++i]!;
    else throw new Error(`bad option "${argv[i]}" (options: --flips N --nats URL)`);
  }
  const samples = await measurePropagation({ natsUrl, flips });
  const sorted = samples.map((s) => s.ms).sort((a, b) => a - b);
  const machine = `${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, Node ${process.version}`;
  const line = `price publish -> routing change on 2 policy replicas (${flips} flips, ${samples.length} observations, 2 ms polling): p50 ${percentile(sorted, 50).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(1)} ms\nmachine: ${machine}\n`;
  process.stdout.write(line);
  mkdirSync(".bench", { recursive: true });
  writeFileSync(".bench/propagation.json", JSON.stringify({ date: new Date().toISOString(), machine, flips, samples }, null, 2) + "\n");
  return 0;
}
