import type { events } from "@switchyard/proto";
import { DatabaseUnavailableError } from "./database.js";
import type { LedgerMetrics, RecordSource } from "./metrics.js";
import { checkUsageRecord, type Rejection } from "./record.js";
import type { UsageBook } from "./usage-book.js";

/** What happened to each record of a batch given to `Recorder.record`. */
export interface RecordOutcome {
  written: number;
  duplicates: number;
  /** Records refused, by their index in the batch. */
  rejections: Map<number, Rejection>;
}

/**
 * Checks usage records and writes the good ones in one idempotent batch, counting each outcome.
 * Shared by the JetStream consumer and the Record RPC, so both refuse the same records for the
 * same reasons.
 */
export class Recorder {
  constructor(
    private readonly book: UsageBook,
    private readonly metrics: LedgerMetrics,
  ) {}

  /**
   * Writes `records`. Throws `DatabaseUnavailableError` when the database cannot be reached: then
   * nothing was written (or, if the connection broke during the commit, possibly everything; a
   * retry finds the request ids already there and counts them as duplicates).
   */
  async record(source: RecordSource, records: readonly events.UsageRecord[], now = Date.now()): Promise<RecordOutcome> {
    const rejections = new Map<number, Rejection>();
    const valid: events.UsageRecord[] = [];
    const validIndex: number[] = [];
    records.forEach((r, i) => {
      const rejection = checkUsageRecord(r, now);
      if (rejection) rejections.set(i, rejection);
      else {
        valid.push(r);
        validIndex.push(i);
      }
    });
    let written = 0;
    let duplicates = 0;
    if (valid.length > 0) {
      const started = performance.now();
      let outcome;
      try {
        outcome = await this.book.write(valid);
      } catch (err) {
        if (err instanceof DatabaseUnavailableError) this.metrics.writeFailed(source);
        throw err;
      }
      this.metrics.writeSeconds(source, (performance.now() - started) / 1000);
      written = outcome.written.size;
      duplicates = outcome.duplicates;
      for (const [i, message] of outcome.refused) rejections.set(validIndex[i]!, { reason: "refused", message });
    }
    for (const rejection of rejections.values()) this.metrics.rejected(source, rejection.reason);
    this.metrics.written(source, written);
    this.metrics.duplicates(source, duplicates);
    return { written, duplicates, rejections };
  }
}
