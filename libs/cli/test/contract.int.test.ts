import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import * as http from "node:http";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { gateway as pb, health } from "@switchyard/proto";
import { createServiceClient, ServingStatus } from "@switchyard/rpc";
import { startInProcessMesh, type InProcessMesh } from "./in-process.js";
import { startSlowUpstream, type SlowUpstream } from "./slow-upstream.js";
import { FAST_SIM_PROVIDER, startTestMesh, type TestMesh } from "./support.js";

/**
 * The documented answers a user depends on and no other test sends for: 401 for a missing or
 * wrong API key on every public API, 504 when `limits.request_timeout_ms` runs out (before and
 * after a stream started), and a client hanging up (499 in the log, the upstream call cancelled).
 * Through the five-process mesh as `switchyard start` runs it, with a real key configured.
 */
const KEY = "sk-test-contract-0b1c2d3e4f5a6b7c";
const sha = (k: string) => createHash("sha256").update(k).digest("hex");
const AUTH = { authorization: `Bearer ${KEY}` };
const TIMEOUT_MS = 2_500;

const price = { input_usd_per_mtok: 0.1, output_usd_per_mtok: 0.2, tiers: ["complex"] };
const settings = (upstream: SlowUpstream) => ({
  tenants: [{ name: "team-a", api_key_sha256: [sha(KEY)] }],
  providers: [
    FAST_SIM_PROVIDER,
    {
      name: "slow",
      kind: "simulator",
      enabled: true,
      models: [
        // No first token for 10 s: only the request timeout can end it in time.
        { name: "late", ...price, simulator: { ttft_ms: 10_000, tokens_per_second: 5_000, output_tokens: 10 } },
        // Starts at once, then 10 tokens a second for 50 s.
        { name: "dribble", ...price, simulator: { ttft_ms: 5, tokens_per_second: 10, output_tokens: 500 } },
      ],
    },
    { name: "up", kind: "openai", enabled: true, base_url: upstream.baseUrl, models: [{ name: "stream", ...price }] },
  ],
  limits: { request_timeout_ms: TIMEOUT_MS, shutdown_grace_ms: 5_000 },
});

interface RestAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  raw: string;
  ms: number;
}

/** One REST request with full control of headers; the raw body (SSE or JSON) and how long it took. */
function rest(baseUrl: string, path: string, headers: Record<string, string>, body?: unknown): Promise<RestAnswer> {
  const text = body === undefined ? undefined : JSON.stringify(body);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${baseUrl}${path}`,
      { method: text === undefined ? "GET" : "POST", headers: { ...(text === undefined ? {} : { "content-type": "application/json" }), ...headers }, agent: false },
      (res) => {
        let raw = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (raw += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, raw, ms: performance.now() - started }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(text);
  });
}

/** The `data:` events of an SSE body, [DONE] as the string. */
const events = (raw: string) =>
  raw
    .split("\n\n")
    .filter((e) => e.startsWith("data: "))
    .map((e) => e.slice(6))
    .map((d) => (d === "[DONE]" ? d : (JSON.parse(d) as Record<string, any>)));

/**
 * Starts a streamed completion over REST, reads until `chunks` content chunks arrived, then hangs
 * up (destroys the connection) and resolves with when it did.
 */
function hangUpAfter(baseUrl: string, model: string, chunks: number): Promise<number> {
  const body = JSON.stringify({ model, stream: true, messages: [{ role: "user", content: "Tell me a long story." }] });
  return new Promise((resolve, reject) => {
    const req = http.request(`${baseUrl}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", ...AUTH }, agent: false }, (res) => {
      let seen = 0;
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        seen += (c.match(/"content":"word/g) ?? []).length;
        if (seen >= chunks) {
          const at = performance.now();
          req.destroy();
          resolve(at);
        }
      });
      res.on("end", () => reject(new Error("the answer ended before the client hung up")));
    });
    req.on("error", () => {});
    req.end(body);
  });
}

