import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, createServer, type TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { meshMayCall, peerIdentity } from "@switchyard/rpc";
import { CHART, helmTemplate, loadValues } from "./lib/helm.js";
import type { KubeObject } from "./lib/kube.js";
import { issueCertificates, issueFromSpec } from "./lib/nats.js";
import { deployedServices } from "./lib/security.js";
import { tool } from "./lib/tools.js";

/**
 * The chart's Certificates, issued as cert-manager would from their specs, against the services'
 * own TLS rules (libs/rpc/src/tls.ts): the gateway, calling an internal service by the host of its
 * SWITCHYARD_<SERVICE>_URL, verifies the server's name and is recognised as "gateway", whom the
 * service answers; another service's certificate is recognised as itself and refused.
 */
const helm = tool("helm");
const openssl = tool("openssl", ["version"]);
const ciDefault = loadValues(readFileSync(join(CHART, "ci", "default-values.yaml"), "utf8"));

describe.skipIf(helm.skip || openssl.skip)("mesh certificates as the chart asks cert-manager for them", () => {
  let dir: string;
  let objects: KubeObject[];
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "switchyard-mesh-"));
    issueCertificates(dir, []);
    objects = await helmTemplate(ciDefault);
    for (const c of objects.filter((o) => o.kind === "Certificate" && !o.spec.isCA)) issueFromSpec(dir, c.metadata.name, c.spec);
  });
  afterAll(() => dir && rmSync(dir, { recursive: true, force: true }));

  /** One TLS handshake: `client`'s certificate to a server holding `server`'s, at `host`; what the server makes of the caller. */
  async function call(client: string, server: string, host: string): Promise<{ peer: string; error?: string }> {
    const file = (n: string, ext: string) => readFileSync(join(dir, `${n}-mesh.${ext}`));
    const ca = readFileSync(join(dir, "ca.crt"));
    return new Promise((resolve) => {
      let peer = "";
      const srv = createServer({ ca, cert: file(server, "crt"), key: file(server, "key"), requestCert: true, rejectUnauthorized: true }, (socket: TLSSocket) => {
        peer = peerIdentity(socket);
        socket.end();
      });
      srv.listen(0, "127.0.0.1", () => {
        const { port } = srv.address() as { port: number };
        const socket = connect({ host: "127.0.0.1", port, servername: host, ca, cert: file(client, "crt"), key: file(client, "key") });
        const done = (error?: string) => {
          socket.destroy();
          srv.close();
          resolve({ peer, ...(error ? { error } : {}) });
        };
        socket.on("secureConnect", () => socket.once("end", () => done()).resume());
        socket.on("error", (e) => done(e.message));
      });
    });
  }

  it("the gateway reaches each internal service by its URL's host and is answered as the gateway", async () => {
    const gateway = deployedServices(objects).services.find((s) => s.name === "gateway")!;
    for (const name of ["classifier", "policy", "cache", "provider", "ledger"]) {
      const host = new URL(gateway.env[`SWITCHYARD_${name.toUpperCase()}_URL`]!).hostname;
      const { peer, error } = await call("gateway", name, host);
      expect(error, name).toBeUndefined();
      expect(peer, name).toBe("gateway");
      expect(meshMayCall(peer, `switchyard.${name}.v1.${name[0]!.toUpperCase()}${name.slice(1)}Service`), name).toBe(true);
    }
  });

  it("another service's certificate is recognised as that service and refused; health answers any mesh certificate", async () => {
    const { peer, error } = await call("provider", "cache", "cache");
    expect(error).toBeUndefined();
    expect(peer).toBe("provider");
    expect(meshMayCall(peer, "switchyard.cache.v1.CacheService")).toBe(false);
    expect(meshMayCall(peer, "grpc.health.v1.Health")).toBe(true);
  });

  it("the ledger answers only the gateway: no other service reaches the books", async () => {
    for (const caller of ["classifier", "policy", "cache", "provider"]) {
      const { peer, error } = await call(caller, "ledger", "ledger");
      expect(error, caller).toBeUndefined();
      expect(peer, caller).toBe(caller);
      expect(meshMayCall(peer, "switchyard.ledger.v1.LedgerService"), caller).toBe(false);
    }
  });

  it("a server certificate for another name is refused by the client", async () => {
    expect((await call("gateway", "policy", "classifier")).error).toMatch(/Hostname\/IP does not match|altnames/);
  });
});
