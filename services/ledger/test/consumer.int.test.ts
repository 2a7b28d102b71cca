import type { Bus } from "@switchyard/bus";
import { Registry, type Logger } from "@switchyard/telemetry";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UsageConsumer, type UsageConsumerSettings } from "../src/consumer.js";
import { openPostgres, type Database } from "../src/database.js";
import { registerLedgerMetrics } from "../src/metrics.js";
import { migrate } from "../src/migrate.js";
import { Recorder } from "../src/recorder.js";
import { UsageBook } from "../src/usage-book.js";
import { capturingLogger, createTestDatabase, eventually, pgliteBackend, postgresBackend, PostgresProxy, usageRecord, type Backend, type TestDatabase } from "./helpers.js";
import { freePort, metricValue, OwnNatsServer, streamSettings, testBus, UsagePublisher } from "./jetstream.js";

/**
 * The JetStream path: gateways publish UsageRecords to the usage stream, the ledger's durable pull
 * consumer writes them. Every test has its own stream, subject prefix and consumer.
 */

interface Running {
  consumer: UsageConsumer;
  registry: Registry;
  bus: Bus;
}

function startConsumer(db: Database, settings: UsageConsumerSettings, bus: Bus, logger: Logger, ackWaitMs = 30_000, lingerMs?: number): Running {
  const registry = new Registry();
  const metrics = registerLedgerMetrics(registry, () => db.status());
  const consumer = new UsageConsumer({
    settings,
    recorder: new Recorder(new UsageBook(db), metrics),
    metrics,
    logger,
    probeDatabase: async () => {
      await db.query("select 1");
    },
    ackWaitMs,
    fetchExpiresMs: 1_000,
    maxBackoffMs: 1_000,
    ...(lingerMs !== undefined ? { lingerMs } : {}),
  });
  consumer.attach(bus);
  return { consumer, registry, bus };
}

async function stop(r: Running | undefined): Promise<void> {
  await r?.consumer.stop();
  await r?.bus.close();
}

async function requestIds(db: Database): Promise<string[]> {
  return (await db.query<{ request_id: string }>("select request_id from usage_records order by request_id")).map((r) => r.request_id);
}