/** StreamComplete over gRPC (@grpc/grpc-js), cancelled by the client after `messages` text messages. */
function cancelGrpcAfter(grpcUrl: string, model: string, messages: number): Promise<number> {
  const client = new grpc.Client(grpcUrl.replace("http://", ""), grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set("authorization", AUTH.authorization);
  const request = create(pb.CompleteRequestSchema, { model, messages: [{ role: "user", content: "Tell me a long story." }] });
  const call = client.makeServerStreamRequest(
    "/switchyard.gateway.v1.GatewayService/StreamComplete",
    (m: pb.CompleteRequest) => Buffer.from(toBinary(pb.CompleteRequestSchema, m)),
    (b: Buffer) => fromBinary(pb.CompleteResponseSchema, b),
    request,
    md,
  );
  return new Promise((resolve, reject) => {
    let seen = 0;
    call.on("data", (m: pb.CompleteResponse) => {
      if (m.text && ++seen === messages) {
        const at = performance.now();
        call.cancel();
        client.close();
        resolve(at);
      }
    });
    call.on("error", (err: grpc.ServiceError) => {
      if (err.code !== grpc.status.CANCELLED) reject(err);
    });
    call.on("end", () => reject(new Error("the answer ended before the client cancelled")));
  });
}

/** A unary Complete over gRPC with @grpc/grpc-js: the status code and message it ends with. */
function grpcComplete(grpcUrl: string, metadata: Record<string, string>): Promise<{ code: grpc.status; details: string }> {
  const client = new grpc.Client(grpcUrl.replace("http://", ""), grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  const request = create(pb.CompleteRequestSchema, { model: "sim/small", messages: [{ role: "user", content: "hello" }] });
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      "/switchyard.gateway.v1.GatewayService/Complete",
      (m: pb.CompleteRequest) => Buffer.from(toBinary(pb.CompleteRequestSchema, m)),
      (b: Buffer) => fromBinary(pb.CompleteResponseSchema, b),
      request,
      md,
      (err) => {
        client.close();
        resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: "" });
      },
    );
  });
}

const envelope = (a: RestAnswer) => (JSON.parse(a.raw) as { error: Record<string, unknown> }).error;

let upstream: SlowUpstream;
let m: TestMesh;
beforeAll(async () => {
  upstream = await startSlowUpstream();
  m = await startTestMesh(settings(upstream));
}, 60_000);
afterAll(async () => {
  await m?.stop();
  await upstream?.close();
});

