import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { policy, provider } from "@switchyard/proto";
import { createLogger } from "@switchyard/telemetry";
import { createRpcServer, createServiceClient, HealthStatus, type RpcServer } from "../src/index.js";

/**
 * The lean path speaks the same wire protocols as connect-node: gRPC (what @grpc/grpc-js and
 * every gRPC library send) and binary Connect. Each client here is a real implementation of its
 * protocol, not ours.
 */
describe("the lean RPC path", () => {
  let server: RpcServer;
  let port: number;
  beforeAll(async () => {
    server = createRpcServer({
      name: "test",
      host: "127.0.0.1",
      port: 0,
      health: new HealthStatus([]),
      logger: createLogger({ service: "test", level: "error" }),
      routes: (router) => {
        router.service(policy.PolicyService, {
          route: (req) => {
            if (req.tenant === "missing") throw new ConnectError("no such tier: ü%", Code.NotFound);
            return { plan: { tier: req.tier, reason: `for ${req.tenant}`, routes: [{ provider: "p", model: "m" }] } };
          },
          listModels: async (_req, ctx) => {
            await new Promise((r) => setTimeout(r, 2_000));
            return ctx.signal.aborted ? { models: [] } : { models: [{ provider: "late" }] };
          },
        });
        router.service(provider.ProviderService, {
          streamGenerate: async function* (req, ctx) {
            ctx.responseHeader.set("x-route", "p/m");
            for (const word of ["a ", "b ", "c"]) yield { event: { case: "delta" as const, value: { text: word } } };
            if (req.model === "break") throw new ConnectError("upstream broke", Code.Unavailable);
            ctx.responseTrailer.set("x-cost", "42");
            yield { event: { case: "finish" as const, value: { finishReason: "stop" } } };
          },
        });
      },
    });
    ({ port } = await server.listen());
  });
  afterAll(() => server.close(100));

  const grpcClient = () => new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const ser = <S extends DescMessage>(schema: S) => (m: unknown) => Buffer.from(toBinary(schema, create(schema, m as never)));
  const de = <S extends DescMessage>(schema: S) => (b: Buffer) => fromBinary(schema, b);

  it("answers unary gRPC calls from @grpc/grpc-js, and errors with their code and message", async () => {
    const c = grpcClient();
    const call = (tenant: string) =>
      new Promise<{ err: grpc.ServiceError | null; res?: policy.RouteResponse }>((resolve) =>
        c.makeUnaryRequest("/switchyard.policy.v1.PolicyService/Route", ser(policy.RouteRequestSchema), de(policy.RouteResponseSchema), { tenant, tier: "simple" }, (err, res) => resolve({ err, res })),
      );
    const ok = await call("acme");
    expect(ok.err).toBeNull();
    expect(ok.res?.plan?.reason).toBe("for acme");
    const bad = await call("missing");
    expect(bad.err?.code).toBe(grpc.status.NOT_FOUND);
    expect(bad.err?.details).toBe("no such tier: ü%");
    c.close();
  });

  it("streams to @grpc/grpc-js with headers and trailers, and ends a broken stream with its status", async () => {
    const c = grpcClient();
    const run = (model: string) =>
      new Promise<{ texts: string[]; headers?: grpc.Metadata; trailers?: grpc.Metadata; err?: grpc.ServiceError }>((resolve) => {
        const texts: string[] = [];
        let headers: grpc.Metadata | undefined;
        const s = c.makeServerStreamRequest("/switchyard.provider.v1.ProviderService/StreamGenerate", ser(provider.StreamGenerateRequestSchema), de(provider.StreamGenerateResponseSchema), { model });
        s.on("metadata", (md: grpc.Metadata) => (headers = md));
        s.on("data", (m: provider.StreamGenerateResponse) => {
          if (m.event.case === "delta") texts.push(m.event.value.text);
        });
        s.on("status", (st: grpc.StatusObject) => {
          if (st.code === grpc.status.OK) resolve({ texts, headers, trailers: st.metadata });
        });
        s.on("error", (err: grpc.ServiceError) => resolve({ texts, err }));
      });
    const ok = await run("m");
    expect(ok.texts.join("")).toBe("a b c");
    expect(ok.headers?.get("x-route")).toEqual(["p/m"]);
    expect(ok.trailers?.get("x-cost")).toEqual(["42"]);
    const broken = await run("break");
    expect(broken.texts.join("")).toBe("a b c");
    expect(broken.err?.code).toBe(grpc.status.UNAVAILABLE);
    c.close();
  });

  it("ends a call at its gRPC deadline and tells the handler", async () => {
    const c = grpcClient();
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      c.makeUnaryRequest("/switchyard.policy.v1.PolicyService/ListModels", ser(policy.ListModelsRequestSchema), de(policy.ListModelsResponseSchema), {}, { deadline: Date.now() + 200 }, (e) => resolve(e)),
    );
    expect(err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    c.close();
  });

  it("serves Connect-ES (Connect and gRPC protocols) and the lean client alike", async () => {
    for (const transport of [createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "2", useBinaryFormat: true }), createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` })]) {
      const c = createClient(policy.PolicyService, transport);
      expect((await c.route({ tenant: "x", tier: "t" })).plan?.reason).toBe("for x");
      await expect(c.route({ tenant: "missing" })).rejects.toMatchObject({ code: Code.NotFound });
      let text = "";
      for await (const m of createClient(provider.ProviderService, transport).streamGenerate({ model: "m" })) if (m.event.case === "delta") text += m.event.value.text;
      expect(text).toBe("a b c");
    }
    const lean = createServiceClient(provider.ProviderService, `http://127.0.0.1:${port}`);
    let trailer = "";
    const texts: string[] = [];
    for await (const m of lean.client.streamGenerate({ model: "m" }, { onTrailer: (t) => (trailer = t.get("x-cost") ?? "") })) if (m.event.case === "delta") texts.push(m.event.value.text);
    expect(texts.join("")).toBe("a b c");
    expect(trailer).toBe("42");
    const e = await (async () => {
      for await (const _ of lean.client.streamGenerate({ model: "break" })) void _;
    })().catch((x: unknown) => ConnectError.from(x));
    expect(e?.code).toBe(Code.Unavailable);
    lean.close();
  });
});
