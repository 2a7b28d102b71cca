import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { PGlite, types as pgliteTypes } from "@electric-sql/pglite";
import type pg from "pg";

/** Which engine holds the books: a real Postgres server, or PGlite (Postgres in WASM, in this process). */
export type DatabaseKind = "postgres" | "pglite";

/** One result row, by column name. int8 columns are bigint; float8 are number. */
export type Row = Record<string, unknown>;

/** Something SQL can be sent to: the database itself or one transaction of it. */
export interface Queryable {
  /** Runs one statement with `$1..$n` parameters (bigint, number, string, boolean or null). */
  query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<R[]>;
}

/** Inside a transaction: statements, and whole scripts (a migration file) without parameters. */
export interface Transaction extends Queryable {
  exec(script: string): Promise<void>;
}

/** Whether the database answered its last call, and since when. */
export interface DatabaseStatus {
  up: boolean;
  /** When `up` last changed (ms since the epoch). */
  sinceMs: number;
  /** Why it is down (an error code or short message); empty while up. */
  detail: string;
}

/**
 * The ledger's one view of its storage, the same over Postgres and PGlite. Every failure is a
 * `DatabaseUnavailableError` (the engine cannot be reached: retry later) or a
 * `DatabaseQueryError` (the engine refused this statement).
 */
export interface Database extends Queryable {
  readonly kind: DatabaseKind;
  /** Runs `work` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(work: (tx: Transaction) => Promise<T>): Promise<T>;
  status(): DatabaseStatus;
  close(): Promise<void>;
}

/** The database cannot be reached (refused, reset, timed out, shutting down). Retrying later may work. */
export class DatabaseUnavailableError extends Error {
  override readonly name = "DatabaseUnavailableError";
  constructor(
    readonly kind: DatabaseKind,
    /** A short reason without addresses or credentials: an errno or SQLSTATE code, or a fixed phrase. */
    readonly reason: string,
  ) {
    super(`the ${kind} database is unavailable (${reason})`);
  }
}

/** The database refused a statement (constraint, type, syntax): retrying the same statement will not help. */
export class DatabaseQueryError extends Error {
  override readonly name = "DatabaseQueryError";
  constructor(
    readonly kind: DatabaseKind,
    /** The SQLSTATE code. */
    readonly sqlstate: string,
    message: string,
  ) {
    super(message);
  }
}

/** Called when the database goes down or comes back (once per change, not per failed call). */
export type StatusListener = (status: DatabaseStatus) => void;

const SQLSTATE = /^[0-9A-Z]{5}$/;
/**
 * SQLSTATEs that mean "not now", not "this statement is wrong": the server is not there for us
 * (08 connection, 53 resources, 57P operator intervention, 58 system), or the statement would
 * succeed later (57014 statement timeout or cancelled, 40001 serialization failure, 40P01 deadlock,
 * 55P03 lock not available, 25P03 idle transaction timeout). A record refused for one of these
 * would be a record lost; it is retried instead.
 */
const UNAVAILABLE_SQLSTATE = /^(08|53|57P|58|57014|40001|40P01|55P03|25P03)/;

/** SQLSTATE classes of errors in the data itself (22 data exception, 23 integrity constraint): only these condemn a record. */
const DATA_SQLSTATE = /^(22|23)/;

/** Whether a refused statement was refused for its data (so retrying it record by record can single out the bad ones). */
export function isDataError(err: DatabaseQueryError): boolean {
  return DATA_SQLSTATE.test(err.sqlstate);
}

/**
 * Sorts an error into unavailable / refused. Errors without a SQLSTATE come from the socket or the
 * driver (ECONNREFUSED, "Connection terminated", timeouts, a closed PGlite): unavailable.
 */
function classify(kind: DatabaseKind, err: unknown): DatabaseUnavailableError | DatabaseQueryError {
  if (err instanceof DatabaseUnavailableError || err instanceof DatabaseQueryError) return err;
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e.code === "string" ? e.code : "";
  if (SQLSTATE.test(code) && !UNAVAILABLE_SQLSTATE.test(code)) {
    return new DatabaseQueryError(kind, code, typeof e.message === "string" ? e.message : "statement refused");
  }
  return new DatabaseUnavailableError(kind, code || shortReason(e.message));
}

/** A reason fit for a log line: the driver's message without anything that looks like an address or URL. */
function shortReason(message: unknown): string {
  if (typeof message !== "string" || !message) return "no answer";
  return message
    .replace(/[a-z][a-z0-9+.-]*:\/\/\S+/gi, "<url>")
    .replace(/\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b/g, "<address>")
    .slice(0, 120);
}

/** Tracks up/down from the outcome of every call and tells the listener on each change. */
class StatusTracker {
  private current: DatabaseStatus = { up: true, sinceMs: Date.now(), detail: "" };
  constructor(private readonly listener: StatusListener | undefined) {}

