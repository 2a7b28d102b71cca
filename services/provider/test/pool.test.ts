import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { parseConfig, type ProviderConfig } from "@switchyard/config";
import { createLogger } from "@switchyard/telemetry";
import { OpenAiAdapter } from "../src/adapters/openai.js";
import { ErrorKind, ProviderFailure, type ProviderAdapter } from "../src/adapters/types.js";
import { Upstream } from "../src/adapters/upstream.js";
import { createAdapter, startProviders } from "../src/providers.js";
import { startFakeUpstream, type FakeUpstream, type Reply } from "./fake-upstream.js";
import { ANSWER, OPENAI_TEXT } from "./fixtures.js";
import { makeCertificate, type Certificate } from "./tls.js";
import { chatInput, collect, collectFailure, finishOf, textOf } from "./helpers.js";

/** One provider as the configuration file would give it, defaults filled in. */
function providerConfig(fields: Record<string, unknown>): ProviderConfig {
  const config = parseConfig(
    JSON.stringify({
      providers: [{ name: "oa", kind: "openai", enabled: true, models: [{ name: "gpt-x", input_usd_per_mtok: 1, output_usd_per_mtok: 2, tiers: ["standard"] }], ...fields }],
      tiers: [{ name: "standard", max_difficulty: 1 }],
      nats: { enabled: false },
    }),
  );
  return config.providers[0]!;
}

/**
 * An answer that starts at once and holds its response open until `expected` answers are in
 * flight together (or `maxHoldMs` passed), then `holdMs` more: what a slow model looks like to the
 * pool. `peak` is the most answers the upstream saw at once.
 */
function heldAnswers(expected: number, holdMs: number, maxHoldMs = 5_000) {
  const state = { inFlight: 0, peak: 0, ports: [] as number[] };
  let release!: () => void;
  const together = new Promise<void>((r) => (release = r));
  const reply: Reply = async (res) => {
    state.inFlight++;
    state.peak = Math.max(state.peak, state.inFlight);
    state.ports.push(res.socket?.remotePort ?? 0);
    if (state.inFlight >= expected) release();
    res.writeHead(200, { "content-type": "text/event-stream" });
    const events = OPENAI_TEXT.split("\n\n").filter(Boolean);
    res.write(`${events[0]}\n\n`);
    await Promise.race([together, sleep(maxHoldMs)]);
    await sleep(holdMs);
    state.inFlight--;
    res.end(events.slice(1).map((e) => `${e}\n\n`).join(""));
  };
  return { state, reply };
}