describe("API keys, with a tenant key configured", () => {
  it("REST: exactly 401 in the OpenAI envelope for a missing and for a wrong key; 200 with the key", async () => {
    const chat = { model: "sim/small", messages: [{ role: "user", content: "hello" }] };
    const missing = await rest(m.httpUrl, "/v1/chat/completions", {}, chat);
    expect(missing.status).toBe(401);
    expect(envelope(missing)).toMatchObject({ type: "authentication_error", code: "missing_api_key", param: null });
    const wrong = await rest(m.httpUrl, "/v1/chat/completions", { authorization: "Bearer sk-test-wrong-1234" }, chat);
    expect(wrong.status).toBe(401);
    expect(envelope(wrong)).toMatchObject({ type: "authentication_error", code: "invalid_api_key" });
    const models = await rest(m.httpUrl, "/v1/models", {});
    expect(models.status).toBe(401);
    expect(envelope(models).code).toBe("missing_api_key");
    expect((await rest(m.httpUrl, "/v1/chat/completions", AUTH, chat)).status).toBe(200);
    expect((await rest(m.httpUrl, "/v1/models", AUTH)).status).toBe(200);
  });

  it("Connect on the HTTP/1.1 port: HTTP 401 with code unauthenticated; with the key an answer", async () => {
    const call = (headers: Record<string, string>) => rest(m.httpUrl, "/switchyard.gateway.v1.GatewayService/Complete", headers, { model: "sim/small", messages: [{ role: "user", content: "hello" }] });
    for (const headers of [{}, { authorization: "Bearer sk-test-wrong-1234" }]) {
      const res = await call(headers);
      expect(res.status).toBe(401);
      expect(JSON.parse(res.raw)).toMatchObject({ code: "unauthenticated" });
    }
    const ok = await call(AUTH);
    expect(ok.status).toBe(200);
    expect((JSON.parse(ok.raw) as { completion: { route: { model: string } } }).completion.route.model).toBe("sim/small");
  });

  it("Connect on the HTTP/2 port: UNAUTHENTICATED for a missing and a wrong key, streamed and not", async () => {
    const c = createClient(pb.GatewayService, createConnectTransport({ baseUrl: m.grpcUrl, httpVersion: "2" }));
    const req = { model: "sim/small", messages: [{ role: "user", content: "hello" }] };
    for (const headers of [{}, { authorization: "Bearer sk-test-wrong-1234" }]) {
      await expect(c.complete(req, { headers })).rejects.toMatchObject({ code: Code.Unauthenticated });
      const stream = (async () => {
        for await (const _ of c.streamComplete(req, { headers })) void _;
      })();
      await expect(stream).rejects.toSatisfy((e) => ConnectError.from(e).code === Code.Unauthenticated);
    }
    expect((await c.complete(req, { headers: AUTH })).completion?.route?.model).toBe("sim/small");
  });

  it("gRPC (@grpc/grpc-js): UNAUTHENTICATED for a missing and a wrong key; OK with it", async () => {
    expect(await grpcComplete(m.grpcUrl, {})).toMatchObject({ code: grpc.status.UNAUTHENTICATED, details: expect.stringMatching(/API key is required/) });
    expect(await grpcComplete(m.grpcUrl, { authorization: "Bearer sk-test-wrong-1234" })).toMatchObject({ code: grpc.status.UNAUTHENTICATED, details: "the API key is not valid" });
    expect((await grpcComplete(m.grpcUrl, AUTH)).code).toBe(grpc.status.OK);
  });
});

describe("limits.request_timeout_ms", () => {
  it("answers exactly 504 in the OpenAI envelope when no answer came in time, at the deadline", async () => {
    const res = await rest(m.httpUrl, "/v1/chat/completions", AUTH, { model: "slow/late", messages: [{ role: "user", content: "hello" }] });
    expect(res.status).toBe(504);
    expect(envelope(res)).toMatchObject({ type: "timeout_error", code: "timeout", param: null });
    expect(String(envelope(res).message)).toContain(`${TIMEOUT_MS} ms`);
    expect(res.ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    expect(res.ms).toBeLessThan(TIMEOUT_MS + 2_000); // not when the model would have answered (10 s)
  });

  it("also before the first token of a stream: 504, not an event stream", async () => {
    const res = await rest(m.httpUrl, "/v1/chat/completions", AUTH, { model: "slow/late", stream: true, messages: [{ role: "user", content: "hello" }] });
    expect(res.status).toBe(504);
    expect(envelope(res).code).toBe("timeout");
  });

  it("ends a stream that had started with an SSE error event and no [DONE]", async () => {
    const res = await rest(m.httpUrl, "/v1/chat/completions", AUTH, { model: "slow/dribble", stream: true, messages: [{ role: "user", content: "hello" }] });
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^text\/event-stream/);
    const all = events(res.raw);
    const text = all.map((e) => (typeof e === "string" ? "" : (e.choices?.[0]?.delta?.content ?? ""))).join("");
    expect(text.length).toBeGreaterThan(10); // the answer had started
    expect(all).not.toContain("[DONE]");
    expect(all.at(-1)).toEqual({ error: { type: "timeout_error", code: "timeout", param: null, message: `the request took longer than ${TIMEOUT_MS} ms` } });
    expect(res.ms).toBeLessThan(TIMEOUT_MS + 2_000);
  });
});

