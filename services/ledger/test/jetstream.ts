import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toBinary } from "@bufbuild/protobuf";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Bus, ensureUsageStream, usageSubject } from "@switchyard/bus";
import { events } from "@switchyard/proto";
import { createLogger, type Logger, type Registry } from "@switchyard/telemetry";
import type { UsageConsumerSettings } from "../src/consumer.js";
import { NATS_URL, unique } from "./helpers.js";

/** Usage-stream settings no other test run shares. */
export function streamSettings(batchSize = 50): UsageConsumerSettings {
  const id = unique("t").replace(/[^A-Za-z0-9]/g, "_");
  return { stream: `LEDGER_${id}`, subject_prefix: `ledgertest.${id}`, stream_max_age_hours: 1, consumer: `ledger_${id}`, batch_size: batchSize };
}

/** A bus on `url` as the ledger has one (no price bucket). */
export function testBus(url = NATS_URL, logger: Logger = createLogger({ service: "ledger", level: "error" })): Bus {
  return Bus.start({ url, name: "ledger-test", priceBucket: "unused", healthSubject: "unused", logger, prices: false });
}

/** Publishes records (or raw payloads) to the usage stream, as a gateway does. */
export class UsagePublisher {
  private constructor(
    readonly nc: NatsConnection,
    private readonly settings: UsageConsumerSettings,
  ) {}

  static async open(settings: UsageConsumerSettings, url = NATS_URL): Promise<UsagePublisher> {
    const nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    await ensureUsageStream(nc, settings);
    return new UsagePublisher(nc, settings);
  }

  async publish(record: events.UsageRecord): Promise<void> {
    await jetstream(this.nc).publish(usageSubject(this.settings, record.tenant), toBinary(events.UsageRecordSchema, record));
  }

  async publishRaw(tenant: string, payload: Uint8Array): Promise<void> {
    await jetstream(this.nc).publish(usageSubject(this.settings, tenant), payload);
  }

  /** Unacknowledged and undelivered messages of the ledger's consumer. */
  async backlog(): Promise<{ pending: number; ackPending: number }> {
    const info = await (await jetstreamManager(this.nc)).consumers.info(this.settings.stream, this.settings.consumer);
    return { pending: info.num_pending, ackPending: info.num_ack_pending };
  }

  /** Deletes the test stream and closes the connection. */
  async close(): Promise<void> {
    await (await jetstreamManager(this.nc)).streams.delete(this.settings.stream).catch(() => undefined);
    await this.nc.close();
  }
}

/** The value of one counter or gauge series (0 when it was never touched). */
export async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  return values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((sum, v) => sum + v.value, 0);
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

/** A nats-server with JetStream of the test's own, that can be killed and started again on the same port and store. */
export class OwnNatsServer {
  private child: ChildProcess | undefined;
  readonly dir = mkdtempSync(join(tmpdir(), "ledger-nats-"));
  constructor(readonly port: number) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.child = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(this.port), "-js", "-sd", this.dir], {
      stdio: "ignore",
      env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin` },
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const up = await new Promise<boolean>((resolve) => {
        const s = net.connect(this.port, "127.0.0.1", () => {
          s.destroy();
          resolve(true);
        });
        s.on("error", () => resolve(false));
      });
      if (up) return;
      if (Date.now() > deadline) throw new Error("nats-server did not start");
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once("exit", () => resolve());
      child.kill("SIGKILL");
    });
  }

  async close(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
