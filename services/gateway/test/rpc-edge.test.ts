import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import * as http from "node:http";
import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { context, propagation, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { gateway as pb } from "@switchyard/proto";
import { startTestGateway, type TestGateway } from "./rpc-harness.js";

const KEY = "sk-test-rpc-7a6b5c4d3e2f1a0b";
const OTHER_KEY = "sk-test-rpc-other-1111111111";
const sha = (k: string) => createHash("sha256").update(k).digest("hex");

// A recording tracer (this file's own), so spans, parents and links can be checked.
const exporter = new InMemorySpanExporter();
trace.disable();
context.disable();
propagation.disable();
new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).register({ propagator: new W3CTraceContextPropagator() });

const REQUEST = { messages: [{ role: "user", content: "hello" }] };
const AUTH = { authorization: `Bearer ${KEY}` };

/** Every way a client reaches GatewayService: each protocol on each port that serves it. */
function transports(g: TestGateway): [string, Transport][] {
  return [
    ["gRPC on the HTTP/2 port", createGrpcTransport({ baseUrl: g.h2Url })],
    ["Connect (binary) on the HTTP/2 port", createConnectTransport({ baseUrl: g.h2Url, httpVersion: "2", useBinaryFormat: true })],
    ["Connect (JSON) on the HTTP/1.1 port", createConnectTransport({ baseUrl: g.h1Url, httpVersion: "1.1" })],
    ["gRPC-Web on the HTTP/1.1 port", createGrpcWebTransport({ baseUrl: g.h1Url, httpVersion: "1.1" })],
  ];
}

/** Reads a whole StreamComplete and the response headers. */
async function streamed(c: Client<typeof pb.GatewayService>, headers: Record<string, string>): Promise<{ text: string; completion?: pb.Completion; header: Headers }> {
  let header = new Headers();
  let text = "";
  let completion: pb.Completion | undefined;
  for await (const m of c.streamComplete(REQUEST, { headers, onHeader: (h) => (header = h) })) {
    text += m.text;
    if (m.completion) completion = m.completion;
  }
  return { text, completion, header };
}

describe("API keys on the RPC APIs", () => {
  let g: TestGateway;
  beforeAll(async () => {
    g = await startTestGateway({ tenants: [{ name: "team-a", api_key_sha256: [sha(KEY)] }, { name: "team-b", api_key_sha256: [sha(OTHER_KEY)] }] });
  });
  afterAll(() => g.close());

  const requestLines = () => g.logs.filter((l) => l.msg === "request" && l.api === "grpc");

  it.each([0, 1, 2, 3])("refuses a missing and a wrong key with exactly UNAUTHENTICATED, and serves the right one (transport %i)", async (i) => {
    const [name, transport] = transports(g)[i]!;
    const c = createClient(pb.GatewayService, transport);
    const calls = g.upstreamCalls.length;
    for (const [headers, message] of [
      [{}, /an API key is required/],
      [{ authorization: "Bearer sk-test-not-a-key" }, /the API key is not valid/],
      [{ authorization: KEY }, /an API key is required/], // not a Bearer credential
    ] as const) {
      const unary = await c.complete(REQUEST, { headers }).then(() => undefined, (e: unknown) => ConnectError.from(e));
      expect(unary?.code, `${name} unary ${JSON.stringify(headers)}`).toBe(Code.Unauthenticated);
      expect(unary?.rawMessage).toMatch(message);
      const stream = await streamed(c, headers).then(() => undefined, (e: unknown) => ConnectError.from(e));
      expect(stream?.code, `${name} stream ${JSON.stringify(headers)}`).toBe(Code.Unauthenticated);
    }
    expect(g.upstreamCalls.length).toBe(calls); // nothing refused reached the provider
    const ok = await streamed(c, { authorization: `Bearer ${KEY}` });
    expect(ok.text).toBe("hi there");
    expect(ok.completion?.route?.model).toBe("sim/a");
    expect((await c.complete(REQUEST, { headers: { authorization: `Bearer ${OTHER_KEY}` } })).text).toBe("hi there");
  });

  it("answers a Connect call without a key with HTTP 401 and the Connect error body", async () => {
    const res = await fetch(`${g.h1Url}/switchyard.gateway.v1.GatewayService/Complete`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer sk-test-not-a-key" },
      body: JSON.stringify(REQUEST),
    });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ code: "unauthenticated", message: "the API key is not valid" });
  });

  it("writes an audit line per call with its tenant and key id, and a refusal with neither; never a key", async () => {
    const c = createClient(pb.GatewayService, createGrpcTransport({ baseUrl: g.h2Url }));
    let requestId = "";
    await c.complete(REQUEST, { headers: { authorization: `Bearer ${OTHER_KEY}` }, onHeader: (h) => (requestId = h.get("x-switchyard-request-id") ?? "") });
    expect(requestId).toMatch(/^req_[0-9a-f]{24}$/);
    const line = requestLines().find((l) => l.request_id === requestId)!;
    expect(line).toMatchObject({ tenant: "team-b", key_id: sha(OTHER_KEY).slice(0, 12), status: "OK", method: "Complete", protocol: "grpc", model: "sim/a" });

    let refusedId = "";
    await streamed(c, { authorization: "Bearer sk-test-wrong-0000" }).catch((e: unknown) => (refusedId = ConnectError.from(e).metadata.get("x-switchyard-request-id") ?? ""));
    const refused = requestLines().find((l) => l.request_id === refusedId && refusedId !== "")!;
    expect(refused).toMatchObject({ tenant: "", key_id: "", status: "401", error: "invalid_api_key", method: "StreamComplete" });
    for (const raw of g.rawLogs) {
      expect(raw).not.toContain(KEY);
      expect(raw).not.toContain(OTHER_KEY);
      expect(raw).not.toContain("sk-test-wrong-0000");
      expect(raw).not.toContain(sha(OTHER_KEY)); // only the prefix is logged
    }
  });
});

