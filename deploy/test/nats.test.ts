import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Bus, ensureUsageStream, natsAuth, usageSubject } from "@switchyard/bus";
import { events } from "@switchyard/proto";
import { createLogger } from "@switchyard/telemetry";
import { CHART, helmTemplate, loadValues } from "./lib/helm.js";
import type { KubeObject } from "./lib/kube.js";
import { issueCertificates, startNats, type NatsServer } from "./lib/nats.js";
import { deployedServices, readKey } from "./lib/security.js";
import { NATS_CLIENTS } from "./lib/services.js";
import { tool } from "./lib/tools.js";

/**
 * The bundled NATS's authorization, run for real: the chart's rendered nats.conf in a local
 * nats-server, and clients doing exactly what the services' bus does (libs/bus: KV create + watch
 * of the price bucket, health subscribe and publish; the usage stream: the gateway's acknowledged
 * publishes, the ledger's durable pull consumer) under each identity. Each service can do its
 * job, and nothing else: only the operator's "prices" identity writes prices, only the provider
 * publishes health, only the gateway publishes usage records and only the ledger consumes them,
 * and an unknown certificate or password does not connect.
 */
const helm = tool("helm");
const natsServer = tool("nats-server", ["--version"]);
const openssl = tool("openssl", ["version"]);
const BUCKET = "switchyard-prices";
const HEALTH = "switchyard.health";
/** The usage stream as the services' defaults name it (libs/config: ledger.*). */
const USAGE = { stream: "SWITCHYARD_USAGE", subject_prefix: "switchyard.usage", stream_max_age_hours: 168, consumer: "ledger" };
const ciDefault = loadValues(readFileSync(join(CHART, "ci", "default-values.yaml"), "utf8"));
const ciServiceMesh = loadValues(readFileSync(join(CHART, "ci", "service-mesh-values.yaml"), "utf8"));

function natsConf(objects: KubeObject[]): string {
  const conf = readKey(objects, { kind: "ConfigMap", name: "nats-config", key: "nats.conf" });
  if (!conf) throw new Error("the render has no ConfigMap nats-config with nats.conf");
  return conf;
}

/** A client that records the asynchronous permission errors the server sends it. */
interface Client {
  nc: NatsConnection;
  errors: string[];
}

async function client(server: NatsServer, options: Partial<ConnectionOptions>): Promise<Client> {
  const nc = await connect({ servers: `nats://127.0.0.1:${server.port}`, maxReconnectAttempts: 0, reconnect: false, timeout: 3_000, ...options });
  const errors: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === "error") errors.push(String((s as { error?: Error }).error?.message));
  })();
  return { nc, errors };
}

/** What libs/bus does for a service that watches prices and hears health; what it has seen so far. */
async function watchLikeTheBus(c: Client): Promise<{ prices: string[]; health: string[] }> {
  const seen = { prices: [] as string[], health: [] as string[] };
  const kv = await new Kvm(c.nc).create(BUCKET, { history: 5 });
  const watch = await kv.watch({ key: ">" });
  void (async () => {
    for await (const e of watch) seen.prices.push(`${e.key}=${e.string()}`);
  })();
  c.nc.subscribe(`${HEALTH}.>`, {
    callback: (_err, msg) => {
      seen.health.push(`${msg.subject}=${msg.string()}`);
    },
  });
  await c.nc.flush();
  return seen;
}

/** What the gateway's UsagePublisher does: make sure of the stream, then an acknowledged publish with the request id as message id. */
async function publishLikeTheGateway(nc: NatsConnection, tenant: string, requestId: string): Promise<void> {
  await ensureUsageStream(nc, USAGE);
  await jetstream(nc, { timeout: 3_000 }).publish(usageSubject(USAGE, tenant), new TextEncoder().encode(requestId), { msgID: requestId });
}

/**
 * What the ledger's UsageConsumer does: make sure of the stream, create (or look up and update)
 * its durable pull consumer, fetch a batch and ack each record. Returns the records fetched.
 */
