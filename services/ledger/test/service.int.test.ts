import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import { parseConfig, type Config } from "@switchyard/config";
import { ledger as pb } from "@switchyard/proto";
import { createRpcServer, createServiceClient, HealthStatus, type ServiceParts, type ServiceRuntime } from "@switchyard/rpc";
import { createLogger, Registry } from "@switchyard/telemetry";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPgliteFolder, openPglite, openPostgres, type Database } from "../src/database.js";
import { createLedgerService } from "../src/service.js";
import { capturingLogger, createTestDatabase, eventually, NATS_URL, PostgresProxy, unique, usageRecord, type TestDatabase } from "./helpers.js";
import { freePort, streamSettings, UsagePublisher } from "./jetstream.js";

/** A configuration for one test: the embedded defaults with these ledger and NATS settings. */
function configWith(overrides: Record<string, unknown>): Config {
  return parseConfig(JSON.stringify({ telemetry: { log_level: "error" }, ...overrides }));
}

function runtimeFor(config: Config): { runtime: ServiceRuntime; lines: string[] } {
  const { logger, lines } = capturingLogger("info");
  return { runtime: { name: "ledger", config, configSource: "test", logger, metrics: new Registry(), tracing: { exporting: false, shutdown: async () => {} } }, lines };
}

/** Serves `parts` on a free port; returns a client and a stop function (server, then onStop, as `serve` does). */
async function serveParts(parts: ServiceParts) {
  const server = createRpcServer({
    name: "ledger",
    host: "127.0.0.1",
    port: 0,
    routes: parts.routes,
    health: new HealthStatus(parts.serviceNames),
    logger: createLogger({ service: "ledger", level: "error" }),
  });
  const { port } = await server.listen();
  const client = createServiceClient(pb.LedgerService, `http://127.0.0.1:${port}`);
  return {
    client: client.client,
    stop: async () => {
      client.close();
      await server.close(100);
      await parts.onStop?.();
    },
  };
}