describe("Host and Origin on the RPC APIs, as on REST", () => {
  /** A raw Connect call on the HTTP/1.1 port with the given Host and Origin: its status and body. */
  async function connectCall(g: TestGateway, headers: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
    const port = Number(new URL(g.h1Url).port);
    const body = JSON.stringify(REQUEST);
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: "127.0.0.1", port, method: "POST", path: "/switchyard.gateway.v1.GatewayService/Complete", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...headers }, agent: false },
        (res) => {
          let text = "";
          res.on("data", (c: Buffer) => (text += c.toString("utf8")));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  }

  /** A gRPC call on the HTTP/2 port with `:authority` set to `authority`. */
  async function grpcCode(g: TestGateway, authority: string): Promise<Code | undefined> {
    const client = new grpc.Client(new URL(g.h2Url).host, grpc.credentials.createInsecure(), { "grpc.default_authority": authority });
    const code = await new Promise<Code | undefined>((resolve) =>
      client.makeUnaryRequest("/switchyard.gateway.v1.GatewayService/Complete", (x: Buffer) => x, (x: Buffer) => x, Buffer.from(toBinary(pb.CompleteRequestSchema, create(pb.CompleteRequestSchema, REQUEST))), (err) =>
        resolve(err ? (err.code as number as Code) : undefined),
      ),
    );
    client.close();
    return code;
  }

  it("without tenant keys: only loopback Host names, and no browser Origin unless listed", async () => {
    const g = await startTestGateway({ gateway: { cors_origins: ["https://app.example.com"] } });
    try {
      const calls = g.upstreamCalls.length;
      const badHost = await connectCall(g, { host: "evil.example:8080" });
      expect(badHost.status).toBe(403);
      expect(badHost.body).toMatchObject({ code: "permission_denied", message: expect.stringMatching(/^Host "evil.example:8080" is not allowed/) });
      const badOrigin = await connectCall(g, { host: "localhost", origin: "https://evil.example" });
      expect(badOrigin.status).toBe(403);
      expect(badOrigin.body).toMatchObject({ code: "permission_denied", message: expect.stringMatching(/browser origin "https:\/\/evil.example" are not allowed/) });
      expect(g.upstreamCalls.length).toBe(calls); // refused before any work
      expect(await grpcCode(g, "evil.example")).toBe(Code.PermissionDenied);
      // Allowed: loopback names, a listed origin.
      for (const host of ["localhost:1234", "127.0.0.1", "[::1]:8080"]) expect((await connectCall(g, { host })).status, host).toBe(200);
      expect((await connectCall(g, { host: "localhost", origin: "https://app.example.com" })).status).toBe(200);
      expect(await grpcCode(g, "localhost")).toBeUndefined();
    } finally {
      await g.close();
    }
  });

  it("with tenant keys: any Host (the key is the credential), still no unlisted Origin", async () => {
    const g = await startTestGateway({ tenants: [{ name: "team-a", api_key_sha256: [sha(KEY)] }] });
    try {
      expect((await connectCall(g, { host: "gateway.internal.example", ...AUTH })).status).toBe(200);
      expect((await connectCall(g, { host: "gateway.internal.example", origin: "https://evil.example", ...AUTH })).status).toBe(403);
    } finally {
      await g.close();
    }
  });
});

