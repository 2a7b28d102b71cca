/**
 * Cold versus warm time to first token through the provider adapter, against a local
 * OpenAI-compatible upstream, over plain HTTP, HTTPS with HTTP/1.1 and HTTPS with HTTP/2 (a
 * self-signed certificate made with the `openssl` CLI at start), optionally behind a proxy that
 * adds network round-trip time.
 *
 *   node services/provider/dist/bench-warm.js [--requests N] [--rtt-ms N,N,...] [--out FILE]
 *
 * Cold: a fresh adapter per request, so each pays TCP (and TLS) setup. Warm: one adapter whose
 * pool was opened by `warm()`, requests one after another on its kept-alive connections.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as https from "node:https";
import * as net from "node:net";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { OpenAiAdapter } from "./adapters/openai.js";
import type { GenerateInput } from "./adapters/types.js";

interface Options {
  requests: number;
  rttMs: number[];
  out: string;
}

/** Plain HTTP/1.1, HTTP/1.1 over TLS, HTTP/2 over TLS (negotiated by ALPN). */
type Scheme = "http" | "https" | "h2";

interface Row {
  scheme: Scheme;
  rttMs: number;
  cold: { p50: number; p99: number };
  warm: { p50: number; p99: number };
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
  const dir = mkdtempSync(join(tmpdir(), "switchyard-bench-warm-"));
  const rows: Row[] = [];
  try {
    const tls = makeCertificate(dir);
    const servers: { scheme: Scheme; port: number; close: () => void }[] = [await startUpstream("http")];
    if (tls) servers.push(await startUpstream("https", tls), await startUpstream("h2", tls));
    else process.stderr.write("openssl not found: HTTPS skipped\n");
    for (const server of servers) {
      for (const rttMs of options.rttMs) {
        const proxy = rttMs > 0 ? await startLatencyProxy(server.port, rttMs) : undefined;
        const baseUrl = `${server.scheme === "http" ? "http" : "https"}://127.0.0.1:${proxy?.port ?? server.port}/v1`;
        const adapterOptions = { name: "bench", baseUrl, apiKey: "bench", ...(tls ? { ca: tls.cert } : {}) };
        const cold: number[] = [];
        // The first few requests of a row also pay for JIT compilation; they are not counted.
        for (let i = 0; i < 5 + options.requests; i++) {
          const adapter = new OpenAiAdapter({ ...adapterOptions, warmConnections: 0 });
          const sample = await timeToFirstToken(adapter);
          if (i >= 5) cold.push(sample);
          adapter.close();
        }
        const adapter = new OpenAiAdapter({ ...adapterOptions, warmConnections: 2, keepWarmIntervalMs: 0 }); // the default warm_connections
        await adapter.warm();
        const warm: number[] = [];
        for (let i = 0; i < 5 + options.requests; i++) {
          const sample = await timeToFirstToken(adapter);
          if (i >= 5) warm.push(sample);
        }
        adapter.close();
        proxy?.close();
        rows.push({ scheme: server.scheme, rttMs, cold: summary(cold), warm: summary(warm) });
      }
      server.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const machine = `${cpus()[0]?.model ?? "unknown CPU"} x${cpus().length}, Node ${process.version}, ${process.platform}`;
  const lines = [
    `time to first token through OpenAiAdapter, ${options.requests} requests each, ${machine}`,
    "",
    "| upstream | added RTT | cold p50 | cold p99 | warm p50 | warm p99 |",
    "|---|---|---|---|---|---|",
    ...rows.map((r) => `| ${r.scheme} | ${r.rttMs} ms | ${ms(r.cold.p50)} | ${ms(r.cold.p99)} | ${ms(r.warm.p50)} | ${ms(r.warm.p99)} |`),
  ];
  process.stdout.write(lines.join("\n") + "\n");
  mkdirSync(dirname(options.out), { recursive: true });
  writeFileSync(options.out, JSON.stringify({ machine, requests: options.requests, rows }, null, 2) + "\n");
  process.stdout.write(`\nwritten to ${options.out}\n`);
  return 0;
}

function parseOptions(argv: string[]): Options {
  const o: Options = { requests: 200, rttMs: [0, 20], out: ".bench/provider-warm.json" };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === "--requests" && Number(value) >= 1) o.requests = Math.floor(Number(value));
    else if (flag === "--rtt-ms" && value && value.split(",").every((v) => Number(v) >= 0)) o.rttMs = value.split(",").map(Number);
    else if (flag === "--out" && value) o.out = value;
    else throw new Error(`bad option "${flag ?? ""}" (options: --requests N --rtt-ms N[,N...] --out FILE)`);
  }
  return o;
}

