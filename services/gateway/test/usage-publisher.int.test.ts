import { randomUUID } from "node:crypto";
import { create, fromBinary } from "@bufbuild/protobuf";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterAll, describe, expect, it } from "vitest";
import { Bus } from "@switchyard/bus";
import { events, ledger } from "@switchyard/proto";
import { createLogger, Registry } from "@switchyard/telemetry";
import { UsagePublisher } from "../src/accounting/publisher.js";
import { createGatewayMetrics } from "../src/metrics.js";

const NATS = "nats://127.0.0.1:4222";
const logger = createLogger({ service: "test", level: "error", write: () => {} });

function settings() {
  const id = randomUUID().slice(0, 8);
  return { stream: `SY_TEST_USAGE_${id}`, subject_prefix: `sytest.${id}.usage`, stream_max_age_hours: 1, gateway_buffer_records: 1_000 };
}

function record(i: number, tenant = "team-a"): events.UsageRecord {
  return create(events.UsageRecordSchema, { requestId: `req_${i}_${randomUUID()}`, tenant, timeUnixMs: BigInt(Date.now()), costMicroUsd: BigInt(i), status: 200 });
}

/** A ledger that keeps what it is given (or refuses, while `down`). */
function fakeLedger() {
  const received: events.UsageRecord[] = [];
  const state = { down: false, calls: 0 };
  const transport = createRouterTransport(({ service }) => {
    service(ledger.LedgerService, {
      record: (req: ledger.RecordRequest) => {
        if (state.down) throw new Error("ledger down");
        state.calls++;
        received.push(...req.records);
        return { written: req.records.length };
      },
    } as never);
  });
  return { client: createClient(ledger.LedgerService, transport), received, state };
}

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("usage records on their way to the ledger", () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {});
  });

  it("go to the JetStream stream, one message per record, with the request id as message id", async () => {
    const s = settings();
    const bus = Bus.start({ url: NATS, name: "test-gateway", priceBucket: "unused", healthSubject: "unused", logger, prices: false });
    cleanup.push(() => bus.close());
    const metrics = createGatewayMetrics(new Registry());
    const ledgerFake = fakeLedger();
    const publisher = new UsagePublisher({ bus, ledger: ledgerFake.client, settings: s, metrics, logger });
    await until("the usage stream", () => publisher.state.startsWith("jetstream"));
    const sent = Array.from({ length: 50 }, (_, i) => record(i, i % 2 ? "team-a" : "team-b"));
    for (const r of sent) publisher.publish(r);
    // The same record again (a retried publish): JetStream keeps it once.
    publisher.publish(sent[0]!);

    const nc = await connect({ servers: NATS });
    cleanup.push(() => nc.close());
    const jsm = await jetstreamManager(nc);
    cleanup.push(() => jsm.streams.delete(s.stream));
    for (let i = 0; i < 200 && (await jsm.streams.info(s.stream)).state.messages < 50; i++) await new Promise((r) => setTimeout(r, 25));
    // Give the duplicate time to arrive: it must not be a 51st.
    await new Promise((r) => setTimeout(r, 200));
    expect((await jsm.streams.info(s.stream)).state.messages).toBe(50);
    await jsm.consumers.add(s.stream, { durable_name: "check", ack_policy: AckPolicy.None });
    const consumer = await jetstream(nc).consumers.get(s.stream, "check");
    const seen = new Map<string, string>();
    const batch = await consumer.fetch({ max_messages: 50, expires: 2_000 });
    for await (const m of batch) {
      const r = fromBinary(events.UsageRecordSchema, m.data);
      seen.set(r.requestId, m.subject);
      expect(m.headers?.get("Nats-Msg-Id")).toBe(r.requestId);
      if (seen.size === 50) break;
    }
    expect(seen.size).toBe(50);
    expect(seen.get(sent[1]!.requestId)).toBe(`${s.subject_prefix}.team-a`);
    expect(seen.get(sent[0]!.requestId)).toBe(`${s.subject_prefix}.team-b`);
    expect(ledgerFake.received).toHaveLength(0);
    await publisher.close();
  });

  it("go to the ledger over RPC when NATS is disabled, and wait (bounded) while the ledger is away", async () => {
    const s = { ...settings(), gateway_buffer_records: 20 };
    const metrics = createGatewayMetrics(new Registry());
    const ledgerFake = fakeLedger();
    const publisher = new UsagePublisher({ bus: undefined, ledger: ledgerFake.client, settings: s, metrics, logger });
    expect(publisher.state).toMatch(/not buffered/);
    ledgerFake.state.down = true;
    const sent = Array.from({ length: 25 }, (_, i) => record(i));
    for (const r of sent) publisher.publish(r);
    await new Promise((r) => setTimeout(r, 150));
    expect(ledgerFake.received).toHaveLength(0);
    ledgerFake.state.down = false;
    await until("the ledger to get the buffered records", () => ledgerFake.received.length === 20);
    // The 5 oldest did not fit in a buffer of 20: dropped and counted, the rest kept in order.
    expect(ledgerFake.received.map((r) => r.requestId)).toEqual(sent.slice(5).map((r) => r.requestId));
    const dropped = (await metrics.usageRecords.get()).values.find((v) => v.labels.outcome === "dropped");
    expect(dropped?.value).toBe(5);
    await publisher.close();
  });

  it("go to the ledger in batches: records of the same moment share one call (an insert costs per batch)", async () => {
    const metrics = createGatewayMetrics(new Registry());
    const ledgerFake = fakeLedger();
    // A long linger, so that a slow machine's gaps between publishes stay well inside it.
    const publisher = new UsagePublisher({ bus: undefined, ledger: ledgerFake.client, settings: settings(), metrics, logger, lingerMs: 1_000 });
    // Eight records 2 ms apart, as eight requests ending one after another.
    const sent = Array.from({ length: 8 }, (_, i) => record(i));
    for (const r of sent) {
      publisher.publish(r);
      await new Promise((r) => setTimeout(r, 2));
    }
    await until("the ledger to get the records", () => ledgerFake.received.length === 8, 5_000);
    expect(ledgerFake.state.calls).toBe(1);
    expect(ledgerFake.received.map((r) => r.requestId)).toEqual(sent.map((r) => r.requestId));
    await publisher.close();
  });

  it("are all delivered by close(), the batch already on its way included", async () => {
    const metrics = createGatewayMetrics(new Registry());
    const ledgerFake = fakeLedger();
    const publisher = new UsagePublisher({ bus: undefined, ledger: ledgerFake.client, settings: settings(), metrics, logger, lingerMs: 60_000 });
    const sent = Array.from({ length: 5 }, (_, i) => record(i));
    for (const r of sent) publisher.publish(r);
    await publisher.close(); // long before the linger would have sent them
    expect(ledgerFake.received.map((r) => r.requestId)).toEqual(sent.map((r) => r.requestId));
  });

  it("go to the ledger over RPC when NATS is configured but unreachable", async () => {
    const s = settings();
    const bus = Bus.start({ url: "nats://127.0.0.1:1", name: "test-gateway", priceBucket: "unused", healthSubject: "unused", logger, prices: false });
    cleanup.push(() => bus.close());
    const metrics = createGatewayMetrics(new Registry());
    const ledgerFake = fakeLedger();
    const publisher = new UsagePublisher({ bus, ledger: ledgerFake.client, settings: s, metrics, logger });
    expect(publisher.state).toMatch(/degraded/);
    const sent = Array.from({ length: 10 }, (_, i) => record(i));
    for (const r of sent) publisher.publish(r);
    await until("the ledger to get the records", () => ledgerFake.received.length === 10);
    await publisher.close();
  });
});