  get(): DatabaseStatus {
    return { ...this.current };
  }

  ok(): void {
    if (!this.current.up) this.change({ up: true, sinceMs: Date.now(), detail: "" });
  }

  failed(err: DatabaseUnavailableError | DatabaseQueryError): void {
    if (err instanceof DatabaseUnavailableError && this.current.up) this.change({ up: false, sinceMs: Date.now(), detail: err.reason });
  }

  private change(next: DatabaseStatus): void {
    this.current = next;
    this.listener?.({ ...next });
  }
}

/** An error thrown by the caller's own code inside a transaction, carried out untouched. */
class CallerError {
  constructor(readonly error: unknown) {}
}

const typed = (err: unknown): err is DatabaseUnavailableError | DatabaseQueryError =>
  err instanceof DatabaseUnavailableError || err instanceof DatabaseQueryError;

/**
 * Runs `call`, records its outcome in `tracker` and turns a driver failure into a typed database
 * error. Errors of the caller's own (boxed in `CallerError`) pass through as they are.
 */
async function tracked<T>(kind: DatabaseKind, tracker: StatusTracker, call: () => Promise<T>): Promise<T> {
  try {
    const result = await call();
    tracker.ok();
    return result;
  } catch (err) {
    if (err instanceof CallerError) {
      tracker.ok();
      throw err.error;
    }
    const failure = classify(kind, err);
    tracker.failed(failure);
    throw failure;
  }
}

/** Runs the caller's transaction body, boxing its own errors so they are not taken for the database's. */
async function callerWork<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw typed(err) ? err : new CallerError(err);
  }
}

/** Types the failures of one driver call (inside a transaction, where the caller sees them first). */
async function driverCall<T>(kind: DatabaseKind, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw classify(kind, err);
  }
}

/** Options shared by both engines. */
export interface OpenOptions {
  onStatus?: StatusListener;
}

/** Postgres connection settings beyond the URL. */
export interface PostgresOptions extends OpenOptions {
  /** Connections in the pool (default 10). */
  maxConnections?: number;
  /** Give up connecting after this long (default 5 s): a dead server fails fast instead of hanging a batch. */
  connectTimeoutMs?: number;
  /** A statement running longer than this fails (default 30 s). */
  statementTimeoutMs?: number;
}

const int8AsBigint = (value: string): bigint => BigInt(value);

/**
 * Opens a pool on a Postgres server. It connects lazily: a server that is down now is not an error
 * here, only on the first call. The driver is loaded here, so a ledger on PGlite never loads it.
 */
