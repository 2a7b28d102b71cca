import { randomBytes } from "node:crypto";
import * as http from "node:http";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml, stringify as toYaml } from "yaml";
import { defaultConfigPath, parseConfig } from "@switchyard/config";
import { Mesh } from "../mesh.js";
import { measurePropagation } from "../propagation.js";
import { freePort } from "../ports.js";

interface BenchOptions {
  /** All five services in one process instead of five processes. */
  singleProcess: boolean;
  requests: number;
  concurrency: number;
  ttftMs: number;
  tokens: number;
  tokenIntervalMs: number;
  out: string;
}

/** Latency of one streamed completion as the client saw it. */
interface Sample {
  ttftMs: number;
  totalMs: number;
}

/**
 * `switchyard bench`: the cost of routing. A fake OpenAI-compatible upstream with a fixed time to
 * first token streams the same answer to a client directly and through the whole mesh (cache
 * lookup, classifier, policy, provider service, gateway relay); the difference is what
 * Switchyard adds.
 */
export async function benchCommand(argv: string[]): Promise<number> {
  if (argv[0] === "propagation") return propagationBench(argv.slice(1));
  const options = parseOptions(argv);
  const upstream = await startFakeUpstream(options);
  const dir = mkdtempSync(join(tmpdir(), "switchyard-bench-"));
  const ports = await allocatePorts();
  const configPath = join(dir, "switchyard.yaml");
  writeFileSync(configPath, benchConfig(upstream.url, ports));
  const config = parseConfig(readFileSync(configPath, "utf8"), configPath);
  const mesh = new Mesh({
    config,
    env: { ...process.env, SWITCHYARD_CONFIG: configPath, SWITCHYARD_NATS_ENABLED: "false" },
    log: () => {},
    childOutput: "ignore",
    restart: false,
    singleProcess: options.singleProcess,
  });
  try {
    mesh.start();
    await mesh.waitReady();
    const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency });
    const direct = { host: "127.0.0.1", port: upstream.port, path: "/v1/chat/completions" };
    const gateway = { host: "127.0.0.1", port: config.ports.gateway_http, path: "/v1/chat/completions" };
    const warm = Math.min(200, options.requests);
    await run(direct, agent, warm, options.concurrency, "warm");
    await run(gateway, agent, warm, options.concurrency, "warm");
    const directSamples = await run(direct, agent, options.requests, options.concurrency, "direct");
    const meshSamples = await run(gateway, agent, options.requests, options.concurrency, "mesh");
    agent.destroy();
    const report = summarise(options, directSamples, meshSamples);
    process.stdout.write(report.table);
    mkdirSync(join(options.out, ".."), { recursive: true });
    writeFileSync(options.out, JSON.stringify(report.json, null, 2) + "\n");
    process.stdout.write(`\nwritten to ${options.out}\n`);
    return 0;
  } finally {
    await mesh.stop(5_000);
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function parseOptions(argv: string[]): BenchOptions {
  const o: BenchOptions = { singleProcess: false, requests: 2000, concurrency: 16, ttftMs: 50, tokens: 32, tokenIntervalMs: 2, out: ".bench/gateway-overhead.json" };
  const numeric: Record<string, keyof Omit<BenchOptions, "out" | "singleProcess">> = {
    "--requests": "requests",
    "--concurrency": "concurrency",
    "--ttft-ms": "ttftMs",
    "--tokens": "tokens",
    "--token-interval-ms": "tokenIntervalMs",
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    if (flag === "--single-process") {
      o.singleProcess = true;
    } else if (flag === "--out" && value) {
      o.out = value;
      i++;
    } else if (numeric[flag] && value !== undefined && Number.isFinite(Number(value)) && Number(value) >= 0) {
      o[numeric[flag]] = Number(value);
      i++;
    } else throw new Error(`bad option "${flag}" (options: --single-process --requests N --concurrency N --ttft-ms N --tokens N --token-interval-ms N --out FILE)`);
  }
  if (o.requests < 1 || o.concurrency < 1 || o.tokens < 1) throw new Error("--requests, --concurrency and --tokens must be at least 1");
  return o;
}

async function allocatePorts(): Promise<Record<string, number>> {
  const names = ["gateway_http", "gateway_grpc", "classifier", "policy", "cache", "provider", "classifier_http", "policy_http", "cache_http", "provider_http"];
  const ports: Record<string, number> = {};
  for (const n of names) ports[n] = await freePort();
  return ports;
}

function benchConfig(upstreamUrl: string, ports: Record<string, number>): string {
  const defaults = parseYaml(readFileSync(defaultConfigPath(), "utf8")) as Record<string, unknown>;
  return toYaml({
    listen_host: "127.0.0.1",
    ports,
    tiers: defaults.tiers,
    providers: [
      {
        name: "bench",
        kind: "openai",
        base_url: `${upstreamUrl}/v1`,
        enabled: true,
        max_concurrency: 1024,
        pool_connections: 64,
        models: [{ name: "fixed", input_usd_per_mtok: 1, output_usd_per_mtok: 2, tiers: ["simple", "standard", "complex"] }],
      },
    ],
    nats: { enabled: false },
    telemetry: { log_level: "warn" },
  });
}

/** An OpenAI-compatible server that answers every request alike: fixed TTFT, fixed tokens. */
async function startFakeUpstream(o: BenchOptions): Promise<{ url: string; port: number; close: () => Promise<void> }> {
  const server = http.createServer({ keepAlive: true }, (req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      const base = { id: "chatcmpl-bench", object: "chat.completion.chunk", created: 0, model: "fixed" };
      let sent = 0;
      const next = () => {
        if (res.destroyed) return;
        if (sent < o.tokens) {
          res.write(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: { content: `tok${sent} ` }, finish_reason: null }] })}\n\n`);
          sent++;
          setTimeout(next, o.tokenIntervalMs);
          return;
        }
        res.write(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}\n\n`);
        res.write(`data: ${JSON.stringify({ ...base, choices: [], usage: { prompt_tokens: 20, completion_tokens: o.tokens, total_tokens: 20 + o.tokens } })}\n\n`);
        res.end("data: [DONE]\n\n");
      };
      setTimeout(next, o.ttftMs);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}`, port, close: () => new Promise((r) => server.close(() => r())) };
}

async function run(target: { host: string; port: number; path: string }, agent: http.Agent, total: number, concurrency: number, label: string): Promise<Sample[]> {
  const samples: Sample[] = [];
  let issued = 0;
  const worker = async () => {
    while (issued < total) {
      const n = issued++;
      // Every prompt unique and unlike the others (random words), so neither the exact nor the
      // semantic cache answers: the benchmark measures the routed path, cache lookup included.
      samples.push(await once(target, agent, `${randomBytes(24).toString("hex")} ${label} ${n}: ${"what is routing? ".repeat(1 + (n % 5))}`));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return samples;
}

function once(target: { host: string; port: number; path: string }, agent: http.Agent, prompt: string): Promise<Sample> {
  const body = JSON.stringify({ model: "switchyard/auto", stream: true, temperature: 0, messages: [{ role: "user", content: prompt }] });
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let ttft = -1;
    let buffer = "";
    const req = http.request(
      { ...target, method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
      (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`HTTP ${res.statusCode} from ${target.host}:${target.port}`));
          res.resume();
          return;
        }
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          if (ttft >= 0) return;
          buffer += chunk;
          // First event that carries answer text (not the empty role chunk).
          if (/"content":"[^"]/.test(buffer)) ttft = performance.now() - start;
        });
        res.on("end", () => (ttft < 0 ? reject(new Error(`no answer text from ${target.host}:${target.port}`)) : resolve({ ttftMs: ttft, totalMs: performance.now() - start })));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function summarise(o: BenchOptions, direct: Sample[], mesh: Sample[]) {
  const stats = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return { p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), mean: s.reduce((a, b) => a + b, 0) / s.length };
  };
  const rows = {
    direct_ttft: stats(direct.map((s) => s.ttftMs)),
    mesh_ttft: stats(mesh.map((s) => s.ttftMs)),
    direct_total: stats(direct.map((s) => s.totalMs)),
    mesh_total: stats(mesh.map((s) => s.totalMs)),
  };
  const added = {
    ttft_p50: rows.mesh_ttft.p50 - rows.direct_ttft.p50,
    ttft_p99: rows.mesh_ttft.p99 - rows.direct_ttft.p99,
    total_p50: rows.mesh_total.p50 - rows.direct_total.p50,
  };
  const f = (n: number) => n.toFixed(2).padStart(8);
  const line = (name: string, s: { p50: number; p90: number; p99: number; mean: number }) => `${name.padEnd(22)}${f(s.p50)}${f(s.p90)}${f(s.p99)}${f(s.mean)}\n`;
  const machine = `${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, Node ${process.version}`;
  const table =
    `switchyard bench (${o.singleProcess ? "one process" : "five processes"}): ${o.requests} streamed requests per path, concurrency ${o.concurrency}, upstream TTFT ${o.ttftMs} ms, ${o.tokens} tokens every ${o.tokenIntervalMs} ms\n` +
    `machine: ${machine}\n\n` +
    `${"ms".padEnd(22)}${"p50".padStart(8)}${"p90".padStart(8)}${"p99".padStart(8)}${"mean".padStart(8)}\n` +
    line("TTFT direct", rows.direct_ttft) +
    line("TTFT through mesh", rows.mesh_ttft) +
    line("total direct", rows.direct_total) +
    line("total through mesh", rows.mesh_total) +
    `\nadded by Switchyard: TTFT p50 ${added.ttft_p50.toFixed(2)} ms, TTFT p99 ${added.ttft_p99.toFixed(2)} ms, total p50 ${added.total_p50.toFixed(2)} ms\n`;
  return { table, json: { options: o, machine, date: new Date().toISOString(), ms: rows, added_ms: added } };
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