async function rpcError(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

describe("createLedgerService", () => {
  it("on PGlite in a folder, without NATS: serves Record and Usage, keeps its books across a restart, migrates once", { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "ledger-pglite-"));
    const config = configWith({ nats: { enabled: false }, ledger: { data_dir: join(dir, "books"), database_url_env: "LEDGER_TEST_UNSET_DATABASE_URL" } });
    try {
      const first = runtimeFor(config);
      const parts = await createLedgerService(first.runtime);
      expect(parts.serviceNames).toEqual([pb.LedgerService.typeName]);
      expect(parts.readiness?.()).toEqual({ ready: true, checks: { database: "pglite: ok", jetstream: "disabled: records come over Record RPC" } });
      const a = await serveParts(parts);
      const record = usageRecord({ requestId: "kept-1", costMicroUsd: 4_242n });
      expect(await a.client.record({ records: [record] })).toMatchObject({ written: 1 });
      await a.stop();
      expect(first.lines.some((l) => l.includes("ledger schema ready") && l.includes('"applied":"1,2"'))).toBe(true);

      const second = runtimeFor(config);
      const b = await serveParts(await createLedgerService(second.runtime));
      try {
        expect(second.lines.some((l) => l.includes("ledger schema ready") && l.includes('"applied":"none"'))).toBe(true);
        expect((await b.client.usage({})).totals).toMatchObject({ requests: 1n, costMicroUsd: 4_242n });
        expect(await b.client.record({ records: [record] })).toMatchObject({ written: 0, duplicates: 1 });
      } finally {
        await b.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("makes a new PGlite folder with initdb in a child process, makes again one whose making was cut short, refuses a folder of other files", { timeout: 120_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "ledger-initdb-"));
    const books = join(dir, "books");
    // What a ledger killed while making its folder leaves: the marker naming its initdb child
    // (still running here), and half a cluster.
    const leftover = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)", "switchyard-initdb"], { stdio: "ignore" });
    const stopped = new Promise((r) => leftover.once("exit", (_code, signal) => r(signal)));
    try {
      mkdirSync(books);
      writeFileSync(join(books, ".switchyard-initdb"), `${leftover.pid}\n`);
      writeFileSync(join(books, "PG_VERSION"), "17\n");
      const before = process.memoryUsage().rss;
      await createPgliteFolder(books);
      expect(await Promise.race([stopped, new Promise((r) => setTimeout(r, 5_000, "still running"))])).toBe("SIGKILL");
      // initdb in this process would keep about 550 MB of WebAssembly memory for good.
      expect(process.memoryUsage().rss - before).toBeLessThan(150 * 1024 * 1024);
      expect(existsSync(join(books, ".switchyard-initdb"))).toBe(false);
      const db = await openPglite(books);
      try {
        expect(await db.query("select current_database() as name")).toEqual([{ name: "postgres" }]);
      } finally {
        await db.close();
      }
      await createPgliteFolder(books); // a finished folder is left as it is

      const other = join(dir, "other");
      mkdirSync(other);
      writeFileSync(join(other, "notes.txt"), "mine\n");
      await expect(createPgliteFolder(other)).rejects.toThrow(/other holds files but no database \(notes\.txt\)/);
      expect(existsSync(join(other, "notes.txt"))).toBe(true);
    } finally {
      leftover.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("opens a PGlite folder in one ledger at a time, and takes over the lock of one that is gone", { timeout: 120_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "ledger-lock-"));
    const books = join(dir, "books");
    const lock = join(books, ".switchyard-ledger.lock");
    let other: ChildProcess | undefined;
    try {
      const db = await openPglite(books);
      await expect(openPglite(books)).rejects.toThrow(/books is open in another ledger: one ledger per PGlite folder/);
      await db.close();
      expect(existsSync(lock)).toBe(false);

      // Another process listens on the lock (as a ledger with the folder open does): refused.
      other = spawn(process.execPath, ["-e", "require('node:net').createServer().listen(process.argv[1], () => console.log('up'))", lock], { stdio: ["ignore", "pipe", "ignore"] });
      await new Promise((r) => other!.stdout!.once("data", r));
      await expect(openPglite(books)).rejects.toThrow(/is open in another ledger/);
      // Killed, it leaves its socket file behind with nobody listening: taken over.
      other.kill("SIGKILL");
      await new Promise((r) => other!.once("exit", r));
      expect(existsSync(lock)).toBe(true);
      const again = await openPglite(books);
      expect(await again.query("select 1 as one")).toEqual([{ one: 1 }]);
      await again.close();

      // A folder too deep for a socket path (about 107 bytes) is locked by a socket in the temp folder.
      const deep = join(dir, "d".repeat(60), "e".repeat(60), "books");
      const deepDb = await openPglite(deep);
      try {
        await expect(openPglite(deep)).rejects.toThrow(/is open in another ledger/);
        expect(existsSync(join(deep, ".switchyard-ledger.lock"))).toBe(false);
      } finally {
        await deepDb.close();
      }
    } finally {
      other?.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe("on Postgres with JetStream", () => {
    let database: TestDatabase;
    let direct: Database;
    const urlEnv = `LEDGER_TEST_DB_${unique("url").toUpperCase()}`;
    beforeAll(async () => {
      database = await createTestDatabase();
      direct = await openPostgres(database.url());
    });
    afterAll(async () => {
      delete process.env[urlEnv];
      await direct?.close();
      await database?.drop();
    });

    it("waits for a Postgres that is down at start (not ready, Unavailable), then migrates, consumes and answers", async () => {
      const proxy = new PostgresProxy();
      const port = await proxy.start();
      await proxy.refuse();
      process.env[urlEnv] = database.url(port);
      const settings = streamSettings();
      const config = configWith({ nats: { enabled: true, url: NATS_URL }, ledger: { ...settings, database_url_env: urlEnv } });
      const { runtime, lines } = runtimeFor(config);
      const publisher = await UsagePublisher.open(settings);
      const parts = await createLedgerService(runtime);
      const served = await serveParts(parts);
      try {
        const before = parts.readiness!();
        expect(before.ready).toBe(false);
        expect(before.checks.database).toMatch(/^postgres: down \(ECONNREFUSED\)$/);
        const err = await rpcError(served.client.usage({}));
        expect(err.code).toBe(Code.Unavailable);
        expect(err.rawMessage).toBe("the ledger is starting: its database schema is not applied yet");
        await publisher.publish(usageRecord({ requestId: "late-db-1", tenant: "acme" }));

        await proxy.restore();
        await eventually(() => parts.readiness!().ready, 15_000, "ready");
        expect(parts.readiness!().checks.database).toBe("postgres: ok");
        await eventually(() => parts.readiness!().checks.jetstream === "consuming", 10_000, "consuming");
        // The record published while the database was away arrives, as does a new one.
        await publisher.publish(usageRecord({ requestId: "late-db-2", tenant: "acme" }));
        await eventually(async () => (await served.client.usage({ tenant: "acme" })).totals?.requests === 2n, 15_000, "both records");
        const text = lines.join("\n");
        expect(text).not.toContain(database.url(port));
        expect(text).not.toContain(String(port));
      } finally {
        await served.stop();
        await publisher.close();
        await proxy.close();
      }
      expect(parts.readiness!().checks.jetstream).toBe("stopped");
    });
  });
});

describe("the ledger process", () => {
  const serviceDir = fileURLToPath(new URL("..", import.meta.url));
  const fixture = fileURLToPath(new URL("./fixtures/ledger-process.mjs", import.meta.url));
  let database: TestDatabase;
  let direct: Database;
  let dir: string;
  beforeAll(async () => {
    if (!existsSync(join(serviceDir, "dist", "service.js"))) throw new Error(`${join(serviceDir, "dist")} is missing: run "npx tsc -b" first`);
    database = await createTestDatabase();
    direct = await openPostgres(database.url());
    dir = mkdtempSync(join(tmpdir(), "ledger-process-"));
  });
  afterAll(async () => {
    await direct?.close();
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("killed with SIGKILL in the middle of a backlog, then restarted: every record exactly once", async () => {
    const settings = streamSettings(200);
    const configPath = join(dir, "switchyard.yaml");
    const [rpcPort, httpPort] = [await freePort(), await freePort()];
    writeFileSync(
      configPath,
      JSON.stringify({
        listen_host: "127.0.0.1",
        ports: { ledger: rpcPort, ledger_http: httpPort },
        nats: { enabled: true, url: NATS_URL },
        ledger: { ...settings, database_url_env: "LEDGER_PROCESS_DATABASE_URL" },
        telemetry: { log_level: "warn" },
      }),
    );
    const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SWITCHYARD_"))), SWITCHYARD_CONFIG: configPath, LEDGER_PROCESS_DATABASE_URL: database.url() };
    const start = (): ChildProcess => spawn(process.execPath, [fixture], { cwd: dir, env, stdio: ["ignore", "ignore", "pipe"] });
    const rows = async () => Number((await direct.query<{ n: bigint }>("select count(*)::int8 as n from usage_records"))[0]?.n ?? 0n);

    const publisher = await UsagePublisher.open(settings);
    const total = 3_000;
    try {
      await Promise.all(Array.from({ length: total }, (_, i) => publisher.publish(usageRecord({ requestId: `proc-${i}` }))));
      let child = start();
      let stderr = "";
      child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
      await eventually(async () => (await direct.query("select 1 from pg_tables where tablename = 'usage_records'")).length > 0 && (await rows()) > 0, 20_000, "the first rows");
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
      const atKill = await rows();
      expect(atKill).toBeLessThan(total);

      child = start();
      child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
      try {
        await eventually(async () => (await rows()) === total, 30_000, `all ${total} rows (stderr: ${stderr.slice(0, 500)})`);
        await eventually(async () => {
          const b = await publisher.backlog();
          return b.pending === 0 && b.ackPending === 0;
        }, 10_000, "an empty backlog");
        const [check] = await direct.query<{ n: bigint; distinct_ids: bigint }>("select count(*)::int8 as n, count(distinct request_id)::int8 as distinct_ids from usage_records");
        expect(check).toEqual({ n: BigInt(total), distinct_ids: BigInt(total) });
        const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
        expect(metrics).toMatch(/^switchyard_ledger_records_written_total\{[^}]*source="jetstream"[^}]*\} [1-9]\d*$/m);
        const ready = (await (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).json()) as { checks: Record<string, string> };
        expect(ready.checks).toMatchObject({ database: "postgres: ok", jetstream: "consuming" });
      } finally {
        child.kill("SIGTERM");
        await new Promise((r) => child.once("exit", r));
      }
    } finally {
      await publisher.close();
    }
  });
});