async function timeToFirstToken(adapter: OpenAiAdapter): Promise<number> {
  const started = performance.now();
  let ttft: number | undefined;
  for await (const event of adapter.stream(INPUT, AbortSignal.timeout(10_000))) {
    if (event.type === "delta" && ttft === undefined) ttft = performance.now() - started;
  }
  if (ttft === undefined) throw new Error("the upstream sent no token");
  return ttft;
}

/** A self-signed certificate for 127.0.0.1, or undefined without the openssl CLI. */
function makeCertificate(dir: string): { key: string; cert: string } | undefined {
  const keyPath = join(dir, "key.pem");
  const certPath = join(dir, "cert.pem");
  try {
    execFileSync(
      "openssl",
      ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", keyPath, "-out", certPath, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
      { stdio: "ignore" },
    );
  } catch {
    return undefined;
  }
  return { key: readFileSync(keyPath, "utf8"), cert: readFileSync(certPath, "utf8") };
}

/** An OpenAI-compatible upstream that answers at once: what remains is connection cost. */
async function startUpstream(scheme: Scheme, tls?: { key: string; cert: string }): Promise<{ scheme: Scheme; port: number; close: () => void }> {
  // What HTTP/1.1 and HTTP/2 compatibility requests and responses have in common.
  type Request = { method?: string | undefined; resume(): unknown; on(event: "end", listener: () => void): unknown };
  type Response = { writeHead(status: number, headers: Record<string, string>): unknown; write(chunk: string): unknown; end(chunk: string): unknown };
  const handler = (req: Request, res: Response) => {
    req.resume();
    req.on("end", () => {
      if (req.method !== "POST") {
        res.writeHead(404, { "content-type": "application/json" });
        res.end("{}");
        return;
      }
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(CHUNK("Hello"));
      res.end(CHUNK(" there") + TAIL);
    });
  };
  const server =
    scheme === "h2"
      ? http2.createSecureServer({ ...tls }, handler)
      : scheme === "https"
        ? https.createServer({ ...tls, keepAliveTimeout: 60_000 }, handler)
        : http.createServer({ keepAliveTimeout: 60_000 }, handler);
  server.on("connection", (s: net.Socket) => s.setNoDelay(true));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { scheme, port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

/**
 * A TCP proxy that delays every byte by half the round-trip time in each direction, and the first
 * bytes of a connection by one more round trip (standing in for the TCP handshake a remote
 * upstream costs; the local one is free).
 */
async function startLatencyProxy(targetPort: number, rttMs: number): Promise<{ port: number; close: () => void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: "127.0.0.1", port: targetPort, noDelay: true });
    client.setNoDelay(true);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    const openedAt = performance.now();
    const forward = (from: net.Socket, to: net.Socket) => {
      let lastDue = 0; // bytes keep their order: nothing leaves before what came earlier
      const later = (extraMs: number, action: () => void) => {
        const now = performance.now();
        lastDue = Math.max(lastDue, now + extraMs + rttMs / 2);
        setTimeout(action, lastDue - now);
      };
      from.on("data", (chunk: Buffer) => later(Math.max(0, openedAt + rttMs - performance.now()), () => to.destroyed || to.write(chunk)));
      from.on("end", () => later(0, () => to.end()));
    };
    forward(client, upstream);
    forward(upstream, client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

function summary(samples: number[]): { p50: number; p99: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0;
  return { p50: round(at(0.5)), p99: round(at(0.99)) };
}

const round = (x: number) => Math.round(x * 100) / 100;
const ms = (x: number) => `${x.toFixed(2)} ms`;

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench-warm: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