describe("a client that hangs up mid-stream (five processes)", () => {
  it("REST: the upstream request is cancelled within a second", async () => {
    const before = upstream.calls.length;
    const hungUpAt = await hangUpAfter(m.httpUrl, "up/stream", 3);
    const call = await upstream.nthCall(before + 1);
    for (let i = 0; i < 40 && call.abortedAt === undefined; i++) await new Promise((r) => setTimeout(r, 50));
    expect(call.abortedAt, "the upstream call was never cancelled").toBeDefined();
    expect(call.abortedAt! - hungUpAt).toBeLessThan(1_000);
    expect(call.chunksSent).toBeLessThan(100);
  });

  it("gRPC: a cancelled StreamComplete cancels the upstream request within a second", async () => {
    const before = upstream.calls.length;
    const cancelledAt = await cancelGrpcAfter(m.grpcUrl, "up/stream", 3);
    const call = await upstream.nthCall(before + 1);
    for (let i = 0; i < 40 && call.abortedAt === undefined; i++) await new Promise((r) => setTimeout(r, 50));
    expect(call.abortedAt, "the upstream call was never cancelled").toBeDefined();
    expect(call.abortedAt! - cancelledAt).toBeLessThan(1_000);
  });
});

describe("a client that hangs up mid-stream (one process, its log read)", () => {
  let local: InProcessMesh;
  let own: SlowUpstream;
  beforeAll(async () => {
    own = await startSlowUpstream();
    // The default request timeout (5 min): nothing but the hang-up can end these calls early.
    local = await startInProcessMesh({ ...settings(own), limits: {} });
  });
  afterAll(async () => {
    await local?.close();
    await own?.close();
  });

  const requestLine = (api: string, after: number) => local.logs.slice(after).find((l) => l.msg === "request" && l.api === api);

  async function logged(api: string, after: number): Promise<Record<string, unknown>> {
    for (let i = 0; i < 40 && !requestLine(api, after); i++) await new Promise((r) => setTimeout(r, 50));
    return requestLine(api, after)!;
  }

  it("REST: logs status 499 for the request and cancels the upstream call within a second", async () => {
    const mark = local.logs.length;
    const hungUpAt = await hangUpAfter(local.httpUrl, "up/stream", 3);
    const call = await own.nthCall(1);
    for (let i = 0; i < 40 && call.abortedAt === undefined; i++) await new Promise((r) => setTimeout(r, 50));
    expect(call.abortedAt! - hungUpAt).toBeLessThan(1_000);
    expect(await logged("openai", mark)).toMatchObject({ status: 499, error: "client_closed_request", tenant: "team-a", key_id: sha(KEY).slice(0, 12) });
  });

  it("gRPC: logs status 499 for a cancelled StreamComplete and cancels the upstream call within a second", async () => {
    const mark = local.logs.length;
    const cancelledAt = await cancelGrpcAfter(local.grpcUrl, "up/stream", 3);
    const call = await own.nthCall(2);
    for (let i = 0; i < 40 && call.abortedAt === undefined; i++) await new Promise((r) => setTimeout(r, 50));
    expect(call.abortedAt! - cancelledAt).toBeLessThan(1_000);
    expect(await logged("grpc", mark)).toMatchObject({ status: "499", error: "client_closed_request", model: "up/stream", tenant: "team-a", method: "StreamComplete" });
  });
});

describe("shutdown", () => {
  it("the gateway process says NOT_SERVING on SIGTERM, while it drains", async () => {
    const own = await startTestMesh({ limits: { shutdown_grace_ms: 3_000 } });
    try {
      const h = createServiceClient(health.Health, own.grpcUrl);
      const seen: ServingStatus[] = [];
      for await (const r of h.client.watch({ service: "switchyard.gateway.v1.GatewayService" })) {
        seen.push(r.status);
        if (seen.length === 1) own.mesh.kill("gateway", "SIGTERM");
        if (seen.length === 2) break;
      }
      expect(seen).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
      h.close();
    } finally {
      await own.stop();
    }
  }, 60_000);
});
