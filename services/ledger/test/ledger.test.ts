import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ledger as pb } from "@switchyard/proto";
import { createRpcServer, createServiceClient, HealthStatus, type RpcServer, type ServiceClient } from "@switchyard/rpc";
import { createLogger, Registry } from "@switchyard/telemetry";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DatabaseQueryError, openPostgres, type Database } from "../src/database.js";
import { LedgerHandler } from "../src/handler.js";
import { KeyStore } from "../src/key-store.js";
import { registerLedgerMetrics } from "../src/metrics.js";
import { migrate, MIGRATIONS_DIR, readMigrations } from "../src/migrate.js";
import { Recorder } from "../src/recorder.js";
import { UsageBook } from "../src/usage-book.js";
import { capturingLogger, createTestDatabase, pgliteBackend, postgresBackend, usageRecord, type Backend } from "./helpers.js";

const at = (iso: string) => BigInt(Date.parse(iso));
/** The handler's clock in these tests: midnight UTC at the end of 2025-03-11. */
const NOW = Date.parse("2025-03-12T00:00:00.000Z");

async function rpcError(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

describe.each([pgliteBackend(), postgresBackend()])("the ledger on $kind", (backend: Backend) => {
  let db: Database;
  let server: RpcServer;
  let client: ServiceClient<typeof pb.LedgerService>;
  const logged = capturingLogger("info");

  beforeAll(async () => {
    db = await backend.open();
    await migrate(db);
    const book = new UsageBook(db);
    const registry = new Registry();
    server = createRpcServer({
      name: "ledger",
      host: "127.0.0.1",
      port: 0,
      routes: (router) =>
        router.service(
          pb.LedgerService,
          new LedgerHandler({
            recorder: new Recorder(book, registerLedgerMetrics(registry, () => db.status())),
            book,
            keys: new KeyStore(db),
            logger: logged.logger,
            ensureReady: () => {},
            tenants: new Set(["acme", "globex"]),
            now: () => NOW,
          }),
        ),
      health: new HealthStatus([pb.LedgerService.typeName]),
      logger: createLogger({ service: "ledger", level: "error" }),
    });
    const { port } = await server.listen();
    client = createServiceClient(pb.LedgerService, `http://127.0.0.1:${port}`);
  });

  afterAll(async () => {
    client?.close();
    await server?.close(100);
    await db?.close();
    await backend.dispose();
  });

  beforeEach(async () => {
    await db.query("truncate usage_records, api_keys");
  });

  describe("migrations", () => {
    it("are found beside the package from src/ and from dist/", async () => {
      expect(MIGRATIONS_DIR).toBe(fileURLToPath(new URL("../migrations/", import.meta.url)));
      expect(readMigrations().map((m) => `${m.version}_${m.name}`)).toEqual(["1_usage_records", "2_api_keys"]);
      const built = new URL("../dist/migrate.js", import.meta.url);
      if (existsSync(built)) {
        const dist = (await import(built.href)) as { MIGRATIONS_DIR: string };
        expect(dist.MIGRATIONS_DIR).toBe(MIGRATIONS_DIR);
      }
    });

    it("apply once: a restart (or a second replica) applies nothing and records each version once", async () => {
      const again = await migrate(db);
      expect(again).toEqual({ applied: [], current: 2, unknown: [] });
      const rows = await db.query<{ version: number; name: string }>("select version, name from schema_migrations order by version");
      expect(rows).toEqual([
        { version: 1, name: "usage_records" },
        { version: 2, name: "api_keys" },
      ]);
    });

    it("create the tables with typed columns and the (tenant, time) and time indexes", async () => {
      const columns = await db.query<{ column_name: string; data_type: string }>(
        "select column_name, data_type from information_schema.columns where table_name = 'usage_records' and table_schema = current_schema()",
      );
      const type = Object.fromEntries(columns.map((c) => [c.column_name, c.data_type]));
      expect(type).toMatchObject({
        request_id: "text",
        time: "timestamp with time zone",
        cost_micro_usd: "bigint",
        input_tokens: "bigint",
        ttft_ms: "double precision",
        status: "integer",
        usage_estimated: "boolean",
      });
      const indexes = (await db.query<{ indexdef: string }>("select indexdef from pg_indexes where tablename = 'usage_records'")).map((r) => r.indexdef);
      expect(indexes.some((d) => /\(tenant, "?time"?\)/.test(d))).toBe(true);
      expect(indexes.some((d) => /\("?time"?\)/.test(d))).toBe(true);
    });
  });

  describe("records", () => {
    it("a record written twice, in one batch or in two, is one row; every field reads back as written", async () => {
      const r = usageRecord({
        requestId: "req-twice",
        keyId: "0123456789ab",
        cacheKind: "",
        cachedInputTokens: 7n,
        usageEstimated: true,
        cacheSavedMicroUsd: 0n,
        savedMicroUsd: -12n,
        ttftMs: 123.25,
        errorCode: "",
        traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
        model: `quote' "double" \\ back, comma {brace} NULL 你好`,
        timeUnixMs: at("2025-03-10T10:15:00.123Z"),
      });
      const first = await client.client.record({ records: [r, r] });
      expect(first).toMatchObject({ written: 1, duplicates: 1, rejected: 0 });
      const second = await client.client.record({ records: [r] });
      expect(second).toMatchObject({ written: 0, duplicates: 1, rejected: 0 });
      expect((await db.query("select request_id from usage_records")).length).toBe(1);
      const [back] = (await client.client.recentRequests({})).records;
      expect(back).toEqual(r);
    });

    it("Record refuses malformed records one by one, naming the field, and writes the rest", async () => {
      // Times near the handler's clock (NOW), so only the field at fault is wrong.
      const rec = (o: Parameters<typeof usageRecord>[0]) => usageRecord({ timeUnixMs: BigInt(NOW - 60_000), ...o });
      const good = rec({ requestId: "good-1" });
      const res = await client.client.record({
        records: [
          good,
          rec({ requestId: "" }),
          rec({ requestId: "neg-tokens", inputTokens: -1n }),
          rec({ requestId: "neg-cost", costMicroUsd: -5n }),
          rec({ requestId: "absurd-tokens", outputTokens: 10n ** 12n }),
          rec({ requestId: "no-status", status: 0 }),
          rec({ requestId: "epoch", timeUnixMs: 0n }),
          rec({ requestId: "nan", ttftMs: Number.NaN }),
          rec({ requestId: "no-tenant", tenant: "" }),
          rec({ requestId: "nul", model: "a\u0000b" }),
          rec({ requestId: "good-2" }),
        ],
      });
      expect(res.written).toBe(2);
      expect(res.rejected).toBe(9);
      expect(res.rejections).toEqual([
        "records[1]: request_id is required",
        'records[2] (request_id "neg-tokens"): input_tokens must not be negative',
        'records[3] (request_id "neg-cost"): cost_micro_usd must not be negative',
        'records[4] (request_id "absurd-tokens"): output_tokens 1000000000000 is over 1000000000',
        'records[5] (request_id "no-status"): status 0 is not an HTTP status (100 to 599)',
        'records[6] (request_id "epoch"): time_unix_ms 0 is not a plausible time (2020 to tomorrow)',
        'records[7] (request_id "nan"): ttft_ms must be a number of milliseconds in [0, 86400000]',
        'records[8] (request_id "no-tenant"): tenant is required',
        'records[9] (request_id "nul"): model must be at most 1024 characters of valid text',
      ]);
      const ids = (await db.query<{ request_id: string }>("select request_id from usage_records order by request_id")).map((r) => r.request_id);
      expect(ids).toEqual(["good-1", "good-2"]);
    });

    it("Record refuses a call with more records than it takes, as InvalidArgument", async () => {
      const many = Array.from({ length: 10_001 }, (_, i) => usageRecord({ requestId: `bulk-${i}` }));
      const err = await rpcError(client.client.record({ records: many }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(/^records: at most 10000 per call/);
    });

    it("RecentRequests: newest first, per tenant or all, 50 by default and never more than 1000", async () => {
      const records = Array.from({ length: 60 }, (_, i) =>
        usageRecord({ requestId: `r-${String(i).padStart(2, "0")}`, tenant: i % 2 ? "globex" : "acme", timeUnixMs: at("2025-03-10T00:00:00Z") + BigInt(i * 1000) }),
      );
      await client.client.record({ records });
      const all = await client.client.recentRequests({});
      expect(all.records.length).toBe(50);
      expect(all.records[0]!.requestId).toBe("r-59");
      expect(all.records[49]!.requestId).toBe("r-10");
      const acme = await client.client.recentRequests({ tenant: "acme", limit: 3 });
      expect(acme.records.map((r) => r.requestId)).toEqual(["r-58", "r-56", "r-54"]);
      expect((await client.client.recentRequests({ limit: 5000 })).records.length).toBe(60);
      expect((await rpcError(client.client.recentRequests({ limit: -1 }))).code).toBe(Code.InvalidArgument);
    });
  });

  describe("usage", () => {
    // Hand-computed expectations below refer to these records.
    const R = {
      r1: usageRecord({ requestId: "u1", reason: "tier fast: sim/fast-1 is the cheapest of 3 candidate(s) meeting quality 0.50; fell back 1 time(s): upstream 503", timeUnixMs: at("2025-03-10T10:15:00Z"), tenant: "acme", model: "sim/fast-1", tier: "fast", keyId: "aaaaaaaaaaaa", cache: "miss", taskType: "chat", inputTokens: 100n, outputTokens: 50n, costMicroUsd: 1_000n, baselineMicroUsd: 4_000n, savedMicroUsd: 3_000n, ttftMs: 100, totalMs: 1_000, status: 200 }),
      r2: usageRecord({ requestId: "u2", reason: "served from the semantic cache (similarity 0.934)", timeUnixMs: at("2025-03-10T10:45:00Z"), tenant: "acme", model: "sim/fast-1", tier: "fast", keyId: "aaaaaaaaaaaa", cache: "hit", cacheKind: "exact", taskType: "chat", inputTokens: 100n, outputTokens: 50n, costMicroUsd: 0n, baselineMicroUsd: 4_000n, savedMicroUsd: 4_000n, cacheSavedMicroUsd: 1_000n, ttftMs: 20, totalMs: 30, status: 200 }),
      r3: usageRecord({ requestId: "u3", timeUnixMs: at("2025-03-10T11:05:00Z"), tenant: "acme", model: "sim/smart-1", tier: "smart", keyId: "bbbbbbbbbbbb", cache: "miss", taskType: "code", inputTokens: 1_000n, outputTokens: 500n, costMicroUsd: 20_000n, baselineMicroUsd: 40_000n, savedMicroUsd: 20_000n, ttftMs: 400, totalMs: 5_000, status: 200 }),
      r4: usageRecord({ requestId: "u4", reason: "", timeUnixMs: at("2025-03-11T09:00:00Z"), tenant: "acme", model: "", provider: "", tier: "smart", keyId: "bbbbbbbbbbbb", cache: "bypass", taskType: "code", inputTokens: 0n, outputTokens: 0n, costMicroUsd: 0n, baselineMicroUsd: 0n, savedMicroUsd: 0n, ttftMs: 0, totalMs: 250, status: 502, errorCode: "upstream_error" }),
      r5: usageRecord({ requestId: "u5", reason: "tier fast: sim/fast-1 is the cheapest of 2 candidate(s) meeting quality 0.50", timeUnixMs: at("2025-03-11T09:30:00Z"), tenant: "globex", model: "sim/fast-1", tier: "fast", keyId: "", cache: "miss", taskType: "chat", inputTokens: 10n, outputTokens: 5n, costMicroUsd: 100n, baselineMicroUsd: 400n, savedMicroUsd: 300n, ttftMs: 50, totalMs: 200, status: 200 }),
      // Just before the period, and exactly at its (excluded) end.
      before: usageRecord({ requestId: "u6", timeUnixMs: at("2025-03-09T23:59:59.999Z"), tenant: "acme", costMicroUsd: 999_999n }),
      atEnd: usageRecord({ requestId: "u7", timeUnixMs: at("2025-03-12T00:00:00.000Z"), tenant: "acme", costMicroUsd: 777_777n }),
    };
    const period = { sinceUnixMs: at("2025-03-10T00:00:00Z"), untilUnixMs: at("2025-03-12T00:00:00Z") };

    beforeEach(async () => {
      const res = await client.client.record({ records: Object.values(R) });
      expect(res.written).toBe(7);
    });

    it("totals over [since, until): requests, errors (status >= 400), tokens, money, cache, and latency percentiles", async () => {
      const res = await client.client.usage(period);
      expect(res.sinceUnixMs).toBe(period.sinceUnixMs);
      expect(res.untilUnixMs).toBe(period.untilUnixMs);
      expect(res.groups).toEqual([]);
      expect(res.totals).toMatchObject({
        requests: 5n,
        errors: 1n,
        inputTokens: 1_210n,
        outputTokens: 605n,
        costMicroUsd: 21_100n,
        baselineMicroUsd: 48_400n,
        savedMicroUsd: 27_300n,
        cacheHits: 1n,
        cacheSavedMicroUsd: 1_000n,
      });
      // ttft over the four records with a first token: 20, 50, 100, 400 (linear interpolation).
      expect(res.totals!.ttftP50Ms).toBeCloseTo(75, 9);
      expect(res.totals!.ttftP95Ms).toBeCloseTo(355, 9);
      // total over all five: 30, 200, 250, 1000, 5000.
      expect(res.totals!.totalP50Ms).toBeCloseTo(250, 9);
      expect(res.totals!.totalP95Ms).toBeCloseTo(4_200, 9);
    });

    it("groups by model (biggest spender first), with per-group percentiles", async () => {
      const res = await client.client.usage({ ...period, groupBy: pb.GroupBy.MODEL });
      expect(res.groupBy).toBe(pb.GroupBy.MODEL);
      expect(res.totals!.requests).toBe(5n);
      expect(res.groups.map((g) => [g.key, g.totals!.requests, g.totals!.costMicroUsd])).toEqual([
        ["sim/smart-1", 1n, 20_000n],
        ["sim/fast-1", 3n, 1_100n],
        ["", 1n, 0n],
      ]);
      const fast = res.groups[1]!.totals!;
      expect(fast.ttftP50Ms).toBeCloseTo(50, 9); // 20, 50, 100
      expect(fast.ttftP95Ms).toBeCloseTo(95, 9);
      expect(fast.totalP50Ms).toBeCloseTo(200, 9); // 30, 200, 1000
      expect(fast.totalP95Ms).toBeCloseTo(920, 9);
      expect(res.groups[2]!.totals).toMatchObject({ errors: 1n, ttftP50Ms: 0, ttftP95Ms: 0 });
    });

    it("groups by UTC day and hour in time order", async () => {
      const days = await client.client.usage({ ...period, groupBy: pb.GroupBy.DAY });
      expect(days.groups.map((g) => [g.key, g.totals!.requests, g.totals!.errors, g.totals!.costMicroUsd])).toEqual([
        ["2025-03-10", 3n, 0n, 21_000n],
        ["2025-03-11", 2n, 1n, 100n],
      ]);
      const hours = await client.client.usage({ ...period, groupBy: pb.GroupBy.HOUR });
      expect(hours.groups.map((g) => [g.key, g.totals!.requests])).toEqual([
        ["2025-03-10T10", 2n],
        ["2025-03-10T11", 1n],
        ["2025-03-11T09", 2n],
      ]);
    });

    it("groups by tier, tenant, key, cache and task type", async () => {
      const keyed = async (groupBy: pb.GroupBy) => (await client.client.usage({ ...period, groupBy })).groups.map((g) => [g.key, g.totals!.requests, g.totals!.costMicroUsd]);
      expect(await keyed(pb.GroupBy.TIER)).toEqual([
        ["smart", 2n, 20_000n],
        ["fast", 3n, 1_100n],
      ]);
      expect(await keyed(pb.GroupBy.TENANT)).toEqual([
        ["acme", 4n, 21_000n],
        ["globex", 1n, 100n],
      ]);
      expect(await keyed(pb.GroupBy.KEY)).toEqual([
        ["bbbbbbbbbbbb", 2n, 20_000n],
        ["aaaaaaaaaaaa", 2n, 1_000n],
        ["", 1n, 100n],
      ]);
      expect(await keyed(pb.GroupBy.CACHE)).toEqual([
        ["miss", 3n, 21_100n],
        ["bypass", 1n, 0n],
        ["hit", 1n, 0n],
      ]);
      expect(await keyed(pb.GroupBy.TASK_TYPE)).toEqual([
        ["code", 2n, 20_000n],
        ["chat", 3n, 1_100n],
      ]);
    });

    it("groups by the router's decision: the reason up to its notes, without what varies within a decision, and why a request was not routed; most frequent first", async () => {
      const res = await client.client.usage({ ...period, groupBy: pb.GroupBy.REASON });
      expect(res.groups.map((g) => [g.key, g.totals!.requests, g.totals!.costMicroUsd])).toEqual([
        ["tier fast: sim/fast-1 is the cheapest of the candidates meeting quality 0.50", 2n, 1_100n],
        ["cheapest healthy", 1n, 20_000n],
        ["not routed (upstream_error)", 1n, 0n],
        ["served from the semantic cache", 1n, 0n],
      ]);
      expect(res.totals).toMatchObject({ requests: 5n });
    });

    it("filters by tenant and by key; ttft percentiles ignore records that sent no token", async () => {
      const acme = await client.client.usage({ ...period, tenant: "acme" });
      expect(acme.totals).toMatchObject({ requests: 4n, errors: 1n, costMicroUsd: 21_000n });
      const key = await client.client.usage({ ...period, keyId: "bbbbbbbbbbbb" });
      expect(key.totals).toMatchObject({ requests: 2n, errors: 1n, costMicroUsd: 20_000n, ttftP50Ms: 400, ttftP95Ms: 400 });
      const nobody = await client.client.usage({ ...period, tenant: "initech" });
      expect(nobody.totals).toMatchObject({ requests: 0n, costMicroUsd: 0n, ttftP50Ms: 0, totalP95Ms: 0 });
    });

    it("answers the cost alone when asked (what a gateway starts a budget from)", async () => {
      const acme = await client.client.usage({ ...period, tenant: "acme", costOnly: true });
      expect(acme.totals).toMatchObject({ requests: 4n, costMicroUsd: 21_000n, errors: 0n, ttftP50Ms: 0 });
      const key = await client.client.usage({ ...period, keyId: "bbbbbbbbbbbb", costOnly: true, groupBy: pb.GroupBy.MODEL });
      expect(key.totals).toMatchObject({ requests: 2n, costMicroUsd: 20_000n });
      expect(key.groups).toEqual([]);
    });

    it("defaults to the last 7 days up to now", async () => {
      const res = await client.client.usage({});
      expect(res.untilUnixMs).toBe(BigInt(NOW));
      expect(res.sinceUnixMs).toBe(BigInt(NOW - 7 * 86_400_000));
      // u6 (the day before) is now inside; u7 at exactly `now` is not.
      expect(res.totals).toMatchObject({ requests: 6n, costMicroUsd: 21_100n + 999_999n });
    });

    it("refuses a backwards period, a malformed key id or tenant as InvalidArgument naming the field", async () => {
      const cases: [pb.UsageRequest | Record<string, unknown>, RegExp][] = [
        [{ sinceUnixMs: period.untilUnixMs, untilUnixMs: period.sinceUnixMs }, /since_unix_ms/],
        [{ sinceUnixMs: -1n }, /since_unix_ms/],
        [{ keyId: "not-a-key" }, /key_id/],
        [{ tenant: "a/b" }, /tenant/],
        [{ groupBy: 42 }, /group_by/],
      ];
      for (const [req, field] of cases) {
        const err = await rpcError(client.client.usage(req));
        expect(err.code).toBe(Code.InvalidArgument);
        expect(err.rawMessage).toMatch(field);
      }
    });
  });

  describe("API keys", () => {
    it("create returns the secret once; list, revoke and lookup follow versions; the secret is stored nowhere", async () => {
      const created = await client.client.createKey({
        tenant: "acme",
        name: "ci pipeline",
        limits: { budgetMicroUsd: 5_000_000n, period: pb.BudgetPeriod.DAY, requestsPerMinute: 60, tokensPerMinute: 10_000 },
      });
      const secret = created.secret;
      expect(secret).toMatch(/^sy-[A-Za-z0-9_-]{43}$/);
      const sha = createHash("sha256").update(secret).digest("hex");
      const k1 = created.key!;
      expect(k1).toMatchObject({ tenant: "acme", name: "ci pipeline", sha256: sha, keyId: sha.slice(0, 12), revokedAtUnixMs: 0n });
      expect(k1.limits).toMatchObject({ budgetMicroUsd: 5_000_000n, period: pb.BudgetPeriod.DAY, requestsPerMinute: 60, tokensPerMinute: 10_000 });
      expect(Number(k1.createdAtUnixMs)).toBeGreaterThan(Date.now() - 60_000);

      const v1 = (await client.client.listKeys({})).version;
      const k2 = (await client.client.createKey({ tenant: "globex", name: "web" })).key!;
      const all = await client.client.listKeys({});
      expect(all.version).toBeGreaterThan(v1);
      const v2 = all.version;
      expect(all.keys.map((k) => k.keyId)).toEqual([k1.keyId, k2.keyId]);
      expect((await client.client.listKeys({ tenant: "acme" })).keys.map((k) => k.keyId)).toEqual([k1.keyId]);
      expect((await client.client.listKeys({ changedSince: v1 })).keys.map((k) => k.keyId)).toEqual([k2.keyId]);
      expect((await client.client.listKeys({ changedSince: v2 })).keys).toEqual([]);

      const revoked = (await client.client.revokeKey({ keyId: k1.keyId })).key!;
      expect(Number(revoked.revokedAtUnixMs)).toBeGreaterThan(0);
      const afterRevoke = await client.client.listKeys({ changedSince: v2 });
      expect(afterRevoke.version).toBeGreaterThan(v2);
      // A revocation is a change: a gateway polling with changed_since sees it.
      expect(afterRevoke.keys.map((k) => [k.keyId, k.revokedAtUnixMs > 0n])).toEqual([[k1.keyId, true]]);
      expect((await client.client.listKeys({})).keys.map((k) => k.keyId)).toEqual([k2.keyId]);
      expect((await client.client.listKeys({ includeRevoked: true })).keys.map((k) => k.keyId).sort()).toEqual([k1.keyId, k2.keyId].sort());

      // Revoking again changes nothing (same revocation time, no new version).
      const again = (await client.client.revokeKey({ keyId: k1.keyId })).key!;
      expect(again.revokedAtUnixMs).toBe(revoked.revokedAtUnixMs);
      expect((await client.client.listKeys({})).version).toBe(afterRevoke.version);

      const found = (await client.client.lookupKey({ sha256: sha })).key!;
      expect(found).toMatchObject({ keyId: k1.keyId, tenant: "acme", revokedAtUnixMs: revoked.revokedAtUnixMs });
      expect((await client.client.lookupKey({ sha256: sha.toUpperCase() })).key?.keyId).toBe(k1.keyId);
      expect((await client.client.lookupKey({ sha256: "0".repeat(64) })).key).toBeUndefined();

      // Grep every table for the secret (whole and without its prefix): only its hash may be there.
      const tables = (await db.query<{ tablename: string }>("select tablename from pg_tables where schemaname = current_schema()")).map((t) => t.tablename);
      expect(tables).toContain("api_keys");
      for (const table of tables) {
        for (const needle of [secret, secret.slice(3)]) {
          const [hit] = await db.query<{ n: bigint }>(`select count(*)::int8 as n from ${table} t where t::text like '%' || $1 || '%'`, [needle]);
          expect(hit!.n, `${table} holds the secret`).toBe(0n);
        }
      }
      expect(logged.lines.join("\n")).not.toContain(secret.slice(3));
      expect(logged.lines.some((l) => l.includes("API key created") && l.includes(k1.keyId))).toBe(true);
    });

    it("revoking an unknown key is NotFound; malformed ids, hashes, tenants and limits are InvalidArgument naming the field", async () => {
      expect((await rpcError(client.client.revokeKey({ keyId: "0123456789ab" }))).code).toBe(Code.NotFound);
      const invalid: [Promise<unknown>, RegExp][] = [
        [client.client.revokeKey({ keyId: "xyz" }), /^key_id/],
        [client.client.lookupKey({ sha256: "abc" }), /^sha256/],
        [client.client.createKey({ tenant: "" }), /^tenant is required/],
        [client.client.createKey({ tenant: "no such/tenant" }), /^tenant/],
        [client.client.createKey({ tenant: "initech" }), /^tenant "initech" is not configured/],
        [client.client.createKey({ tenant: "acme", name: "x".repeat(129) }), /^name/],
        [client.client.createKey({ tenant: "acme", name: "bad\nname" }), /^name/],
        [client.client.createKey({ tenant: "acme", limits: { budgetMicroUsd: -1n, period: pb.BudgetPeriod.DAY } }), /^limits\.budget_micro_usd/],
        [client.client.createKey({ tenant: "acme", limits: { budgetMicroUsd: 100n } }), /^limits\.period/],
        [client.client.createKey({ tenant: "acme", limits: { requestsPerMinute: -1 } }), /^limits\.requests_per_minute/],
        [client.client.createKey({ tenant: "acme", limits: { tokensPerMinute: -1 } }), /^limits\.tokens_per_minute/],
        [client.client.listKeys({ changedSince: -1n }), /^changed_since/],
      ];
      for (const [call, field] of invalid) {
        const err = await rpcError(call);
        expect(err.code).toBe(Code.InvalidArgument);
        expect(err.rawMessage).toMatch(field);
      }
      expect((await db.query("select key_id from api_keys")).length).toBe(0);
    });

    it("versions are taken in commit order under concurrent creates", async () => {
      const made = await Promise.all(Array.from({ length: 12 }, (_, i) => client.client.createKey({ tenant: i % 2 ? "acme" : "globex", name: `k${i}` })));
      const listing = await client.client.listKeys({});
      expect(listing.keys.length).toBe(12);
      expect(new Set(made.map((m) => m.secret)).size).toBe(12);
      const versions = (await new KeyStore(db).list({ includeRevoked: true, changedSince: 0n })).keys.map((k) => k.version);
      expect(new Set(versions).size).toBe(12);
      expect(listing.version).toBe(versions.reduce((a, b) => (a > b ? a : b)));
    });
  });
});

describe("an unreachable database", () => {
  it("is Unavailable with a plain message: no stack, no address", async () => {
    // Nothing listens on port 1: every connection is refused.
    const db = await openPostgres("postgres://postgres@127.0.0.1:1/none", { connectTimeoutMs: 1_000 });
    const book = new UsageBook(db);
    const { logger, lines } = capturingLogger();
    const handler = new LedgerHandler({
      recorder: new Recorder(book, registerLedgerMetrics(new Registry(), () => db.status())),
      book,
      keys: new KeyStore(db),
      logger,
      ensureReady: () => {},
    });
    for (const call of [
      handler.record(create(pb.RecordRequestSchema, { records: [usageRecord()] })),
      handler.usage(create(pb.UsageRequestSchema)),
      handler.listKeys(create(pb.ListKeysRequestSchema)),
    ]) {
      const err = await call.then(
        () => undefined,
        (e: unknown) => e as ConnectError,
      );
      expect(err).toBeInstanceOf(ConnectError);
      expect(err!.code).toBe(Code.Unavailable);
      expect(err!.rawMessage).toBe("the ledger's database (postgres) is unreachable; try again later");
    }
    expect(db.status()).toMatchObject({ up: false, detail: "ECONNREFUSED" });
    expect(lines.join("\n")).not.toMatch(/127\.0\.0\.1|at .*\.ts:\d+/);
    await db.close();
  });
});

describe("migrations on a fresh Postgres", () => {
  it("two replicas starting together: one applies, the other waits on the lock and applies nothing", async () => {
    const database = await createTestDatabase();
    const [a, b] = [await openPostgres(database.url()), await openPostgres(database.url())];
    try {
      const outcomes = await Promise.all([migrate(a), migrate(b)]);
      expect(outcomes.map((o) => o.applied).sort((x, y) => y.length - x.length)).toEqual([[1, 2], []]);
      expect(outcomes.every((o) => o.current === 2)).toBe(true);
      expect((await a.query("select version from schema_migrations")).length).toBe(2);
    } finally {
      await a.close();
      await b.close();
      await database.drop();
    }
  });

  it("are all or nothing: a failing migration leaves no table and no version behind", async () => {
    const database = await createTestDatabase();
    const db = await openPostgres(database.url());
    try {
      const broken = [...readMigrations(), { version: 3, name: "broken", sql: "create table half_done (x int); select no_such_function();" }];
      await expect(migrate(db, broken)).rejects.toBeInstanceOf(DatabaseQueryError);
      const tables = (await db.query<{ tablename: string }>("select tablename from pg_tables where schemaname = current_schema()")).map((t) => t.tablename);
      expect(tables).toEqual([]);
      expect((await migrate(db)).applied).toEqual([1, 2]);
    } finally {
      await db.close();
      await database.drop();
    }
  });
});

describe.each([pgliteBackend(), postgresBackend()])("retention on $kind", (backend: Backend) => {
  it("deletes records older than the cut-off, in batches, and nothing newer", async () => {
    const db = await backend.open();
    try {
      await migrate(db);
      const book = new UsageBook(db);
      const cutoff = Date.parse("2025-06-01T00:00:00Z");
      const old = Array.from({ length: 25 }, (_, i) => usageRecord({ requestId: `old-${i}`, timeUnixMs: BigInt(cutoff - 1_000 - i * 60_000) }));
      const recent = Array.from({ length: 5 }, (_, i) => usageRecord({ requestId: `new-${i}`, timeUnixMs: BigInt(cutoff + i * 60_000) }));
      await book.write([...old, ...recent]);
      expect(await book.prune(cutoff, 10)).toBe(25);
      const left = await db.query<{ request_id: string }>("select request_id from usage_records order by request_id");
      expect(left.map((r) => r.request_id)).toEqual(recent.map((r) => r.requestId));
      expect(await book.prune(cutoff, 10)).toBe(0);
    } finally {
      await db.close();
      await backend.dispose();
    }
  });
});