describe("connection pool: in-flight answers", () => {
  let upstream: FakeUpstream | undefined;
  const adapters: ProviderAdapter[] = [];
  afterEach(async () => {
    for (const a of adapters.splice(0)) a.close?.();
    await upstream?.close();
    upstream = undefined;
  });

  it("runs 100 streams at once with the default configuration: no connection cap below max_concurrency", async () => {
    const held = heldAnswers(100, 200);
    upstream = await startFakeUpstream(held.reply);
    const p = providerConfig({ base_url: `${upstream.url}/v1`, max_concurrency: 100 });
    expect(p.pool_connections).toBeUndefined();
    const adapter = createAdapter(p, {});
    adapters.push(adapter);
    const started = performance.now();
    const answers = await Promise.all(Array.from({ length: 100 }, () => collect(adapter, chatInput())));
    expect(held.state.peak).toBe(100);
    // Together, not in waves of a few connections: the upstream never had to wait for the 5 s fallback.
    expect(performance.now() - started).toBeLessThan(4_000);
    for (const events of answers) {
      expect(textOf(events)).toBe(ANSWER);
      expect(finishOf(events).usage.estimated).toBe(false);
    }
  });

  it("honours pool_connections when it is set: no more answers in flight than connections", async () => {
    const held = heldAnswers(5, 50, 300);
    upstream = await startFakeUpstream(held.reply);
    const adapter = createAdapter(providerConfig({ base_url: `${upstream.url}/v1`, pool_connections: 2 }), {});
    adapters.push(adapter);
    const answers = await Promise.all(Array.from({ length: 5 }, () => collect(adapter, chatInput())));
    expect(answers.map(textOf)).toEqual(Array(5).fill(ANSWER));
    expect(held.state.peak).toBe(2);
    expect(upstream.connections).toBe(2);
  });

  it("fails a request waiting for a connection as soon as its caller gives up, and sends it nowhere", async () => {
    const held = heldAnswers(2, 0, 400);
    upstream = await startFakeUpstream(held.reply);
    const pool = new Upstream({ baseUrl: upstream.url, maxConnections: 1, label: "oa" });
    const first = pool.request("v1/chat/completions", { method: "POST", headers: {}, body: "{}", signal: AbortSignal.timeout(5_000) });
    const reason = new ProviderFailure(ErrorKind.TIMEOUT, "oa: no first token within 80 ms");
    const controller = new AbortController();
    setTimeout(() => controller.abort(reason), 80);
    const queuedAt = performance.now();
    await expect(pool.request("v1/chat/completions", { method: "POST", headers: {}, body: "{}", signal: controller.signal })).rejects.toBe(reason);
    expect(performance.now() - queuedAt).toBeLessThan(300);
    const firstBody = (await first).body;
    for await (const chunk of firstBody) void chunk;
    const third = await pool.request("v1/chat/completions", { method: "POST", headers: {}, body: "{}", signal: AbortSignal.timeout(5_000) });
    for await (const chunk of third.body) void chunk;
    expect(upstream.requests).toHaveLength(2);
    pool.close();
  });

  it("does not count time the reader holds a chunk against the idle timeout", async () => {
    upstream = await startFakeUpstream(async (res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      for (let i = 0; i < 8; i++) {
        res.write(`data: ${i}\n\n`);
        await sleep(50);
      }
      res.end();
    });
    const pool = new Upstream({ baseUrl: upstream.url, label: "oa", idleTimeoutMs: 150 });
    const res = await pool.request("", { method: "POST", headers: {}, body: "{}", signal: AbortSignal.timeout(5_000) });
    let text = "";
    for await (const chunk of res.body) {
      if (text === "") await sleep(400);
      text += Buffer.from(chunk).toString("utf8");
    }
    expect(text).toBe(Array.from({ length: 8 }, (_, i) => `data: ${i}\n\n`).join(""));
    pool.close();
  });

  it("warns at start when pool_connections leaves fewer answers in flight than max_concurrency over HTTP/1.1", () => {
    const lines: string[] = [];
    const logger = createLogger({ service: "provider", level: "debug", write: (line) => lines.push(line) });
    const model = { name: "gpt-x", input_usd_per_mtok: 1, output_usd_per_mtok: 2, tiers: ["standard"] };
    const config = parseConfig(
      JSON.stringify({
        providers: [
          { name: "plain", kind: "openai", enabled: true, base_url: "http://127.0.0.1:1/v1", pool_connections: 4, models: [model] },
          { name: "h1tls", kind: "openai", enabled: true, base_url: "https://127.0.0.1:1/v1", pool_connections: 4, http2: false, models: [model] },
          { name: "h2tls", kind: "openai", enabled: true, base_url: "https://127.0.0.1:1/v1", pool_connections: 4, models: [model] },
          { name: "uncapped", kind: "openai", enabled: true, base_url: "http://127.0.0.1:1/v1", models: [model] },
          { name: "wide", kind: "openai", enabled: true, base_url: "http://127.0.0.1:1/v1", pool_connections: 2048, models: [model] },
        ],
        tiers: [{ name: "standard", max_difficulty: 1 }],
        nats: { enabled: false },
      }),
    );
    const running = startProviders(config, {}, logger);
    for (const p of running.values()) p.adapter.close?.();
    const warnings = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.level === "warn");
    expect(warnings.map((w) => w.provider)).toEqual(["plain", "h1tls"]);
    expect(warnings[0]).toMatchObject({ pool_connections: 4, max_concurrency: 1024 });
    expect(String(warnings[0]!.msg)).toContain("at most 4 answers in flight");
  });
});

describe("connection pool: warm connections", () => {
  let upstream: FakeUpstream | undefined;
  afterEach(async () => {
    await upstream?.close();
    upstream = undefined;
  });

  it("warm(n) opens n connections, and n answers in flight later run on exactly those", async () => {
    const held = heldAnswers(4, 0, 2_000);
    upstream = await startFakeUpstream(held.reply);
    const pool = new Upstream({ baseUrl: upstream.url, label: "oa" });
    expect(await pool.warm(4)).toBe(4);
    expect(upstream.connections).toBe(4);
    expect(pool.stats()).toEqual({ busy: 0, idle: 4 });
    const warmPorts = [...upstream.openSockets].map((s) => s.remotePort);
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        const res = await pool.request("v1/chat/completions", { method: "POST", headers: {}, body: "{}", signal: AbortSignal.timeout(5_000) });
        for await (const chunk of res.body) void chunk;
      }),
    );
    expect(held.state.peak).toBe(4);
    expect(upstream.connections).toBe(4);
    expect([...held.state.ports].sort()).toEqual([...warmPorts].sort());
    pool.close();
  });
});

