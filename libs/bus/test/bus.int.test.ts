import { afterEach, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { events } from "@switchyard/proto";
import { createLogger } from "@switchyard/telemetry";
import { Bus, natsAuth } from "../src/index.js";
import { priceKey } from "../src/keys.js";

const logger = createLogger({ service: "test", level: "error" });
const buses: Bus[] = [];
const servers: ChildProcess[] = [];
afterEach(async () => {
  await Promise.all(buses.splice(0).map((b) => b.close()));
  for (const s of servers.splice(0)) s.kill("SIGKILL");
});

function bus(url: string, bucket: string, subject: string): Bus {
  const b = Bus.start({ url, name: "test", priceBucket: bucket, healthSubject: subject, logger });
  buses.push(b);
  return b;
}

async function until(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

const price = (model: string, output: bigint) =>
  create(events.PriceUpdateSchema, { provider: "p", model, inputMicroUsdPerMtok: 1n, outputMicroUsdPerMtok: output, effectiveAtUnixMs: BigInt(Date.now()), source: "test" });

const unique = () => `t${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`;

describe("bus on the real NATS at 127.0.0.1:4222", () => {
  it("gives a late starter the whole price table at once, then live changes", async () => {
    const bucket = unique();
    const publisher = bus("nats://127.0.0.1:4222", bucket, `${bucket}.health`);
    await publisher.putPrices([price("a", 10n), price("b/with:odd.chars", 20n)]);
    const seen = new Map<string, bigint>();
    const late = bus("nats://127.0.0.1:4222", bucket, `${bucket}.health`);
    late.watchPrices((provider, model, u) => seen.set(`${provider}/${model}`, u?.outputMicroUsdPerMtok ?? -1n));
    await until(() => seen.size === 2);
    expect(seen.get("p/b/with:odd.chars")).toBe(20n);
    await publisher.putPrices([price("a", 11n)]);
    await until(() => seen.get("p/a") === 11n);
    const nc = await connect({ servers: "127.0.0.1:4222" });
    await (await new Kvm(nc).open(bucket)).destroy();
    await nc.close();
  });

  it("carries health updates between replicas and reports undecodable ones", async () => {
    const subject = `${unique()}.health`;
    const a = bus("nats://127.0.0.1:4222", unique(), subject);
    const b = bus("nats://127.0.0.1:4222", unique(), subject);
    const got: events.HealthUpdate[] = [];
    const invalid: string[] = [];
    b.subscribeHealth((u) => got.push(u));
    b.onInvalid((kind, reason) => invalid.push(`${kind}: ${reason}`));
    await until(() => a.state === "connected" && b.state === "connected");
    await new Promise((r) => setTimeout(r, 100));
    expect(a.publishHealth(create(events.HealthUpdateSchema, { provider: "p", model: "m", errorRate: 0.5 }))).toBe(true);
    await until(() => got.length === 1);
    expect(got[0]).toMatchObject({ provider: "p", model: "m", errorRate: 0.5 });
    const nc = await connect({ servers: "127.0.0.1:4222" });
    nc.publish(`${subject}.p`, new Uint8Array([0xff, 0xff, 0xff]));
    await nc.flush();
    await nc.close();
    await until(() => invalid.length === 1);
    expect(invalid[0]).toMatch(/^health: /);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function natsServer(port: number, dir: string): ChildProcess {
  const child = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], { stdio: "ignore", env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin` } });
  servers.push(child);
  return child;
}

describe("a NATS outage", () => {
  it("keeps last-known prices, drops publishes, reconnects and resyncs from KV when NATS returns", async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "switchyard-nats-test-"));
    const url = `nats://127.0.0.1:${port}`;
    let server = natsServer(port, dir);
    const bucket = unique();
    const publisher = bus(url, bucket, "h");
    const seen = new Map<string, bigint>();
    const watcher = bus(url, bucket, "h");
    watcher.watchPrices((_p, model, u) => seen.set(model, u?.outputMicroUsdPerMtok ?? -1n));
    await until(() => publisher.state === "connected" && watcher.state === "connected", 10_000);
    await publisher.putPrices([price("a", 10n)]);
    await until(() => seen.get("a") === 10n);

    server.kill("SIGKILL");
    await until(() => watcher.state === "reconnecting", 10_000);
    expect(seen.get("a")).toBe(10n); // last-known value kept
    expect(watcher.publishHealth(create(events.HealthUpdateSchema, { provider: "p", model: "a" }))).toBe(false);

    server = natsServer(port, dir); // same store: the bucket survives
    await until(() => publisher.state === "connected" && watcher.state === "connected", 15_000);
    await publisher.putPrices([price("a", 12n), price("b", 5n)]);
    await until(() => seen.get("a") === 12n && seen.get("b") === 5n, 10_000);
    rmSync(dir, { recursive: true, force: true });
  }, 40_000);
});

describe("a price change made while a watcher is cut off", () => {
  // The store survives its server; a second server on the same store takes the change while the
  // watcher's own server is down (as another node of a cluster would). The watcher hears nothing
  // live, and its KV watch does not survive either: the consumer behind it is gone by the time it
  // reconnects (as after an outage longer than the consumer's 5-minute inactivity limit, or with
  // the node that held it). Only a resync from the bucket on reconnect gives it the new table;
  // the client library's own recovery would take two missed 30 s heartbeats.
  it("reaches the watcher as soon as it reconnects, from the bucket", async () => {
    const [watcherPort, otherPort] = [await freePort(), await freePort()];
    const dir = mkdtempSync(join(tmpdir(), "switchyard-nats-resync-"));
    const bucket = unique();
    try {
      let server = natsServer(watcherPort, dir);
      const publisher = bus(`nats://127.0.0.1:${watcherPort}`, bucket, "h");
      const seen = new Map<string, bigint>();
      const watcher = bus(`nats://127.0.0.1:${watcherPort}`, bucket, "h");
      watcher.watchPrices((_p, model, u) => seen.set(model, u?.outputMicroUsdPerMtok ?? -1n));
      await until(() => publisher.state === "connected" && watcher.state === "connected", 10_000);
      await publisher.putPrices([price("a", 10n), price("gone", 7n)]);
      await until(() => seen.get("a") === 10n && seen.get("gone") === 7n);
      await publisher.close();

      server.kill("SIGKILL");
      await exited(server);
      await until(() => watcher.state === "reconnecting", 10_000);

      // The change, written through another server on the same store while the watcher is away.
      const other = natsServer(otherPort, dir);
      const nc = await connectWhenUp(otherPort);
      const kv = await new Kvm(nc).open(bucket);
      await kv.put(priceKey("p", "a"), toBinary(events.PriceUpdateSchema, price("a", 42n)));
      await kv.put(priceKey("p", "b"), toBinary(events.PriceUpdateSchema, price("b", 5n)));
      await kv.delete(priceKey("p", "gone"));
      const jsm = await jetstreamManager(nc);
      let consumers = 0;
      for await (const c of jsm.consumers.list(`KV_${bucket}`)) {
        await jsm.consumers.delete(`KV_${bucket}`, c.name);
        consumers++;
      }
      expect(consumers).toBe(1); // the watcher's
      await nc.close();
      other.kill("SIGTERM");
      await exited(other);
      expect(seen.get("a")).toBe(10n); // nothing reached the watcher meanwhile

      server = natsServer(watcherPort, dir);
      await until(() => watcher.state === "connected", 15_000);
      const reconnectedAt = Date.now();
      await until(() => seen.get("a") === 42n && seen.get("b") === 5n && seen.get("gone") === -1n, 10_000);
      // From the resync on reconnect, not from a consumer that finds its way back by itself later.
      expect(Date.now() - reconnectedAt).toBeLessThan(3_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once("exit", () => r()));
}

async function connectWhenUp(port: number) {
  for (let i = 0; ; i++) {
    try {
      return await connect({ servers: `127.0.0.1:${port}` });
    } catch (err) {
      if (i > 50) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

describe("NATS credentials", () => {
  it("connects with the configured user and the password from its environment variable, and not without it", async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "switchyard-nats-auth-"));
    const child = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir, "--user", "gateway", "--pass", "s3cret"], {
      stdio: "ignore",
      env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin` },
    });
    servers.push(child);
    const url = `nats://127.0.0.1:${port}`;
    const tls = { ca_file: "", cert_file: "", key_file: "" };
    const good = Bus.start({ url, name: "t", priceBucket: unique(), healthSubject: "h", logger, auth: natsAuth({ creds_file: "", user: "gateway", password_env: "NATS_PW", tls }, { NATS_PW: "s3cret" }) });
    const bad = Bus.start({ url, name: "t", priceBucket: unique(), healthSubject: "h", logger, auth: natsAuth({ creds_file: "", user: "gateway", password_env: "NATS_PW", tls }, { NATS_PW: "wrong" }) });
    try {
      await until(() => good.state === "connected", 10_000);
      await new Promise((r) => setTimeout(r, 1_000));
      expect(bad.state).not.toBe("connected");
    } finally {
      await good.close();
      await bad.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 20_000);
});
