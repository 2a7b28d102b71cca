import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { cache, classifier, health, ledger, policy, provider } from "@switchyard/proto";
import { createServiceClient, generateMeshCertificates, meshFiles, ServingStatus } from "@switchyard/rpc";
import { startTestMesh, type TestMesh } from "./support.js";

/**
 * The internal services as an attacker on the same host (or another pod) sees them: every
 * internal port is called directly, without the gateway. Under `switchyard start` the mesh is
 * mutual TLS with a CA generated at start; only the gateway's certificate is accepted.
 */
describe("an authenticated mesh", () => {
  let m: TestMesh;
  let ca: string;
  const url = (name: "classifier" | "policy" | "cache" | "provider" | "ledger") => `http://127.0.0.1:${m.config.ports[name]}`;
  const sideUrl = (name: "classifier" | "policy" | "cache" | "provider" | "ledger") => `http://127.0.0.1:${m.config.ports[`${name}_http`]}`;
  const stored = { key: { tenant: "default", requestedModel: "switchyard/auto", messages: [{ role: "user", content: "poison" }] }, completion: { provider: "sim", model: "small", content: "attacker's answer", costMicroUsd: 999n } };

  beforeAll(async () => {
    m = await startTestMesh();
    ca = readFileSync(meshFiles(m.mesh.meshTlsDir!, "gateway").ca, "utf8");
  }, 60_000);
  afterAll(async () => m?.stop());

  const expectCode = async (call: Promise<unknown>, code: Code) => {
    const err = await call.then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(code);
  };

  it("refuses a caller with no certificate on every internal service, over TLS", async () => {
    const anon = { tls: { ca } };
    await expectCode(createServiceClient(cache.CacheService, url("cache"), anon).client.store(stored), Code.PermissionDenied);
    await expectCode(createServiceClient(cache.CacheService, url("cache"), anon).client.lookup({ key: stored.key }), Code.PermissionDenied);
    await expectCode(createServiceClient(policy.PolicyService, url("policy"), anon).client.route({ tenant: "default", tier: "complex" }), Code.PermissionDenied);
    await expectCode(createServiceClient(classifier.ClassifierService, url("classifier"), anon).client.classify({ messages: [{ role: "user", content: "hi" }], tenant: "default" }), Code.PermissionDenied);
    // The books: no one but the gateway may write records, read usage or mint keys.
    await expectCode(createServiceClient(ledger.LedgerService, url("ledger"), anon).client.createKey({ tenant: "default" }), Code.PermissionDenied);
    await expectCode(createServiceClient(ledger.LedgerService, url("ledger"), anon).client.record({ records: [{ requestId: "forged", tenant: "default" }] }), Code.PermissionDenied);
    await expectCode(createServiceClient(ledger.LedgerService, url("ledger"), anon).client.usage({}), Code.PermissionDenied);
    const stream = createServiceClient(provider.ProviderService, url("provider"), anon).client.streamGenerate({ provider: "sim", model: "large", messages: [{ role: "user", content: "free tokens" }] });
    await expectCode((async () => { for await (const _ of stream) void _; })(), Code.PermissionDenied);
  });

  it("refuses cleartext callers (h2c, gRPC) and serves no RPC on the HTTP/1.1 side ports", async () => {
    await expectCode(createServiceClient(cache.CacheService, url("cache")).client.lookup({ key: stored.key }), Code.Unavailable);
    const grpc = createClient(cache.CacheService, createGrpcTransport({ baseUrl: url("cache") }));
    await expect(grpc.lookup({ key: stored.key }, { timeoutMs: 2_000 })).rejects.toThrow();
    for (const name of ["classifier", "policy", "cache", "provider", "ledger"] as const) {
      const res = await fetch(`${sideUrl(name)}/switchyard.cache.v1.CacheService/Store`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("not_found");
      expect((await fetch(`${sideUrl(name)}/readyz`)).status).toBe(200);
    }
  });

  it("refuses a certificate from another CA, and a mesh certificate that is not the gateway's", async () => {
    const other = await generateMeshCertificates(["gateway"]);
    const forged = { tls: { ca, cert: other.identities.gateway!.cert, key: other.identities.gateway!.key } };
    // Refused at the handshake or at the call, never served.
    const forgedErr = await createServiceClient(cache.CacheService, url("cache"), forged).client.store(stored).then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect([Code.PermissionDenied, Code.Unavailable]).toContain(forgedErr?.code);
    const files = meshFiles(m.mesh.meshTlsDir!, "cache");
    const asCache = { tls: { ca, cert: readFileSync(files.cert, "utf8"), key: readFileSync(files.key, "utf8") } };
    await expectCode(createServiceClient(policy.PolicyService, url("policy"), asCache).client.route({ tenant: "default", tier: "complex" }), Code.PermissionDenied);
    await expectCode(createServiceClient(ledger.LedgerService, url("ledger"), asCache).client.listKeys({}), Code.PermissionDenied);
  });

  it("answers the gateway, and health checks from anyone, and no attacker's store ever reached the cache", async () => {
    const files = meshFiles(m.mesh.meshTlsDir!, "gateway");
    const asGateway = { tls: { ca, cert: readFileSync(files.cert, "utf8"), key: readFileSync(files.key, "utf8") } };
    const lookup = await createServiceClient(cache.CacheService, url("cache"), asGateway).client.lookup({ key: stored.key });
    expect(lookup.hit).toBe(false);
    const plan = await createServiceClient(policy.PolicyService, url("policy"), asGateway).client.route({ tenant: "default", tier: "simple" });
    expect(plan.plan?.routes.length).toBeGreaterThan(0);
    const status = await createServiceClient(health.Health, url("cache"), { tls: { ca } }).client.check({ service: "" });
    expect(status.status).toBe(ServingStatus.SERVING);
    const res = await fetch(`${m.httpUrl}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ messages: [{ role: "user", content: "hello" }] }) });
    expect(res.status).toBe(200);
    expect(((await (await fetch(`${sideUrl("cache")}/readyz`)).json()) as { checks: { mesh: string } }).checks.mesh).toBe("mutual TLS (callers: gateway)");
  });

  it("applies the edge's Host and Origin rules to RPCs on the public ports too (DNS rebinding, other origins)", async () => {
    const body = JSON.stringify({ messages: [{ role: "user", content: "hi" }] });
    const connect = (headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request(`${m.httpUrl}/switchyard.gateway.v1.GatewayService/Complete`, { method: "POST", headers: { "content-type": "application/json", ...headers } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end(body);
      });
    expect(await connect({ host: "evil.example" })).toBe(403);
    expect(await connect({ origin: "https://evil.example" })).toBe(403);
    expect(await connect({})).toBe(200);
    const c = new grpc.Client(m.grpcUrl.replace("http://", ""), grpc.credentials.createInsecure(), { "grpc.default_authority": "evil.example" });
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      c.makeUnaryRequest("/switchyard.gateway.v1.GatewayService/Complete", (x: Buffer) => x, (x: Buffer) => x, Buffer.alloc(0), (e) => resolve(e)),
    );
    expect(err?.code).toBe(grpc.status.PERMISSION_DENIED);
    c.close();
  });
});
