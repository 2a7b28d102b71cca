import { Counter, Gauge, Histogram, type Registry } from "@switchyard/telemetry";
import type { DatabaseStatus } from "./database.js";
import type { RejectionReason } from "./record.js";

/** Where a record came from: the JetStream usage stream or the Record RPC. */
export type RecordSource = "jetstream" | "rpc";

/** The ledger's Prometheus metrics. */
export interface LedgerMetrics {
  written(source: RecordSource, n: number): void;
  duplicates(source: RecordSource, n: number): void;
  rejected(source: RecordSource, reason: RejectionReason): void;
  /** A batch that could not be written (the database was unreachable); its records are retried. */
  writeFailed(source: RecordSource): void;
  /** Seconds one batch took to write. */
  writeSeconds(source: RecordSource, seconds: number): void;
  /** Messages in the usage stream not yet delivered to the ledger (as JetStream last said). */
  pending(n: number): void;
}

/** Registers the ledger metrics on `registry`; `database` is read at scrape time. */
export function registerLedgerMetrics(registry: Registry, database: () => DatabaseStatus): LedgerMetrics {
  const registers = [registry];
  const written = new Counter({ name: "switchyard_ledger_records_written_total", help: "Usage records written to the books, by source (jetstream, rpc).", labelNames: ["source"], registers });
  const duplicates = new Counter({
    name: "switchyard_ledger_records_duplicate_total",
    help: "Usage records whose request id was already in the books (redeliveries, retries), by source.",
    labelNames: ["source"],
    registers,
  });
  const rejected = new Counter({
    name: "switchyard_ledger_records_rejected_total",
    help: "Usage records refused as malformed (and, from JetStream, terminated), by reason (the field at fault, undecodable, refused) and source.",
    labelNames: ["reason", "source"],
    registers,
  });
  const failures = new Counter({
    name: "switchyard_ledger_write_failures_total",
    help: "Batches not written because the database was unreachable (JetStream redelivers them; the Record RPC answers Unavailable).",
    labelNames: ["source"],
    registers,
  });
  const seconds = new Histogram({
    name: "switchyard_ledger_write_seconds",
    help: "Time to write one batch of usage records.",
    labelNames: ["source"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });
  const pending = new Gauge({ name: "switchyard_ledger_stream_pending", help: "Usage records in JetStream not yet delivered to the ledger, as of the last fetch.", registers });
  new Gauge({
    name: "switchyard_ledger_database_up",
    help: "1 while the database answers, 0 while it does not.",
    registers,
    collect() {
      this.set(database().up ? 1 : 0);
    },
  });
  return {
    written: (source, n) => n > 0 && written.inc({ source }, n),
    duplicates: (source, n) => n > 0 && duplicates.inc({ source }, n),
    rejected: (source, reason) => rejected.inc({ reason, source }),
    writeFailed: (source) => failures.inc({ source }),
    writeSeconds: (source, s) => seconds.observe({ source }, s),
    pending: (n) => pending.set(n),
  };
}