describe("connection pool: HTTP/2 over TLS", () => {
  let certificate: Certificate;
  let server: http2.Http2SecureServer;
  let baseUrl: string;
  /** Protocol version of every request, in arrival order. */
  const versions: string[] = [];
  let connections = 0;
  let inFlight = 0;
  let peak = 0;
  let holdMs = 0;
  const adapters: ProviderAdapter[] = [];

  beforeAll(async () => {
    certificate = makeCertificate();
    // allowHTTP1: the same port answers clients that do not offer h2 in ALPN.
    server = http2.createSecureServer({ key: certificate.key, cert: certificate.cert, allowHTTP1: true }, (req, res) => {
      versions.push(req.httpVersion);
      req.resume();
      req.on("end", () => {
        if (req.method === "GET") {
          res.writeHead(404, { "content-type": "application/json" }).end("{}");
          return;
        }
        inFlight++;
        peak = Math.max(peak, inFlight);
        res.writeHead(200, { "content-type": "text/event-stream" });
        void (async () => {
          // One event per write, so the answer really streams.
          for (const event of OPENAI_TEXT.split("\n\n").filter(Boolean)) {
            if (res.destroyed) break;
            res.write(`${event}\n\n`);
            await sleep(holdMs / 7);
          }
          inFlight--;
          if (!res.destroyed) res.end();
        })();
      });
    });
    server.on("secureConnection", () => connections++);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    baseUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  });

  afterEach(() => {
    for (const a of adapters.splice(0)) a.close?.();
    versions.length = 0;
    connections = 0;
    peak = 0;
    holdMs = 0;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    certificate.remove();
  });

  const adapter = (http2Enabled?: boolean) => {
    const a = new OpenAiAdapter({ name: "oa", baseUrl, apiKey: "k", ca: certificate.cert, ...(http2Enabled === undefined ? {} : { http2: http2Enabled }) });
    adapters.push(a);
    return a;
  };

  it("speaks HTTP/2 by default and carries 20 answers at once on one connection, each intact", async () => {
    holdMs = 200;
    const a = adapter();
    const answers = await Promise.all(Array.from({ length: 20 }, () => collect(a, chatInput())));
    for (const events of answers) {
      expect(textOf(events)).toBe(ANSWER);
      expect(finishOf(events).usage).toMatchObject({ inputTokens: 19, outputTokens: 10, estimated: false });
    }
    expect(versions).toEqual(Array(20).fill("2.0"));
    expect(peak).toBe(20);
    expect(connections).toBe(1);
  });

  it("speaks HTTP/1.1 to the same server when http2 is off, one connection per answer in flight", async () => {
    holdMs = 200;
    const a = adapter(false);
    const answers = await Promise.all(Array.from({ length: 3 }, () => collect(a, chatInput())));
    expect(answers.map(textOf)).toEqual(Array(3).fill(ANSWER));
    expect(versions).toEqual(["1.1", "1.1", "1.1"]);
    expect(connections).toBe(3);
  });

  it("warms one HTTP/2 connection that later answers reuse", async () => {
    const a = adapter();
    await a.warm();
    expect(connections).toBe(1);
    expect(a.poolStats()).toEqual({ busy: 0, idle: 1 });
    expect(textOf(await collect(a, chatInput()))).toBe(ANSWER);
    expect(connections).toBe(1);
    expect(versions.every((v) => v === "2.0")).toBe(true);
  });

  it("drops only its own stream when a caller gives up: the answer beside it on the connection completes", async () => {
    holdMs = 400;
    const a = adapter();
    const controller = new AbortController();
    const kept = collect(a, chatInput());
    const dropped = collectFailure(a, chatInput(), controller.signal);
    await sleep(150);
    controller.abort(new ProviderFailure(ErrorKind.TIMEOUT, "oa: caller gone"));
    expect((await dropped).failure.message).toBe("oa: caller gone");
    expect(textOf(await kept)).toBe(ANSWER);
    expect(connections).toBe(1);
  });

  it("fails CONNECTION naming the TLS error, not the address, when the certificate is not trusted", async () => {
    const untrusting = new OpenAiAdapter({ name: "oa", baseUrl, apiKey: "k" });
    adapters.push(untrusting);
    const { failure } = await collectFailure(untrusting, chatInput());
    expect(failure.kind).toBe(ErrorKind.CONNECTION);
    expect(failure.message).toMatch(/^oa: TLS handshake with the provider failed \([A-Z_]+\)$/);
  });
});
