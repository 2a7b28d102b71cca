import { afterEach, describe, expect, it } from "vitest";
import * as http2 from "node:http2";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { health } from "@switchyard/proto";
import { createLogger } from "@switchyard/telemetry";
import { createRpcServer, createServiceClient, HealthStatus, ServingStatus, type RpcServer } from "../src/index.js";

const logger = createLogger({ service: "test", level: "error" });
let server: RpcServer | undefined;
afterEach(async () => server?.close(100));

async function start(): Promise<{ port: number; httpPort: number; status: HealthStatus }> {
  const status = new HealthStatus(["switchyard.test.v1.TestService"]);
  server = createRpcServer({
    name: "test",
    host: "127.0.0.1",
    port: 0,
    httpPort: 0,
    routes: () => {},
    health: status,
    logger,
    httpFallback: (req, res) => {
      if (req.url !== "/metrics") return false;
      res.end("up 1\n");
      return true;
    },
  });
  const { port, httpPort } = await server.listen();
  return { port, httpPort: httpPort!, status };
}

describe("rpc server", () => {
  it("answers grpc.health.v1 over gRPC (HTTP/2) and Connect (HTTP/1.1) ", async () => {
    const { port, httpPort } = await start();
    const grpc = createServiceClient(health.Health, `http://127.0.0.1:${port}`);
    expect((await grpc.client.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    const h1 = createClient(health.Health, createConnectTransport({ baseUrl: `http://127.0.0.1:${httpPort}`, httpVersion: "1.1" }));
    expect((await h1.check({ service: "switchyard.test.v1.TestService" })).status).toBe(ServingStatus.SERVING);
    await expect(h1.check({ service: "nope" })).rejects.toThrow(/unknown service "nope"/);
    grpc.close();
  });

  it("serves plain HTTP/1.1 requests through the fallback and 404s the rest", async () => {
    const { httpPort } = await start();
    expect(await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text()).toBe("up 1\n");
    expect((await fetch(`http://127.0.0.1:${httpPort}/other`)).status).toBe(404);
  });

  it("reports a status change to watchers", async () => {
    const { port, status } = await start();
    const grpc = createServiceClient(health.Health, `http://127.0.0.1:${port}`);
    const seen: ServingStatus[] = [];
    for await (const r of grpc.client.watch({ service: "switchyard.test.v1.TestService" })) {
      seen.push(r.status);
      if (seen.length === 1) status.set(ServingStatus.NOT_SERVING, "switchyard.test.v1.TestService");
      if (seen.length === 2) break;
    }
    expect(seen).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    grpc.close();
  });

  // Load balancers and Kubernetes' grpc probe take a replica out of rotation on NOT_SERVING: it
  // must come from close() itself, at the start of the grace period, not only when the process is gone.
  it.each([
    ["gRPC over HTTP/2", "h2"],
    ["Connect over HTTP/1.1", "h1"],
  ] as const)("says NOT_SERVING to a watcher (%s) as soon as close() starts, while the grace period runs", async (_name, port) => {
    const ports = await start();
    const closing = server!;
    server = undefined;
    const client =
      port === "h2"
        ? createClient(health.Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${ports.port}` }))
        : createClient(health.Health, createConnectTransport({ baseUrl: `http://127.0.0.1:${ports.httpPort}`, httpVersion: "1.1" }));
    const seen: { status: ServingStatus; at: number }[] = [];
    let closeStartedAt = 0;
    let closed: Promise<void> | undefined;
    const graceMs = 900;
    try {
      for await (const r of client.watch({ service: "" })) {
        seen.push({ status: r.status, at: performance.now() });
        if (seen.length === 1) {
          closeStartedAt = performance.now();
          // The watch is an in-flight stream: the server waits for it up to graceMs.
          closed = closing.close(graceMs);
        }
        if (seen.length === 2) break;
      }
    } catch {
      // cut at the end of the grace period without a second status: the check below fails
    }
    expect(seen.map((s) => s.status)).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    expect(seen[1]!.at - closeStartedAt).toBeLessThan(graceMs / 3);
    await closed;
  });
});

describe("connection age", () => {
  it("closes an HTTP/2 connection gracefully once it is old, and the client carries on over a new one", async () => {
    const status = new HealthStatus([]);
    const aged = createRpcServer({ name: "t", host: "127.0.0.1", port: 0, routes: () => {}, health: status, logger, maxConnectionAgeMs: 100 });
    const { port } = await aged.listen();
    const raw = http2.connect(`http://127.0.0.1:${port}`);
    const goaway = new Promise<number>((resolve) => raw.once("goaway", (code: number) => resolve(code)));
    expect(await goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
    raw.destroy();
    const grpc = createServiceClient(health.Health, `http://127.0.0.1:${port}`);
    expect((await grpc.client.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    await new Promise((r) => setTimeout(r, 300));
    expect((await grpc.client.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    grpc.close();
    await aged.close(100);
  });
});
