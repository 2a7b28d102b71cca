import { startBus, type Bus } from "@switchyard/bus";
import { ledger as pb } from "@switchyard/proto";
import type { ServiceParts, ServiceRuntime } from "@switchyard/rpc";
import { UsageConsumer, type UsageConsumerOptions } from "./consumer.js";
import { DatabaseUnavailableError, openDatabase, storageChoice, type Database, type DatabaseStatus } from "./database.js";
import { LedgerNotReadyError } from "./errors.js";
import { LedgerHandler } from "./handler.js";
import { KeyStore } from "./key-store.js";
import { registerLedgerMetrics } from "./metrics.js";
import { migrate } from "./migrate.js";
import { Recorder } from "./recorder.js";
import { UsageBook } from "./usage-book.js";

export { LedgerHandler, MAX_RECORDS_PER_CALL, RECENT_DEFAULT, RECENT_MAX } from "./handler.js";
export { UsageConsumer, type ConsumerState } from "./consumer.js";
export { openDatabase, openPglite, openPostgres, DatabaseQueryError, DatabaseUnavailableError, type Database, type DatabaseKind } from "./database.js";
export { keyIdOf, newSecret, secretSha256 } from "./key-store.js";
export { migrate, readMigrations, MIGRATIONS_DIR } from "./migrate.js";
export { checkUsageRecord, RECORD_LIMITS, type Rejection, type RejectionReason } from "./record.js";

/** What a composition root may hand the ledger instead of letting it make its own. */
export interface LedgerServiceOptions {
  /**
   * The NATS bus to consume usage records from (one process running several services shares one).
   * Left out: the ledger starts its own when NATS is enabled, and closes it at stop. Given as
   * undefined: no JetStream; records come over the Record RPC only.
   */
  bus?: Bus | undefined;
  /** An open database (tests, tools); left out: Postgres or PGlite as the configuration says. Closed at stop either way. */
  database?: Database;
  /** Consumer timings (tests shorten them). */
  consumer?: Pick<UsageConsumerOptions, "ackWaitMs" | "fetchExpiresMs" | "maxBackoffMs">;
}

/** How often the database is asked `select 1`, so readiness follows it even when no call comes. */
const PROBE_INTERVAL_MS = 5_000;

/**
 * The ledger service: the books of every completion (usage records from JetStream or the Record
 * RPC, written once each) in Postgres, or in PGlite when no database URL is set; usage reports;
 * API keys. Opens the database and applies migrations before it returns; when Postgres cannot be
 * reached yet it still returns, reports not ready, and keeps trying.
 */
export async function createLedgerService(runtime: ServiceRuntime, options: LedgerServiceOptions = {}): Promise<ServiceParts> {
  const { config, logger } = runtime;
  const settings = config.ledger;

  const onStatus = (s: DatabaseStatus) => {
    if (s.up) logger.info("the ledger database answers again", { database: db.kind });
    else logger.warn("the ledger database is unreachable; records wait in JetStream and calls answer Unavailable", { database: db.kind, reason: s.detail });
  };
  const choice = storageChoice(settings);
  if (!options.database) logger.info(choice.kind === "postgres" ? "ledger on Postgres" : "ledger on PGlite (no database URL set)", { where: choice.where });
  const db: Database = options.database ?? (await openDatabase(settings, { onStatus }));

  const metrics = registerLedgerMetrics(runtime.metrics, () => db.status());
  const book = new UsageBook(db);
  const keys = new KeyStore(db);
  const recorder = new Recorder(book, metrics);

  const ownBus = !("bus" in options);
  const bus = ownBus ? startBus(config, "ledger", logger, { prices: false }) : options.bus;
  const consumer = bus
    ? new UsageConsumer({
        settings,
        recorder,
        metrics,
        logger,
        probeDatabase: async () => {
          await db.query("select 1");
        },
        ...options.consumer,
      })
    : undefined;
  if (!bus) logger.info("NATS is disabled: usage records come over the Record RPC only");

  let migrated = false;
  let stopping = false;
  let retry: NodeJS.Timeout | undefined;
  const applySchema = async (): Promise<void> => {
    const outcome = await migrate(db);
    migrated = true;
    logger.info("ledger schema ready", { version: outcome.current, applied: outcome.applied.join(",") || "none" });
    if (outcome.unknown.length > 0) logger.warn("the database has migrations this ledger does not know (a newer ledger ran here)", { versions: outcome.unknown.join(",") });
    if (bus && consumer) consumer.attach(bus);
  };
  const retrySchema = (waitMs: number) => {
    retry = setTimeout(() => {
      applySchema().catch((err: unknown) => {
        if (stopping) return;
        if (err instanceof DatabaseUnavailableError) retrySchema(Math.min(waitMs * 2, 10_000));
        else logger.error("ledger migrations failed", { err });
      });
    }, waitMs);
  };
  try {
    await applySchema();
  } catch (err) {
    if (!(err instanceof DatabaseUnavailableError)) {
      await db.close().catch(() => undefined);
      await (ownBus ? bus?.close() : undefined);
      throw err;
    }
    logger.warn("the ledger database is unreachable at start; retrying (not ready until it answers)", { reason: err.reason });
    retrySchema(1_000);
  }

  const probe = setInterval(() => {
    if (migrated) db.query("select 1").catch(() => undefined);
  }, PROBE_INTERVAL_MS);
  probe.unref();

  // Retention: records older than ledger.retention_days go, an hour apart (every replica may run
  // it: the deletes are idempotent and short).
  const prune = async () => {
    if (!migrated || settings.retention_days === 0) return;
    try {
      const pruned = await book.prune(Date.now() - settings.retention_days * 86_400_000);
      if (pruned > 0) logger.info("pruned usage records past retention", { records: pruned, retention_days: settings.retention_days });
    } catch (err) {
      logger.warn("pruning usage records failed; trying again in an hour", { error: (err as Error).message });
    }
  };
  const pruner = settings.retention_days > 0 ? setInterval(() => void prune(), 3_600_000) : undefined;
  pruner?.unref();
  if (settings.retention_days > 0) setTimeout(() => void prune(), 60_000).unref();

  return {
    serviceNames: [pb.LedgerService.typeName],
    routes: (router) =>
      router.service(
        pb.LedgerService,
        new LedgerHandler({
          recorder,
          book,
          keys,
          logger,
          ensureReady: () => {
            if (!migrated) throw new LedgerNotReadyError();
          },
          tenants: new Set(config.tenants.map((t) => t.name)),
        }),
      ),
    readiness: () => {
      const s = db.status();
      const database = !migrated ? `${db.kind}: ${s.up ? "applying schema" : `down (${s.detail})`}` : s.up ? `${db.kind}: ok` : `${db.kind}: down (${s.detail})`;
      const jetstream = consumer ? consumer.state : "disabled: records come over Record RPC";
      return { ready: migrated && s.up, checks: { database, jetstream } };
    },
    onStop: async () => {
      stopping = true;
      clearTimeout(retry);
      clearInterval(probe);
      clearInterval(pruner);
      await consumer?.stop();
      if (ownBus) await bus?.close();
      await db.close();
    },
  };
}