describe("a client's traceparent on the RPC APIs is linked to, not adopted", () => {
  const CLIENT_TRACE = "5bf92f3577b34da6a3ce929d0e0e4737";
  const CLIENT_SPAN = "10f067aa0ba902b8";
  const traceparent = `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`;
  let g: TestGateway;
  beforeAll(async () => (g = await startTestGateway()));
  afterAll(() => g.close());

  const serverSpans = (traceId: string) => exporter.getFinishedSpans().filter((s) => s.name.startsWith("switchyard.gateway.v1.GatewayService/") && s.spanContext().traceId === traceId);

  it.each([0, 1, 2, 3])("starts a trace of its own with a link to the client's (transport %i)", async (i) => {
    const [name, transport] = transports(g)[i]!;
    const c = createClient(pb.GatewayService, transport);
    exporter.reset();
    const { header, text } = await streamed(c, { traceparent, tracestate: "vendor=client" });
    expect(text).toBe("hi there");
    const ours = header.get("traceparent")!.split("-")[1]!;
    expect(ours, name).not.toBe(CLIENT_TRACE);
    await new Promise((r) => setTimeout(r, 20)); // the span ends as the stream does
    expect(serverSpans(CLIENT_TRACE), name).toEqual([]);
    const [span] = serverSpans(ours);
    expect(span?.name).toBe("switchyard.gateway.v1.GatewayService/StreamComplete");
    expect(span!.parentSpanContext).toBeUndefined();
    expect(span!.links.map((l) => [l.context.traceId, l.context.spanId])).toEqual([[CLIENT_TRACE, CLIENT_SPAN]]);
    // Nothing the gateway did for the call joined the client's trace.
    expect(exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === CLIENT_TRACE)).toEqual([]);
  });

  it("does the same for unary Complete, and starts a plain root span when there is no traceparent", async () => {
    const c = createClient(pb.GatewayService, createGrpcTransport({ baseUrl: g.h2Url }));
    exporter.reset();
    let header = new Headers();
    await c.complete(REQUEST, { headers: { traceparent }, onHeader: (h) => (header = h) });
    const [span] = serverSpans(header.get("traceparent")!.split("-")[1]!);
    expect(span?.name).toBe("switchyard.gateway.v1.GatewayService/Complete");
    expect(span!.links.map((l) => l.context.traceId)).toEqual([CLIENT_TRACE]);
    await c.complete(REQUEST, { onHeader: (h) => (header = h) });
    const [plain] = serverSpans(header.get("traceparent")!.split("-")[1]!);
    expect(plain!.links).toEqual([]);
    expect(plain!.parentSpanContext).toBeUndefined();
  });

  it("adopts it as parent only with telemetry.trust_client_traceparent: true", async () => {
    const trusting = await startTestGateway({ telemetry: { trust_client_traceparent: true } });
    try {
      for (const [name, transport] of transports(trusting)) {
        exporter.reset();
        const { header } = await streamed(createClient(pb.GatewayService, transport), { traceparent });
        expect(header.get("traceparent")!.split("-")[1], name).toBe(CLIENT_TRACE);
        await new Promise((r) => setTimeout(r, 20));
        const [span] = serverSpans(CLIENT_TRACE);
        expect(span!.parentSpanContext?.spanId, name).toBe(CLIENT_SPAN);
        expect(span!.links).toEqual([]);
      }
    } finally {
      await trusting.close();
    }
  });
});