const ids = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(3, "0")}`);

describe.each([pgliteBackend(), postgresBackend()])("usage records from JetStream into $kind", (backend: Backend) => {
  let db: Database;
  beforeAll(async () => {
    db = await backend.open();
    await migrate(db);
  });
  afterAll(async () => {
    await db?.close();
    await backend.dispose();
  });

  it("land once each: a record delivered twice is one row and one duplicate", async () => {
    const settings = streamSettings();
    const publisher = await UsagePublisher.open(settings);
    const { logger } = capturingLogger();
    const running = startConsumer(db, settings, testBus(undefined, logger), logger);
    try {
      const records = ids("twice", 20).map((requestId) => usageRecord({ requestId }));
      for (const r of records) await publisher.publish(r);
      // The same five again, as two gateways (or a gateway retrying) would: distinct messages, same request ids.
      for (const r of records.slice(0, 5)) await publisher.publish(r);
      await eventually(async () => (await metricValue(running.registry, "switchyard_ledger_records_duplicate_total")) === 5, 15_000, "five duplicates");
      expect((await requestIds(db)).filter((id) => id.startsWith("twice-"))).toEqual(ids("twice", 20));
      expect(await metricValue(running.registry, "switchyard_ledger_records_written_total", { source: "jetstream" })).toBe(20);
      await eventually(async () => (await publisher.backlog()).ackPending === 0, 5_000, "every message acked");
      expect(running.consumer.state).toBe("consuming");
    } finally {
      await stop(running);
      await publisher.close();
    }
  });

  it("write records that arrive a few milliseconds apart in one transaction, not one each", async () => {
    const settings = streamSettings();
    const publisher = await UsagePublisher.open(settings);
    const { logger } = capturingLogger();
    // A long linger, so that a slow machine's gaps between publishes stay well inside it.
    const running = startConsumer(db, settings, testBus(undefined, logger), logger, 30_000, 1_000);
    try {
      await eventually(async () => running.consumer.state === "consuming", 10_000, "the consumer bound");
      const records = ids("apart", 8).map((requestId) => usageRecord({ requestId }));
      for (const r of records) {
        await publisher.publish(r);
        await new Promise((done) => setTimeout(done, 2));
      }
      await eventually(async () => (await metricValue(running.registry, "switchyard_ledger_records_written_total", { source: "jetstream" })) === 8, 15_000, "eight written");
      const { values } = await running.registry.getSingleMetric("switchyard_ledger_write_seconds")!.get();
      const batches = values.find((v) => v.metricName === "switchyard_ledger_write_seconds_count" && v.labels.source === "jetstream")?.value ?? 0;
      expect(batches).toBe(1);
    } finally {
      await stop(running);
      await publisher.close();
    }
  });

  it("write the batch in hand when stopped while it waits for more", async () => {
    const settings = streamSettings();
    const publisher = await UsagePublisher.open(settings);
    const { logger } = capturingLogger();
    const running = startConsumer(db, settings, testBus(undefined, logger), logger, 30_000, 60_000);
    try {
      await eventually(async () => running.consumer.state === "consuming", 10_000, "the consumer bound");
      for (const requestId of ids("held", 3)) await publisher.publish(usageRecord({ requestId }));
      await eventually(async () => (await publisher.backlog()).ackPending === 3, 5_000, "three delivered, waiting in the batch");
      expect((await requestIds(db)).filter((id) => id.startsWith("held-"))).toEqual([]);
      await running.consumer.stop();
      expect((await requestIds(db)).filter((id) => id.startsWith("held-"))).toEqual(ids("held", 3));
    } finally {
      await stop(running);
      await publisher.close();
    }
  });

  it("terminate and count malformed messages, and keep writing the good ones after them", async () => {
    const settings = streamSettings();
    const publisher = await UsagePublisher.open(settings);
    const { logger, lines } = capturingLogger();
    const running = startConsumer(db, settings, testBus(undefined, logger), logger);
    try {
      await publisher.publish(usageRecord({ requestId: "mal-good-1" }));
      await publisher.publishRaw("acme", new TextEncoder().encode("not a protobuf at all"));
      await publisher.publish(usageRecord({ requestId: "mal-neg", inputTokens: -5n }));
      await publisher.publish(usageRecord({ requestId: "" }));
      await publisher.publish(usageRecord({ requestId: "mal-good-2" }));
      await publisher.publish(usageRecord({ requestId: "mal-good-3" }));
      await eventually(async () => (await requestIds(db)).filter((id) => id.startsWith("mal-")).length === 3, 15_000, "the good records");
      expect((await requestIds(db)).filter((id) => id.startsWith("mal-"))).toEqual(["mal-good-1", "mal-good-2", "mal-good-3"]);
      const rejected = (reason: string) => metricValue(running.registry, "switchyard_ledger_records_rejected_total", { reason, source: "jetstream" });
      expect(await rejected("undecodable")).toBe(1);
      expect(await rejected("tokens")).toBe(1);
      expect(await rejected("request_id")).toBe(1);
      // Terminated, not left for redelivery.
      await eventually(async () => {
        const b = await publisher.backlog();
        return b.pending === 0 && b.ackPending === 0;
      }, 5_000, "an empty backlog");
      expect(lines.filter((l) => l.includes("terminated")).length).toBe(3);
      expect(running.consumer.state).toBe("consuming");
    } finally {
      await stop(running);
      await publisher.close();
    }
  });
});

describe("faults, on real Postgres", () => {
  let database: TestDatabase;
  let direct: Database;
  beforeAll(async () => {
    database = await createTestDatabase();
    direct = await openPostgres(database.url());
    await migrate(direct);
  });
  afterAll(async () => {
    await direct?.close();
    await database?.drop();
  });

  it("Postgres down for ~6 s while records keep coming: nothing acked, logged once, every record lands once when it is back", async () => {
    const settings = streamSettings();
    const proxy = new PostgresProxy();
    const port = await proxy.start();
    const throughProxy = await openPostgres(database.url(port), { connectTimeoutMs: 1_000, statementTimeoutMs: 5_000 });
    const publisher = await UsagePublisher.open(settings);
    const { logger, lines } = capturingLogger();
    const running = startConsumer(throughProxy, settings, testBus(undefined, logger), logger);
    const expected = ids("outage", 40);
    try {
      for (const requestId of expected.slice(0, 10)) await publisher.publish(usageRecord({ requestId }));
      await eventually(async () => (await requestIds(direct)).filter((id) => id.startsWith("outage-")).length === 10, 15_000, "the first ten");

      await proxy.refuse();
      const downAt = Date.now();
      for (const [i, requestId] of expected.slice(10).entries()) {
        await publisher.publish(usageRecord({ requestId }));
        if (i === 5) await eventually(() => running.consumer.state === "paused: database down", 5_000, "the consumer to pause");
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(Date.now() - downAt).toBeGreaterThan(5_000);
      expect(throughProxy.status().up).toBe(false);
      expect((await requestIds(direct)).filter((id) => id.startsWith("outage-")).length).toBe(10);
      expect(await metricValue(running.registry, "switchyard_ledger_write_failures_total")).toBeGreaterThanOrEqual(1);

      await proxy.restore();
      await eventually(async () => (await requestIds(direct)).filter((id) => id.startsWith("outage-")).length === 40, 20_000, "all forty");
      expect((await requestIds(direct)).filter((id) => id.startsWith("outage-"))).toEqual(expected);
      await eventually(async () => {
        const b = await publisher.backlog();
        return b.pending === 0 && b.ackPending === 0;
      }, 10_000, "an empty backlog");
      expect(running.consumer.state).toBe("consuming");
      expect(lines.filter((l) => l.includes("the database is unreachable")).length).toBe(1);
      expect(lines.filter((l) => l.includes("the database is back")).length).toBe(1);
      expect(lines.join("\n")).not.toContain(database.name);
    } finally {
      await stop(running);
      await publisher.close();
      await throughProxy.close();
      await proxy.close();
    }
  });

  it.each(["after the commit, before the acks", "before the commit"] as const)(
    "a ledger that dies mid-batch (%s) loses nothing and counts nothing twice after a restart",
    async (when) => {
      const settings = streamSettings(10);
      const publisher = await UsagePublisher.open(settings);
      const expected = ids(`crash-${when === "before the commit" ? "b" : "a"}`, 40);
      for (const requestId of expected) await publisher.publish(usageRecord({ requestId }));

      const { logger } = capturingLogger("error");
      const firstBus = testBus(undefined, logger);
      let transactions = 0;
      let died = false;
      // Dies on its second batch: its NATS connection goes away with no ack, no nak, as in a SIGKILL.
      const die = async () => {
        died = true;
        await firstBus.connection?.close();
      };
      const dying: Database = {
        ...direct,
        kind: direct.kind,
        query: (sql, params) => direct.query(sql, params),
        status: () => direct.status(),
        close: async () => {},
        transaction: async (work) => {
          if (++transactions !== 2) return direct.transaction(work);
          if (when === "before the commit") {
            return direct.transaction(async (tx) => {
              await work(tx);
              await die();
              throw new Error("killed");
            });
          }
          const result = await direct.transaction(work);
          await die();
          return result;
        },
      };
      const first = startConsumer(dying, settings, firstBus, logger, 2_000);
      await eventually(() => died, 15_000, "the first ledger to die");
      await stop(first);
      const writtenBefore = (await requestIds(direct)).filter((id) => expected.includes(id)).length;
      expect(writtenBefore).toBeLessThan(40);

      const second = startConsumer(direct, settings, testBus(undefined, logger), logger, 2_000);
      try {
        await eventually(async () => (await requestIds(direct)).filter((id) => expected.includes(id)).length === 40, 20_000, "all forty after the restart");
        expect((await requestIds(direct)).filter((id) => expected.includes(id))).toEqual(expected);
        await eventually(async () => {
          const b = await publisher.backlog();
          return b.pending === 0 && b.ackPending === 0;
        }, 10_000, "an empty backlog");
        const duplicates = await metricValue(second.registry, "switchyard_ledger_records_duplicate_total");
        // Committed but never acked: redelivered, found already written.
        if (when === "after the commit, before the acks") expect(duplicates).toBeGreaterThanOrEqual(1);
        else expect(duplicates).toBe(0);
        expect(await metricValue(second.registry, "switchyard_ledger_records_written_total")).toBe(40 - writtenBefore);
      } finally {
        await stop(second);
        await publisher.close();
      }
    },
  );

  it("NATS restarting under the consumer: it binds again and resumes", async () => {
    const nats = new OwnNatsServer(await freePort());
    await nats.start();
    const settings = streamSettings();
    const publisher = await UsagePublisher.open(settings, nats.url);
    const { logger } = capturingLogger("error");
    const running = startConsumer(direct, settings, testBus(nats.url, logger), logger);
    const expected = ids("natsdown", 10);
    try {
      for (const requestId of expected.slice(0, 5)) await publisher.publish(usageRecord({ requestId }));
      await eventually(async () => (await requestIds(direct)).filter((id) => id.startsWith("natsdown-")).length === 5, 15_000, "the first five");

      await nats.kill();
      await eventually(() => running.consumer.state === "reconnecting", 10_000, "the consumer to notice");
      await nats.start();
      for (const requestId of expected.slice(5)) {
        // The publisher reconnects too; a publish before it has fails and is tried again.
        await eventually(
          () =>
            publisher.publish(usageRecord({ requestId })).then(
              () => true,
              () => false,
            ),
          15_000,
          "a publish after the restart",
        );
      }
      await eventually(async () => (await requestIds(direct)).filter((id) => id.startsWith("natsdown-")).length === 10, 20_000, "all ten");
      expect((await requestIds(direct)).filter((id) => id.startsWith("natsdown-"))).toEqual(expected);
      expect(running.consumer.state).toBe("consuming");
    } finally {
      await stop(running);
      await publisher.close().catch(() => undefined);
      await nats.close();
    }
  });
});
