import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setTimeout as sleep } from "node:timers/promises";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { provider } from "@switchyard/proto";
import { createLogger } from "@switchyard/telemetry";
import { createRpcServer, createServiceClient, HealthStatus, type RpcServer } from "../src/index.js";

/**
 * A caller that stops reading a server stream must stop the handler too: the provider's handler
 * is what holds an upstream request open, and an unread answer is still paid for. Every way a
 * stream reaches the server (the lean Connect path, gRPC, connect-node) must abort the handler's
 * signal when the caller cancels.
 */
let server: RpcServer;
let url: string;
/** When each call's handler saw its signal abort (by call number). */
const abortedAt = new Map<number, number>();
let calls = 0;

beforeAll(async () => {
  server = createRpcServer({
    name: "test",
    host: "127.0.0.1",
    port: 0,
    health: new HealthStatus([]),
    logger: createLogger({ service: "test", level: "error" }),
    routes: (router) =>
      router.service(provider.ProviderService, {
        streamGenerate: async function* (_req, ctx) {
          const n = ++calls;
          ctx.signal.addEventListener("abort", () => abortedAt.set(n, performance.now()), { once: true });
          for (let i = 0; i < 200; i++) {
            await sleep(20);
            yield { event: { case: "delta" as const, value: { text: `${i}` } } };
          }
        },
      }),
  });
  url = `http://127.0.0.1:${(await server.listen()).port}`;
});
afterAll(() => server.close(100));

/** Waits up to a second for the handler of call `n` to see its signal abort; how long after `since`. */
async function handlerAbortedAfter(n: number, since: number): Promise<number | undefined> {
  for (let i = 0; i < 50 && !abortedAt.has(n); i++) await sleep(20);
  const at = abortedAt.get(n);
  return at === undefined ? undefined : at - since;
}

describe("a caller that cancels a server stream stops its handler", () => {
  it.each([
    ["the lean client (binary Connect)", () => createServiceClient(provider.ProviderService, url).client],
    ["connect-node, Connect protocol", () => createClient(provider.ProviderService, createConnectTransport({ baseUrl: url, httpVersion: "2", useBinaryFormat: true }))],
    ["connect-node, gRPC protocol", () => createClient(provider.ProviderService, createGrpcTransport({ baseUrl: url }))],
  ] as const)("%s: by its signal", async (_name, client) => {
    const n = calls + 1;
    const controller = new AbortController();
    let cancelledAt = 0;
    let seen = 0;
    await (async () => {
      for await (const _ of client().streamGenerate({}, { signal: controller.signal })) {
        if (++seen === 3) {
          cancelledAt = performance.now();
          controller.abort();
        }
      }
    })().catch(() => {});
    const after = await handlerAbortedAfter(n, cancelledAt);
    expect(after, "the handler's signal never aborted").toBeDefined();
    expect(after!).toBeLessThan(200);
  });

  it("the lean client: by leaving the loop (the iterator's return)", async () => {
    const n = calls + 1;
    const c = createServiceClient(provider.ProviderService, url);
    let cancelledAt = 0;
    let seen = 0;
    for await (const _ of c.client.streamGenerate({})) {
      if (++seen === 3) {
        cancelledAt = performance.now();
        break;
      }
    }
    const after = await handlerAbortedAfter(n, cancelledAt);
    expect(after, "the handler's signal never aborted").toBeDefined();
    expect(after!).toBeLessThan(200);
    c.close();
  });

  it("@grpc/grpc-js: by call.cancel()", async () => {
    const n = calls + 1;
    const client = new grpc.Client(url.replace("http://", ""), grpc.credentials.createInsecure());
    const call = client.makeServerStreamRequest(
      "/switchyard.provider.v1.ProviderService/StreamGenerate",
      (m: provider.StreamGenerateRequest) => Buffer.from(toBinary(provider.StreamGenerateRequestSchema, m)),
      (b: Buffer) => fromBinary(provider.StreamGenerateResponseSchema, b),
      create(provider.StreamGenerateRequestSchema, {}),
      new grpc.Metadata(),
    );
    const cancelledAt = await new Promise<number>((resolve) => {
      let seen = 0;
      call.on("data", () => {
        if (++seen === 3) {
          const at = performance.now();
          call.cancel();
          resolve(at);
        }
      });
      call.on("error", () => {});
    });
    const after = await handlerAbortedAfter(n, cancelledAt);
    client.close();
    expect(after, "the handler's signal never aborted").toBeDefined();
    expect(after!).toBeLessThan(200);
  });
});
