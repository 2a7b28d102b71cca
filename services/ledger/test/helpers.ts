import { randomBytes } from "node:crypto";
import net from "node:net";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { events } from "@switchyard/proto";
import { createLogger, type Logger, type LogLevel } from "@switchyard/telemetry";
import { loadPg } from "./pg.js";
import { openPglite, openPostgres, type Database, type OpenOptions, type PostgresOptions } from "../src/database.js";

/** The Postgres the tests create their databases on (trust auth). */
export const ADMIN_URL = process.env.LEDGER_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
export const NATS_URL = process.env.NATS_URL ?? "nats://127.0.0.1:4222";

/** A name no other test run uses. */
export function unique(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`;
}

/** A fresh, empty Postgres database for one test file; `drop` removes it. */
export interface TestDatabase {
  name: string;
  /** Its URL (through `port` when given, e.g. a proxy). */
  url(port?: number): string;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = unique("ledger_test");
  const pg = await loadPg();
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const base = new URL(ADMIN_URL);
  return {
    name,
    url(port) {
      const u = new URL(base);
      u.pathname = `/${name}`;
      if (port !== undefined) u.port = String(port);
      return u.toString();
    },
    async drop() {
      const pg = await loadPg();
      const c = new pg.Client({ connectionString: ADMIN_URL });
      await c.connect();
      try {
        await c.query(`drop database if exists ${name} with (force)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** Opens one of the two engines for tests: in-memory PGlite, or a fresh Postgres database. */
export interface Backend {
  kind: "pglite" | "postgres";
  open(options?: PostgresOptions): Promise<Database>;
  /** Removes what `open` created. */
  dispose(): Promise<void>;
}

export function pgliteBackend(): Backend {
  return { kind: "pglite", open: (options?: OpenOptions) => openPglite(undefined, options), dispose: async () => {} };
}

export function postgresBackend(): Backend {
  let database: TestDatabase | undefined;
  return {
    kind: "postgres",
    async open(options) {
      database ??= await createTestDatabase();
      return openPostgres(database.url(), options);
    },
    async dispose() {
      await database?.drop();
    },
  };
}

/** A valid usage record; `overrides` set fields. */
export function usageRecord(overrides: MessageInitShape<typeof events.UsageRecordSchema> = {}): events.UsageRecord {
  return create(events.UsageRecordSchema, {
    requestId: `req-${randomBytes(6).toString("hex")}`,
    timeUnixMs: BigInt(Date.now() - 60_000),
    tenant: "acme",
    api: "openai",
    requestedModel: "switchyard/auto",
    tier: "fast",
    model: "sim/fast-1",
    provider: "sim",
    reason: "cheapest healthy",
    taskType: "chat",
    cache: "miss",
    inputTokens: 100n,
    outputTokens: 50n,
    costMicroUsd: 1_000n,
    baselineMicroUsd: 4_000n,
    savedMicroUsd: 3_000n,
    baselineModel: "sim/frontier",
    ttftMs: 120,
    totalMs: 900,
    status: 200,
    finishReason: "stop",
    streamed: true,
    ...overrides,
  });
}

/** A logger that keeps its lines (to assert what is and is not logged). */
export function capturingLogger(level: LogLevel = "debug"): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: createLogger({ service: "ledger", level, write: (line) => lines.push(line) }), lines };
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 15_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A TCP proxy in front of Postgres that a test can take down: `refuse` closes the listener
 * (new connections are refused) and destroys every open connection; `restore` listens again on
 * the same port.
 */
export class PostgresProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(
    private readonly target = { host: new URL(ADMIN_URL).hostname, port: Number(new URL(ADMIN_URL).port || 5432) },
  ) {}

  async start(): Promise<number> {
    await this.listen(0);
    return this.port;
  }

  /** Refuses new connections and cuts the open ones (what a Postgres crash looks like to a client). */
  async refuse(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  async restore(): Promise<void> {
    await this.listen(this.port);
  }

  async close(): Promise<void> {
    await this.refuse();
  }

  private listen(port: number): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.target.port, this.target.host);
      this.sockets.add(client).add(upstream);
      const end = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on("error", end).on("close", end);
      upstream.on("error", end).on("close", end);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        this.port = (server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }
}