export async function openPostgres(connectionString: string, options: PostgresOptions = {}): Promise<Database> {
  const kind = "postgres";
  const { default: pg } = await import("pg");
  const tracker = new StatusTracker(options.onStatus);
  const statementTimeoutMs = options.statementTimeoutMs ?? 30_000;
  const pool = new pg.Pool({
    connectionString,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    idleTimeoutMillis: 30_000,
    query_timeout: statementTimeoutMs + 5_000,
    statement_timeout: statementTimeoutMs,
    keepAlive: true,
    application_name: "switchyard-ledger",
    types: {
      getTypeParser: ((oid: number, format?: "text" | "binary") =>
        oid === pg.types.builtins.INT8 ? int8AsBigint : pg.types.getTypeParser(oid, format ?? "text")) as typeof pg.types.getTypeParser,
    },
  });
  // An idle connection that dies (server restart, network cut) is reported here; without a listener
  // the process would crash. The next call reconnects.
  pool.on("error", (err) => tracker.failed(classify(kind, err)));

  const run = async <R extends Row>(client: pg.Pool | pg.PoolClient, sql: string, params?: readonly unknown[]): Promise<R[]> =>
    (await client.query<R>(sql, params as unknown[] | undefined)).rows;

  return {
    kind,
    query: (sql, params) => tracked(kind, tracker, () => run(pool, sql, params)),
    transaction: (work) =>
      tracked(kind, tracker, async () => {
        const client = await pool.connect();
        // A checked-out connection has no error listener of the pool's: one dying between two
        // statements would otherwise be an uncaught 'error' event.
        let broken: Error | undefined;
        const onError = (err: Error) => (broken = err);
        client.on("error", onError);
        try {
          await client.query("BEGIN");
          const result = await callerWork(() =>
            work({
              query: (sql, params) => driverCall(kind, () => run(client, sql, params)),
              exec: (script) => driverCall(kind, async () => void (await client.query(script))),
            }),
          );
          await client.query("COMMIT");
          return result;
        } catch (err) {
          await client.query("ROLLBACK").catch((rollbackErr: Error) => (broken ??= rollbackErr));
          throw err;
        } finally {
          client.off("error", onError);
          client.release(broken);
        }
      }),
    status: () => tracker.get(),
    close: () => pool.end(),
  };
}

/**
 * Opens PGlite with its data in `dataDir` (created if missing), or in memory when `dataDir` is
 * undefined. Opening takes a few seconds. One ledger at a time: a lock in the folder refuses a second.
 */
export async function openPglite(dataDir: string | undefined, options: OpenOptions = {}): Promise<Database> {
  const kind = "pglite";
  const tracker = new StatusTracker(options.onStatus);
  let unlock = () => {};
  if (dataDir !== undefined) {
    mkdirSync(dataDir, { recursive: true });
    unlock = await lockFolder(dataDir);
  }
  let db: PGlite;
  try {
    if (dataDir !== undefined) await createPgliteFolder(dataDir);
    const parsers = { parsers: { [pgliteTypes.INT8]: int8AsBigint } };
    db = dataDir === undefined ? await PGlite.create(parsers) : await PGlite.create(dataDir, parsers);
  } catch (err) {
    unlock();
    throw err;
  }
  let closed = false;
  const guard = () => {
    if (closed) throw new DatabaseUnavailableError(kind, "closed");
  };
  return {
    kind,
    query: (sql, params) =>
      tracked(kind, tracker, async () => {
        guard();
        return (await db.query<never>(sql, params as unknown[] | undefined)).rows;
      }),
    transaction: (work) =>
      tracked(kind, tracker, async () => {
        guard();
        return db.transaction((tx) =>
          callerWork(() =>
            work({
              query: (sql, params) => driverCall(kind, async () => (await tx.query<never>(sql, params as unknown[] | undefined)).rows),
              exec: (script) => driverCall(kind, async () => void (await tx.exec(script))),
            }),
          ),
        );
      }),
    status: () => tracker.get(),
    close: async () => {
      if (closed) return;
      closed = true;
      try {
        await db.close();
      } finally {
        unlock();
      }
    },
  };
}

/** The lock of a PGlite folder: a Unix socket a ledger listens on while it has the folder open. */
const LOCK_FILE = ".switchyard-ledger.lock";

/**
 * Takes the folder for this process, or throws when a ledger has it open; returns the release.
 * The lock is a Unix socket listening in the folder: the kernel closes it when its process ends,
 * however it ends, so it is held exactly while that process lives, whatever its pid, pid
 * namespace or host name (a restarted container's ledger is pid 1 again). Another process finds
 * it by connecting. Two ledgers starting on a stale lock within the same instant could both take
 * it; nothing short of the kernel's own file locks (not in Node) closes that gap.
 */
