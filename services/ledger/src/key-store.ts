import { createHash, randomBytes } from "node:crypto";
import { DatabaseQueryError, type Database, type Queryable, type Row } from "./database.js";

/** How often a key's budget resets; "" when the key has no budget. */
export type BudgetPeriod = "" | "day" | "week" | "month";

/** What a key may do; zero means no limit of that kind. */
export interface KeyLimits {
  budgetMicroUsd: bigint;
  period: BudgetPeriod;
  requestsPerMinute: number;
  tokensPerMinute: number;
}

/** A key as the ledger keeps it: everything but the secret. */
export interface StoredKey {
  /** First 12 hex digits of the SHA-256 of the secret. */
  keyId: string;
  /** The full SHA-256 (hex) of the secret. */
  sha256: string;
  tenant: string;
  name: string;
  limits: KeyLimits;
  createdAtMs: bigint;
  /** 0 while the key is valid. */
  revokedAtMs: bigint;
  /** The change that last touched the key (its creation or revocation). */
  version: bigint;
}

/** A new key and its secret: the only moment the secret exists outside the caller. */
export interface IssuedKey {
  key: StoredKey;
  secret: string;
}

/** The SHA-256 (lowercase hex) of a key's secret: what is stored and compared. */
export function secretSha256(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
}

/** A new secret: `sy-` and 32 random bytes in base64url (256 bits). */
export function newSecret(): string {
  return `sy-${randomBytes(32).toString("base64url")}`;
}

/** Key id of a secret's hash: its first 12 hex digits. */
export function keyIdOf(sha256: string): string {
  return sha256.slice(0, 12);
}

// Creations and revocations take this lock before taking a version, so versions become visible in
// the order they were taken: a gateway that saw version N has seen every change up to N.
const KEY_CHANGE_LOCK = 0x5357_4c45_4447_0002n; // "SWLEDG" 2

const SELECT_KEY = `key_id, sha256, tenant, name, budget_micro_usd, period, rpm, tpm,
  (extract(epoch from created_at) * 1000)::int8 as created_at_ms,
  coalesce((extract(epoch from revoked_at) * 1000)::int8, 0) as revoked_at_ms,
  version`;

function fromRow(row: Row): StoredKey {
  return {
    keyId: row["key_id"] as string,
    sha256: row["sha256"] as string,
    tenant: row["tenant"] as string,
    name: row["name"] as string,
    limits: {
      budgetMicroUsd: row["budget_micro_usd"] as bigint,
      period: row["period"] as BudgetPeriod,
      requestsPerMinute: row["rpm"] as number,
      tokensPerMinute: row["tpm"] as number,
    },
    createdAtMs: row["created_at_ms"] as bigint,
    revokedAtMs: row["revoked_at_ms"] as bigint,
    version: row["version"] as bigint,
  };
}

/** Keys changed since a version, and the newest version. */
export interface KeyListing {
  keys: StoredKey[];
  version: bigint;
}

/** The API keys in the books. Only hashes are stored; a secret exists once, in `create`'s answer. */
export class KeyStore {
  constructor(private readonly db: Database) {}

  /** Creates a key for `tenant` (already validated) and returns it with its secret. */
  async create(tenant: string, name: string, limits: KeyLimits): Promise<IssuedKey> {
    // A 48-bit key id collides with an existing one about never; try again if it does.
    for (let attempt = 0; ; attempt++) {
      const secret = newSecret();
      const sha256 = secretSha256(secret);
      try {
        const key = await this.change(async (tx, version) => {
          const [row] = await tx.query(
            `insert into api_keys (key_id, sha256, tenant, name, budget_micro_usd, period, rpm, tpm, version)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning ${SELECT_KEY}`,
            [keyIdOf(sha256), sha256, tenant, name, limits.budgetMicroUsd, limits.period, limits.requestsPerMinute, limits.tokensPerMinute, version],
          );
          return fromRow(row!);
        });
        return { key, secret };
      } catch (err) {
        if (err instanceof DatabaseQueryError && err.sqlstate === "23505" && attempt < 3) continue;
        throw err;
      }
    }
  }

  /**
   * Revokes a key: sets its revocation time and gives it a new version. Undefined for an unknown
   * key id; a key already revoked is returned as it is (no new version).
   */
  async revoke(keyId: string): Promise<StoredKey | undefined> {
    return this.change(async (tx, version) => {
      const [row] = await tx.query(
        `update api_keys set revoked_at = now(), version = $2 where key_id = $1 and revoked_at is null returning ${SELECT_KEY}`,
        [keyId, version],
      );
      if (row) return fromRow(row);
      const [existing] = await tx.query(`select ${SELECT_KEY} from api_keys where key_id = $1`, [keyId]);
      // Nothing changed: roll back so the version taken is not the newest for nothing.
      throw new Unchanged(existing ? fromRow(existing) : undefined);
    }).catch((err: unknown) => {
      if (err instanceof Unchanged) return err.key;
      throw err;
    });
  }

  /** The key whose secret has this SHA-256 (revoked ones too: the caller decides), or undefined. */
  async lookup(sha256: string): Promise<StoredKey | undefined> {
    const [row] = await this.db.query(`select ${SELECT_KEY} from api_keys where sha256 = $1`, [sha256]);
    return row ? fromRow(row) : undefined;
  }

  /**
   * Keys (of one tenant, or all) changed after version `changedSince` (0: every key), and the
   * newest version in the table, read in one snapshot. Revoked keys are left out unless asked
   * for, except when asking for changes: a revocation is a change the caller must see.
   */
  async list(options: { tenant?: string | undefined; includeRevoked: boolean; changedSince: bigint }): Promise<KeyListing> {
    return this.db.transaction(async (tx) => {
      await tx.query("set transaction isolation level repeatable read");
      const params: unknown[] = [options.changedSince];
      const where = ["version > $1"];
      if (options.tenant) {
        params.push(options.tenant);
        where.push(`tenant = $${params.length}`);
      }
      if (!options.includeRevoked && options.changedSince === 0n) where.push("revoked_at is null");
      const rows = await tx.query(`select ${SELECT_KEY} from api_keys where ${where.join(" and ")} order by version`, params);
      const [v] = await tx.query<{ version: bigint }>("select coalesce(max(version), 0)::int8 as version from api_keys");
      return { keys: rows.map(fromRow), version: v?.version ?? 0n };
    });
  }

  private change<T>(work: (tx: Queryable, version: bigint) => Promise<T>): Promise<T> {
    return this.db.transaction(async (tx) => {
      await tx.query("select pg_advisory_xact_lock($1::int8)", [KEY_CHANGE_LOCK]);
      const [v] = await tx.query<{ version: bigint }>("select nextval('api_keys_version_seq')::int8 as version");
      return work(tx, v!.version);
    });
  }
}

/** Thrown inside a revocation that changed nothing, to roll it back; carries the key as it is. */
class Unchanged extends Error {
  constructor(readonly key: StoredKey | undefined) {
    super("unchanged");
  }
}