async function consumeLikeTheLedger(nc: NatsConnection, expect: number): Promise<string[]> {
  await ensureUsageStream(nc, USAGE);
  const jsm = await jetstreamManager(nc, { timeout: 3_000 });
  const config = { ack_wait: 30_000_000_000, max_ack_pending: 2_000 };
  try {
    await jsm.consumers.info(USAGE.stream, USAGE.consumer);
    await jsm.consumers.update(USAGE.stream, USAGE.consumer, config);
  } catch {
    await jsm.consumers.add(USAGE.stream, { durable_name: USAGE.consumer, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, filter_subject: `${USAGE.subject_prefix}.>`, ...config });
  }
  const consumer = await jetstream(nc, { timeout: 3_000 }).consumers.get(USAGE.stream, USAGE.consumer);
  const records: string[] = [];
  const batch = await consumer.fetch({ max_messages: expect, expires: 1_000 });
  for await (const m of batch) {
    records.push(`${m.subject}=${m.string()}`);
    m.ack();
  }
  return records;
}

async function until(check: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * The services' own bus (libs/bus), connecting as each service's rendered config says
 * (`natsAuth(config.nats)`, with the pod's file paths moved to `files`): the policy and the
 * gateway see the prices the operator's bus puts and the health the provider's bus publishes.
 */
async function busesWork(server: NatsServer, objects: KubeObject[], local: (name: string, nats: any) => { nats: any; env: Record<string, string> }): Promise<void> {
  const logger = createLogger({ service: "deploy-test", level: "error" });
  const { services } = deployedServices(objects);
  const start = (name: string) => {
    const config = services.find((s) => s.name === name)?.config.nats ?? services[0]!.config.nats;
    const { nats, env } = local(name, config);
    // The ledger never reads prices (services/ledger: startBus(..., { prices: false })).
    return Bus.start({ url: `nats://127.0.0.1:${server.port}`, name, priceBucket: config.price_bucket, healthSubject: config.health_subject, logger, auth: natsAuth(nats, env), prices: name !== "ledger" });
  };
  const buses = ["policy", "gateway", "provider", "prices", "ledger"].map(start);
  const [policy, gateway, provider, prices, ledger] = buses as [Bus, Bus, Bus, Bus, Bus];
  try {
    const seen = { policy: [] as string[], gateway: [] as string[] };
    for (const [name, bus] of [["policy", policy], ["gateway", gateway]] as const) {
      bus.watchPrices((p, m, u) => seen[name].push(`${p}/${m}=${u?.outputMicroUsdPerMtok}`));
      bus.subscribeHealth((u) => seen[name].push(`health ${u.provider}/${u.model}`));
    }
    await until(() => buses.every((b) => b.state === "connected"), "every bus to connect");
    await prices.putPrices([create(events.PriceUpdateSchema, { provider: "sim", model: "sim-small", inputMicroUsdPerMtok: 1n, outputMicroUsdPerMtok: 7n, source: "deploy-test" })]);
    await until(() => provider.publishHealth(create(events.HealthUpdateSchema, { provider: "sim", model: "sim-small" })) && seen.policy.length >= 2 && seen.gateway.length >= 2, "prices and health to reach policy and gateway");
    for (const name of ["policy", "gateway"] as const) expect(seen[name], name).toEqual(expect.arrayContaining(["sim/sim-small=7", "health sim/sim-small"]));
    // The books: the gateway's bus connection publishes a usage record, the ledger's consumes it.
    await publishLikeTheGateway(gateway.connection!, "default", "req-bus-1");
    expect(await consumeLikeTheLedger(ledger.connection!, 1)).toEqual(["switchyard.usage.default=req-bus-1"]);
  } finally {
    for (const b of buses) await b.close();
  }
}

/** The checks every identity scheme must pass, given a way to connect as each identity. */
function permissionSuite(setup: () => Promise<{ server: NatsServer; as: (name: string) => Promise<Client>; services: string[] }>) {
  let server: NatsServer;
  let as: (name: string) => Promise<Client>;
  let services: string[];
  const clients: Client[] = [];
  const open = async (name: string) => {
    const c = await as(name);
    clients.push(c);
    return c;
  };
  beforeAll(async () => {
    ({ server, as, services } = await setup());
  });
  afterAll(async () => {
    for (const c of clients) await c.nc.close().catch(() => {});
    await server?.stop();
  });

  it("policy and gateway read every price, including those written before they started, and hear health; prices writes; provider publishes", async () => {
    const policy = await open(services.includes("policy") ? "policy" : "switchyard");
    const policySeen = await watchLikeTheBus(policy); // first to start: creates the bucket
    const prices = await open("prices");
    const kv = await new Kvm(prices.nc).create(BUCKET, { history: 5 });
    await kv.put("sim.sim-small", "1");
    const gateway = await open(services.includes("gateway") ? "gateway" : "switchyard");
    const gatewaySeen = await watchLikeTheBus(gateway);
    await kv.put("sim.sim-large", "2");
    const provider = await open(services.includes("provider") ? "provider" : "switchyard");
    // The bus opens the bucket on every connect, the provider too (and may be refused: it only publishes).
    await new Kvm(provider.nc).create(BUCKET, { history: 5 }).catch(() => undefined);
    provider.nc.publish(`${HEALTH}.sim`, "up");
    await provider.nc.flush();
    for (const [name, seen] of [["policy", policySeen], ["gateway", gatewaySeen]] as const) {
      await until(() => seen.prices.length === 2 && seen.health.length === 1, `${name} to see both prices and the health update`);
      expect(seen, name).toEqual({ prices: ["sim.sim-small=1", "sim.sim-large=2"], health: [`${HEALTH}.sim=up`] });
    }
    expect(policy.errors, "policy was refused nothing it needs").toEqual([]);
    expect(gateway.errors, "gateway was refused nothing it needs").toEqual([]);
    expect(prices.errors, "prices was refused nothing it needs").toEqual([]);
  });

  it("no service may write prices", async () => {
    for (const name of services) {
      const c = await open(name);
      const kv = await new Kvm(c.nc).create(BUCKET, { history: 5 }).catch(() => undefined);
      const put = kv ? kv.put("sim.sim-small", "0").then(() => "written", (e: Error) => e.message) : Promise.resolve("no bucket access");
      expect(await put, name).not.toBe("written");
    }
    const prices = await open("prices");
    const entry = await (await new Kvm(prices.nc).create(BUCKET, { history: 5 })).get("sim.sim-small");
    expect(entry?.string()).toBe("1");
  });

  it("the gateway's usage records reach the ledger's durable consumer, whichever of them creates the stream first", async () => {
    const ledger = await open(services.includes("ledger") ? "ledger" : "switchyard");
    expect(await consumeLikeTheLedger(ledger.nc, 1)).toEqual([]); // first to start: creates the stream and the consumer
    const gateway = await open(services.includes("gateway") ? "gateway" : "switchyard");
    await publishLikeTheGateway(gateway.nc, "default", "req-1");
    await publishLikeTheGateway(gateway.nc, "default", "req-1"); // a retried publish: stored once
    await publishLikeTheGateway(gateway.nc, "acme", "req-2");
    expect(await consumeLikeTheLedger(ledger.nc, 3)).toEqual(["switchyard.usage.default=req-1", "switchyard.usage.acme=req-2"]);
    expect(gateway.errors, "gateway was refused nothing it needs").toEqual([]);
    expect(ledger.errors, "ledger was refused nothing it needs").toEqual([]);
  });

  it("only the gateway publishes usage records, and only the ledger reads them", async () => {
    for (const name of services.filter((n) => n !== "gateway" && n !== "switchyard")) {
      const c = await open(name);
      c.nc.publish(`${USAGE.subject_prefix}.default`, `forged by ${name}`);
      await c.nc.flush();
      await until(() => c.errors.some((e) => /Permissions Violation for Publish/.test(e)), `${name}'s usage record to be refused`);
      if (name === "ledger") continue;
      const read = jetstreamManager(c.nc, { timeout: 1_000 }).then((jsm) => jsm.consumers.info(USAGE.stream, USAGE.consumer)).then(() => "read", (e: Error) => e.message);
      expect(await read, `${name} reading the ledger's consumer`).not.toBe("read");
    }
    const prices = await open("prices");
    expect(await jetstreamManager(prices.nc, { timeout: 1_000 }).then((jsm) => jsm.streams.info(USAGE.stream)).then(() => "read", (e: Error) => e.message), "the prices identity").not.toBe("read");
    const ledger = await open(services.includes("ledger") ? "ledger" : "switchyard");
    expect(await consumeLikeTheLedger(ledger.nc, 1), "no forged record reached the books").toEqual([]);
  });

  it("only the provider publishes health", async () => {
    const listener = await open(services.includes("policy") ? "policy" : "switchyard");
    const heard: string[] = [];
    listener.nc.subscribe(`${HEALTH}.>`, {
      callback: (_e, m) => {
        heard.push(m.string());
      },
    });
    await listener.nc.flush();
    for (const name of services.filter((n) => n !== "provider" && n !== "switchyard")) {
      const c = await open(name);
      c.nc.publish(`${HEALTH}.sim`, `forged by ${name}`);
      await c.nc.flush();
      await until(() => c.errors.some((e) => /Permissions Violation for Publish/.test(e)), `${name}'s publish to be refused`);
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(heard.filter((h) => h.startsWith("forged"))).toEqual([]);
  });
}

describe.skipIf(helm.skip || natsServer.skip || openssl.skip)("bundled NATS with mesh certificates (the chart's default)", () => {
  let dir: string;
  afterAll(() => dir && rmSync(dir, { recursive: true, force: true }));
  const identities = [...NATS_CLIENTS, "prices", "classifier", "cache"];

  permissionSuite(async () => {
    dir = mkdtempSync(join(tmpdir(), "switchyard-nats-"));
    issueCertificates(dir, identities);
    const server = await startNats(natsConf(await helmTemplate(ciDefault)), dir);
    const tls = (name: string) => ({ caFile: join(dir, "ca.crt"), certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`) });
    return { server, as: (name) => client(server, { tls: tls(name), name }), services: [...NATS_CLIENTS] };
  });

  it("the services' own bus connects with the credentials their rendered config names, and works", async () => {
    const objects = await helmTemplate(ciDefault);
    const server = await startNats(natsConf(objects), dir);
    try {
      await busesWork(server, objects, (name, nats) => ({
        nats: { ...nats, tls: { ca_file: join(dir, "ca.crt"), cert_file: join(dir, `${name}.crt`), key_file: join(dir, `${name}.key`) } },
        env: {},
      }));
    } finally {
      await server.stop();
    }
  });

  it("a mesh certificate of a service that does not use NATS, or no certificate, does not connect", async () => {
    const server = await startNats(natsConf(await helmTemplate(ciDefault)), dir);
    try {
      for (const name of ["classifier", "cache"]) {
        await expect(client(server, { tls: { caFile: join(dir, "ca.crt"), certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`) } }), name).rejects.toThrow(/Authorization Violation/);
      }
      await expect(client(server, { tls: { caFile: join(dir, "ca.crt") } })).rejects.toThrow();
      await expect(client(server, {})).rejects.toThrow();
    } finally {
      await server.stop();
    }
  });
});