async function lockFolder(dataDir: string): Promise<() => void> {
  if (process.platform === "win32") return () => {};
  const path = lockPath(dataDir);
  for (let attempt = 0; attempt < 2; attempt++) {
    const server = createServer((socket) => socket.destroy());
    const failed = await new Promise<NodeJS.ErrnoException | undefined>((done) => {
      server.once("error", done);
      server.listen(path, () => done(undefined));
    });
    if (!failed) {
      server.unref();
      const inode = statSync(path).ino;
      return () => {
        server.close();
        // Only our own socket: after a takeover in the gap above the file may be another's.
        if (safeInode(path) === inode) rmSync(path, { force: true });
      };
    }
    if (failed.code !== "EADDRINUSE") throw new DatabaseUnavailableError("pglite", `could not lock ${dataDir} (${failed.code ?? failed.message})`);
    if (await listening(path)) throw new DatabaseUnavailableError("pglite", `${dataDir} is open in another ledger: one ledger per PGlite folder (several ledgers need Postgres)`);
    rmSync(path, { force: true }); // the socket of a process that is gone
  }
  throw new DatabaseUnavailableError("pglite", `${dataDir} was locked by another ledger starting at the same moment`);
}

/** Whether a process listens on the Unix socket at `path` (refused: nobody; gone: nobody; anything else: somebody we may not reach). */
function listening(path: string): Promise<boolean> {
  return new Promise((done) => {
    const socket = createConnection(path);
    socket.once("connect", () => {
      socket.destroy();
      done(true);
    });
    socket.once("error", (err: NodeJS.ErrnoException) => done(err.code !== "ECONNREFUSED" && err.code !== "ENOENT"));
  });
}

