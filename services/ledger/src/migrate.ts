import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Database } from "./database.js";

/**
 * The migrations shipped with the package: `services/ledger/migrations`, one level above this
 * module whether it runs from `src/` (tests) or `dist/` (the built service).
 */
export const MIGRATIONS_DIR = fileURLToPath(new URL("../migrations/", import.meta.url));

/** Any fixed number works: every ledger replica takes the same one, so only one migrates at a time. */
const MIGRATION_LOCK = 0x5357_4c45_4447_0001n; // "SWLEDG" 1

/** One numbered SQL file. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const FILE = /^(\d+)_([A-Za-z0-9_-]+)\.sql$/;

/** Reads `NNN_name.sql` files in version order; two files with one number is an error. */
export function readMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  const migrations: Migration[] = [];
  for (const file of readdirSync(dir)) {
    const m = FILE.exec(file);
    if (!m) continue;
    migrations.push({ version: Number(m[1]), name: m[2]!, sql: readFileSync(join(dir, file), "utf8") });
  }
  migrations.sort((a, b) => a.version - b.version);
  for (let i = 1; i < migrations.length; i++) {
    if (migrations[i]!.version === migrations[i - 1]!.version) throw new Error(`two migrations numbered ${migrations[i]!.version} in ${dir}`);
  }
  if (migrations.length === 0) throw new Error(`no migrations found in ${dir}`);
  return migrations;
}

/** What `migrate` did. */
export interface MigrationOutcome {
  /** Versions applied now, in order. */
  applied: number[];
  /** The newest version in the database afterwards. */
  current: number;
  /** Versions recorded in the database that this build does not ship (a newer ledger ran here). */
  unknown: number[];
}

/**
 * Brings the schema up to date in one transaction: takes an advisory lock (two replicas starting
 * together wait for each other), applies every migration not yet in `schema_migrations` and records
 * it. All or nothing: a failing migration leaves the schema as it was.
 */
export async function migrate(db: Database, migrations: Migration[] = readMigrations()): Promise<MigrationOutcome> {
  return db.transaction(async (tx) => {
    await tx.query("select pg_advisory_xact_lock($1::int8)", [MIGRATION_LOCK]);
    await tx.exec(
      "create table if not exists schema_migrations (version integer primary key, name text not null, applied_at timestamptz not null default now())",
    );
    const rows = await tx.query<{ version: number }>("select version from schema_migrations");
    const done = new Set(rows.map((r) => r.version));
    const applied: number[] = [];
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      await tx.exec(m.sql);
      await tx.query("insert into schema_migrations (version, name) values ($1, $2)", [m.version, m.name]);
      applied.push(m.version);
    }
    const shipped = new Set(migrations.map((m) => m.version));
    const unknown = [...done].filter((v) => !shipped.has(v)).sort((a, b) => a - b);
    const current = Math.max(0, ...done, ...applied);
    return { applied, current, unknown };
  });
}
