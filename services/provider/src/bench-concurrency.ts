/**
 * Streamed answers per second through the provider adapter at a fixed number in flight, against a
 * local OpenAI-compatible upstream that takes a fixed time per answer (its first token at once, the
 * rest after `--answer-ms`), with no connection cap and with `pool_connections` caps.
 *
 *   node services/provider/dist/bench-concurrency.js [--concurrency N] [--answer-ms N] [--seconds N] [--caps N,N,...] [--out FILE]
 *
 * The upstream runs in this process, so both sides share the machine's cores.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { cpus } from "node:os";
import { dirname } from "node:path";
import { OpenAiAdapter } from "./adapters/openai.js";
import type { GenerateInput } from "./adapters/types.js";

interface Options {
  concurrency: number;
  answerMs: number;
  seconds: number;
  /** pool_connections values to measure besides none. */
  caps: number[];
  out: string;
}

interface Row {
  /** pool_connections; null = unset. */
  cap: number | null;
  answers: number;
  answersPerSecond: number;
  /** Most answers the upstream held at once. */
  peakInFlight: number;
}

const CHUNK = (content: string) =>
  `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"bench","choices":[{"index":0,"delta":{"content":"${content}"},"finish_reason":null}]}\n\n`;
const TAIL =
  'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"bench","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n' +
  'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"bench","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}\n\n' +
  "data: [DONE]\n\n";

const INPUT: GenerateInput = { model: "bench", messages: [{ role: "user", content: "hi" }], stop: [], tools: [] };

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  const upstream = await startUpstream(options.answerMs);
  const rows: Row[] = [];
  try {
    for (const cap of [null, ...options.caps]) {
      const adapter = new OpenAiAdapter({ name: "bench", baseUrl: `${upstream.url}/v1`, apiKey: "bench", ...(cap === null ? {} : { maxConnections: cap }) });
      // One round first: connections opened and code compiled before the clock starts.
      await Promise.all(Array.from({ length: options.concurrency }, () => answer(adapter)));
      upstream.peak = 0;
      const started = performance.now();
      const until = started + options.seconds * 1000;
      let answers = 0;
      await Promise.all(
        Array.from({ length: options.concurrency }, async () => {
          while (performance.now() < until) {
            await answer(adapter);
            answers++;
          }
        }),
      );
      const seconds = (performance.now() - started) / 1000;
      rows.push({ cap, answers, answersPerSecond: Math.round(answers / seconds), peakInFlight: upstream.peak });
      adapter.close();
    }
  } finally {
    upstream.close();
  }
  const machine = `${cpus()[0]?.model ?? "unknown CPU"} x${cpus().length}, Node ${process.version}, ${process.platform}`;
  const lines = [
    `streamed answers through OpenAiAdapter, ${options.concurrency} in flight, ${options.answerMs} ms per answer upstream, ${options.seconds} s each, ${machine}`,
    "",
    "| pool_connections | answers/s | most in flight upstream |",
    "|---|---|---|",
    ...rows.map((r) => `| ${r.cap ?? "unset"} | ${r.answersPerSecond} | ${r.peakInFlight} |`),
  ];
  process.stdout.write(lines.join("\n") + "\n");
  mkdirSync(dirname(options.out), { recursive: true });
  writeFileSync(options.out, JSON.stringify({ machine, ...options, rows }, null, 2) + "\n");
  process.stdout.write(`\nwritten to ${options.out}\n`);
  return 0;
}

function parseOptions(argv: string[]): Options {
  const o: Options = { concurrency: 200, answerMs: 63, seconds: 5, caps: [8], out: ".bench/provider-concurrency.json" };
  const positive = (v: string | undefined) => Number(v) >= 1 && Number.isFinite(Number(v));
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === "--concurrency" && positive(value)) o.concurrency = Math.floor(Number(value));
    else if (flag === "--answer-ms" && Number(value) >= 0) o.answerMs = Number(value);
    else if (flag === "--seconds" && positive(value)) o.seconds = Number(value);
    else if (flag === "--caps" && value !== undefined) o.caps = value === "" ? [] : value.split(",").map((v) => Math.floor(Number(v)));
    else if (flag === "--out" && value) o.out = value;
    else throw new Error(`bad option "${flag ?? ""}" (options: --concurrency N --answer-ms N --seconds N --caps N[,N...] --out FILE)`);
  }
  if (o.caps.some((c) => !(c >= 1))) throw new Error("--caps takes whole numbers from 1");
  return o;
}

async function answer(adapter: OpenAiAdapter): Promise<void> {
  let finished = false;
  for await (const event of adapter.stream(INPUT, AbortSignal.timeout(60_000))) if (event.type === "finish") finished = true;
  if (!finished) throw new Error("an answer ended without its finish");
}

/** An OpenAI-compatible upstream whose every answer takes `answerMs`; counts answers in flight. */
async function startUpstream(answerMs: number): Promise<{ url: string; peak: number; close: () => void }> {
  let inFlight = 0;
  const state = { url: "", peak: 0, close: () => server.close() };
  const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    req.resume();
    req.on("end", () => {
      if (req.method !== "POST") {
        res.writeHead(404, { "content-type": "application/json" }).end("{}");
        return;
      }
      inFlight++;
      state.peak = Math.max(state.peak, inFlight);
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(CHUNK("Hello"));
      setTimeout(() => {
        inFlight--;
        res.end(CHUNK(" there") + TAIL);
      }, answerMs);
    });
  });
  server.on("connection", (s) => s.setNoDelay(true));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench-concurrency: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