function safeInode(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

/** In the folder, or, where that path is too long for a socket (about 107 bytes), in the temp folder under a name derived from the folder's real path. */
function lockPath(dataDir: string): string {
  const inFolder = join(dataDir, LOCK_FILE);
  if (Buffer.byteLength(inFolder) <= 100) return inFolder;
  return join(tmpdir(), `switchyard-ledger-${createHash("sha256").update(realpathSync(dataDir)).digest("hex").slice(0, 24)}.lock`);
}

/** How long Postgres's initdb may take in the child that creates a new PGlite folder. */
const INITDB_TIMEOUT_MS = 180_000;
/**
 * Present in a PGlite folder while it is being made, holding the pid of the process making it: a
 * folder that still has it was cut short (killed, out of memory) and is made again.
 */
const INITDB_MARKER = ".switchyard-initdb";
/** An argument of the initdb child, so that a leftover one is recognised before it is stopped. */
const INITDB_TAG = "switchyard-initdb";
/** Entries a new volume may hold that are not ours. */
const FOREIGN_OK = new Set(["lost+found", INITDB_MARKER, LOCK_FILE]);

/**
 * Makes the PGlite folder `dataDir` unless it holds a finished one, in a child process that exits
 * when done. Postgres's initdb, run in WebAssembly, peaks at about 1.1 GB of RSS and WebAssembly
 * memory never shrinks: a ledger that ran initdb itself would carry about 600 MB for its whole
 * life, against about 330 MB for one that opens a finished folder (PGlite 0.5.17, Node 24).
 *
 * initdb writes in place (the folder may be a mount point, its parent read-only), under a marker
 * file: a folder left with the marker was cut short, so its initdb is stopped if still running
 * and the folder emptied and made again. A folder with other files and no database is refused
 * rather than written into.
 */
export async function createPgliteFolder(dataDir: string): Promise<void> {
  const marker = join(dataDir, INITDB_MARKER);
  if (existsSync(marker)) {
    await stopLeftoverInitdb(readFileSync(marker, "utf8"));
    emptyFolder(dataDir);
  } else if (existsSync(join(dataDir, "PG_VERSION"))) {
    return;
  } else if (existsSync(dataDir)) {
    const foreign = readdirSync(dataDir).filter((entry) => !FOREIGN_OK.has(entry));
    if (foreign.length > 0) {
      throw new DatabaseUnavailableError("pglite", `${dataDir} holds files but no database (${foreign.slice(0, 3).join(", ")}): empty it or set ledger.data_dir elsewhere`);
    }
  }
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(marker, "starting\n"); // before the child exists, so that no initdb ever runs unmarked
  try {
    await runInitdb(dataDir, (pid) => writeFileSync(marker, `${pid}\n`));
  } catch (err) {
    emptyFolder(dataDir);
    throw err;
  }
  rmSync(marker);
}

function runInitdb(dir: string, started: (pid: number) => void): Promise<void> {
  const entry = pathToFileURL(createRequire(import.meta.url).resolve("@electric-sql/pglite")).href;
  const script =
    `try { const { PGlite } = await import(${JSON.stringify(entry)}); const db = await PGlite.create(process.argv[1]); await db.close(); } ` +
    `catch (err) { process.stderr.write(String((err && err.message) || err).split("\\n")[0]); process.exit(1); }`;
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", script, dir, INITDB_TAG], { stdio: ["ignore", "ignore", "pipe"] });
    if (child.pid !== undefined) started(child.pid);
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      if (stderr.length < 4_096) stderr += chunk;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, INITDB_TIMEOUT_MS);
    const failed = (why: string) => {
      clearTimeout(timer);
      fail(new DatabaseUnavailableError("pglite", `making the PGlite folder ${dir} failed: ${why}`));
    };
    child.once("error", (err) => failed(`initdb could not start (${(err as NodeJS.ErrnoException).code ?? err.message})`));
    child.once("close", (code, signal) => {
      if (code === 0) {
        clearTimeout(timer);
        return done();
      }
      const detail = stderr.trim().split("\n").at(-1) ?? "";
      if (timedOut) return failed(`initdb took longer than ${INITDB_TIMEOUT_MS / 1000} s`);
      if (signal) return failed(`initdb was killed by ${signal} (out of memory? it needs about 1.1 GB)`);
      failed(`initdb exited with code ${String(code)}${detail ? `: ${detail}` : ""}`);
    });
  });
}

/** Stops the initdb child named in a leftover marker, if it still runs (a ledger killed while making its folder). */
async function stopLeftoverInitdb(markerText: string): Promise<void> {
  const pid = Number(markerText.trim());
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return;
  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(INITDB_TAG)) return; // the pid was reused
  } catch {
    return; // gone (or no /proc: nothing to recognise it by)
  }
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return;
  }
  for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 50));
}

/** Removes what a folder holds, except a volume's lost+found and the lock of the process emptying it. */
function emptyFolder(dir: string): void {
  for (const entry of readdirSync(dir)) if (entry !== "lost+found" && entry !== LOCK_FILE) rmSync(join(dir, entry), { recursive: true, force: true });
}

/** Where the ledger keeps its books, as the configuration and environment say. */
export interface StorageSettings {
  database_url_env: string;
  data_dir: string;
}

/** Which engine `openDatabase` will pick, and where (never the URL itself: it may hold a password). */
export function storageChoice(settings: StorageSettings, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): { kind: DatabaseKind; where: string } {
  const url = env[settings.database_url_env];
  if (url) return { kind: "postgres", where: `the server in ${settings.database_url_env}` };
  return { kind: "pglite", where: resolve(cwd, settings.data_dir) };
}

/**
 * Postgres when the variable named by `database_url_env` is set, otherwise PGlite with its data in
 * `data_dir` (resolved against the working directory).
 */
export async function openDatabase(settings: StorageSettings, options: OpenOptions & { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Database> {
  const env = options.env ?? process.env;
  const url = env[settings.database_url_env];
  if (url) return openPostgres(url, options);
  return openPglite(resolve(options.cwd ?? process.cwd(), settings.data_dir), options);
}
