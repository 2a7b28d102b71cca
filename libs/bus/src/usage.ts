import { DiscardPolicy, JetStreamApiCodes, JetStreamApiError, jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";

/** Where usage records travel: the ledger settings of the configuration. */
export interface UsageStreamSettings {
  stream: string;
  subject_prefix: string;
  stream_max_age_hours: number;
}

/** JetStream drops a second publish with the same message id (the request id) within this window. */
export const USAGE_DUPLICATE_WINDOW_MS = 2 * 60_000;

/** The subject of one tenant's records: "<prefix>.<tenant>" (a tenant name is a single token). */
export function usageSubject(settings: UsageStreamSettings, tenant: string): string {
  return `${settings.subject_prefix}.${tenant.replace(/[.*>\s]/g, "_") || "_"}`;
}

/**
 * Creates the usage stream, or updates its limits when it exists. File storage, limits
 * retention: records stay until the ledger has acknowledged them and at most
 * `stream_max_age_hours` (a ledger away for longer loses the oldest; the stream's own
 * `switchyard_*` metrics in NATS show it). Both the gateway and the ledger call it, so records
 * are kept whichever starts first.
 */
export async function ensureUsageStream(nc: NatsConnection, settings: UsageStreamSettings): Promise<void> {
  const jsm = await jetstreamManager(nc, { timeout: 5_000 });
  const config = {
    name: settings.stream,
    subjects: [`${settings.subject_prefix}.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: settings.stream_max_age_hours * 3_600 * 1e9,
    duplicate_window: USAGE_DUPLICATE_WINDOW_MS * 1e6,
  };
  try {
    await jsm.streams.info(settings.stream);
    await jsm.streams.update(settings.stream, { subjects: config.subjects, max_age: config.max_age, duplicate_window: config.duplicate_window });
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.StreamNotFound) throw err;
    await jsm.streams.add(config);
  }
}