describe.skipIf(helm.skip || natsServer.skip)("bundled NATS with passwords (mesh.tls.mode off)", () => {
  let dir: string;
  afterAll(() => dir && rmSync(dir, { recursive: true, force: true }));
  const passwords = { SWITCHYARD_PASSWORD: "services-password", PRICES_PASSWORD: "prices-password" };

  permissionSuite(async () => {
    dir = mkdtempSync(join(tmpdir(), "switchyard-nats-"));
    const server = await startNats(natsConf(await helmTemplate(ciServiceMesh)), dir, passwords);
    const pass: Record<string, string> = { switchyard: passwords.SWITCHYARD_PASSWORD, prices: passwords.PRICES_PASSWORD };
    return { server, as: (name) => client(server, { user: name, pass: pass[name] ?? "wrong" }), services: ["switchyard"] };
  });

  it("the services' own bus connects with the credentials their rendered config names, and works", async () => {
    const objects = await helmTemplate(ciServiceMesh);
    const server = await startNats(natsConf(objects), dir, passwords);
    try {
      await busesWork(server, objects, (name, nats) =>
        name === "prices" ? { nats: { ...nats, user: "prices" }, env: { NATS_PASSWORD: passwords.PRICES_PASSWORD } } : { nats, env: { NATS_PASSWORD: passwords.SWITCHYARD_PASSWORD } },
      );
    } finally {
      await server.stop();
    }
  });

  it("a wrong password does not connect", async () => {
    const server = await startNats(natsConf(await helmTemplate(ciServiceMesh)), dir, passwords);
    try {
      await expect(client(server, { user: "switchyard", pass: "guess" })).rejects.toThrow(/Authorization Violation/);
      await expect(client(server, {})).rejects.toThrow(/Authorization Violation/);
    } finally {
      await server.stop();
    }
  });
});

describe.skipIf(helm.skip)("one nats.conf", () => {
  it("deploy/docker/nats.conf is what the chart renders without mesh TLS (passwords)", async () => {
    expect(readFileSync(join(CHART, "..", "..", "docker", "nats.conf"), "utf8")).toBe(natsConf(await helmTemplate(ciServiceMesh)));
  });
});
