import * as http from "node:http";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { stringify as toYaml } from "yaml";
import { parseConfig } from "@switchyard/config";
import { events, ledger, policy } from "@switchyard/proto";
import { createLogger, Registry } from "@switchyard/telemetry";
import { createGatewayBooks } from "../src/accounting/index.js";
import { chartJsFile, PAGE_DIR } from "../src/dashboard/assets.js";
import { bucketKey, checkLevel } from "../src/dashboard/data.js";
import { createDashboard } from "../src/dashboard/index.js";
import { createGatewayMetrics } from "../src/metrics.js";
import { restApi } from "../src/rest/api.js";
import { Orchestrator } from "../src/orchestrator.js";
import { TenantResolver } from "../src/tenants.js";
import { envelope, fakeMesh, send, type SendOptions, type TestResponse } from "./http-harness.js";

const NOW = Date.UTC(2026, 10, 30, 12, 30);
const TRACE = "0af7651916cd43dd8448eb211c80319c";

/** What the fake ledger and policy answer, and what they were asked. */
interface Books {
  usageCalls: ledger.UsageRequest[];
  recentCalls: ledger.RecentRequestsRequest[];
  down?: boolean;
  policyDown?: boolean;
  /** A ledger from before GROUP_BY_REASON (a rolling upgrade): it refuses that grouping. */
  noReasonGrouping?: boolean;
}

const totals = (t: MessageInitShape<typeof ledger.UsageTotalsSchema>) => create(ledger.UsageTotalsSchema, t);
const record = (r: MessageInitShape<typeof events.UsageRecordSchema>) => create(events.UsageRecordSchema, { timeUnixMs: BigInt(NOW - 60_000), status: 200, ...r });

/** A ledger with four requests in the last hour (one error, one cache hit) and a policy with two models. */
function fakeBooks(books: Books) {
  const transport = createRouterTransport(({ service }) => {
    service(ledger.LedgerService, {
      usage: (req: ledger.UsageRequest) => {
        books.usageCalls.push(req);
        if (books.down) throw new ConnectError("the ledger's database (postgres) is unreachable; try again later", Code.Unavailable);
        if (books.noReasonGrouping && req.groupBy === ledger.GroupBy.REASON) throw new ConnectError("group_by: unknown value 9", Code.InvalidArgument);
        const all = totals({ requests: 4n, errors: 1n, costMicroUsd: 1_500n, baselineMicroUsd: 6_000n, savedMicroUsd: 4_500n, cacheHits: 1n, cacheSavedMicroUsd: 300n, ttftP50Ms: 12.5, ttftP95Ms: 40 });
        const groups: Record<number, { key: string; totals: ledger.UsageTotals }[]> = {
          [ledger.GroupBy.HOUR]: [{ key: bucketKey(NOW - 3_600_000, "hour"), totals: all }],
          [ledger.GroupBy.DAY]: [{ key: bucketKey(NOW, "day"), totals: all }],
          [ledger.GroupBy.MODEL]: [
            { key: "sim/a", totals: totals({ requests: 3n, costMicroUsd: 1_500n, ttftP50Ms: 12.5, ttftP95Ms: 40 }) },
            { key: "", totals: totals({ requests: 1n, errors: 1n }) },
          ],
          [ledger.GroupBy.TIER]: [{ key: "standard", totals: totals({ requests: 4n }) }],
          [ledger.GroupBy.CACHE]: [
            { key: "miss", totals: totals({ requests: 3n }) },
            { key: "hit", totals: totals({ requests: 1n, cacheHits: 1n }) },
          ],
          [ledger.GroupBy.TASK_TYPE]: [{ key: "chat", totals: totals({ requests: 4n }) }],
          [ledger.GroupBy.TENANT]: [{ key: "default", totals: all }, { key: "retired", totals: totals({ requests: 1n }) }],
          [ledger.GroupBy.REASON]: [
            { key: "tier standard: sim/a is the cheapest", totals: totals({ requests: 2n }) },
            { key: "not routed (rate_limited)", totals: totals({ requests: 1n, errors: 1n }) },
            { key: "pinned to sim/a by the client", totals: totals({ requests: 1n }) },
          ],
        };
        return create(ledger.UsageResponseSchema, { sinceUnixMs: req.sinceUnixMs, untilUnixMs: req.untilUnixMs, totals: all, groupBy: req.groupBy, groups: groups[req.groupBy] ?? [] });
      },
      recentRequests: (req: ledger.RecentRequestsRequest) => {
        books.recentCalls.push(req);
        if (books.down) throw new ConnectError("the ledger's database (postgres) is unreachable; try again later", Code.Unavailable);
        const records = [
          record({ requestId: "req_4", model: "sim/a", reason: "tier standard: sim/a is the cheapest", cache: "hit", cacheKind: "exact", traceId: TRACE }),
          record({ requestId: "req_3", model: "sim/a", reason: "tier standard: sim/a is the cheapest", cache: "miss", costMicroUsd: 500n, traceId: TRACE }),
          record({ requestId: "req_2", model: "sim/a", reason: "pinned to sim/a by the client", costMicroUsd: 1_000n }),
          record({ requestId: "req_1", status: 429, errorCode: "rate_limited" }),
          // Older than any period: on the list, not in the period's reasons.
          record({ requestId: "req_0", reason: "long ago", timeUnixMs: BigInt(NOW - 40 * 86_400_000) }),
        ];
        return { records: records.slice(0, req.limit || 50) };
      },
    } as never);
    service(policy.PolicyService, {
      listModels: () => {
        if (books.policyDown) throw new ConnectError("connection refused", Code.Unavailable);
        return {
          models: [
            { provider: "sim", model: "a", tiers: ["standard"], circuit: "closed", priceSource: "config", price: { inputMicroUsdPerMtok: 100_000n, outputMicroUsdPerMtok: 400_000n } },
            { provider: "sim", model: "b", tiers: ["complex"], circuit: "open", priceSource: "cli", price: { inputMicroUsdPerMtok: 3_000_000n, outputMicroUsdPerMtok: 15_000_000n } },
          ],
        };
      },
    } as never);
  });
  return { ledger: createClient(ledger.LedgerService, transport), policy: createClient(policy.PolicyService, transport) };
}

interface Page {
  port: number;
  books: Books;
  logs: string[];
  get(path: string, options?: Omit<SendOptions, "path">): Promise<TestResponse>;
  close(): Promise<void>;
}

const open: Page[] = [];
afterEach(async () => {
  for (const p of open.splice(0)) await p.close();
});

/** The REST API with the dashboard, on a real port, over fakes (the edge in front, as in the gateway). */
async function startPage(overrides: Record<string, unknown> = {}): Promise<Page> {
  const config = parseConfig(toYaml(overrides));
  const books: Books = { usageCalls: [], recentCalls: [] };
  const { ledger: ledgerClient, policy: policyClient } = fakeBooks(books);
  const { mesh } = fakeMesh();
  const logs: string[] = [];
  const logger = createLogger({ service: "gateway", level: "info", write: (line) => logs.push(line) });
  const metrics = createGatewayMetrics(new Registry());
  const gatewayBooks = createGatewayBooks({ config, logger, metrics, bus: undefined, ledger: mesh.ledger });
  const tenants = new TenantResolver(config);
  const dashboard = createDashboard({
    config,
    tenants,
    ledger: ledgerClient,
    policy: policyClient,
    readiness: () => ({ ready: true, checks: { policy: "serving", cache: "unreachable (degraded: requests still served)", nats: "connected", usage_records: "jetstream" } }),
    logger,
    now: () => NOW,
  });
  const api = restApi({ config, orchestrator: new Orchestrator(mesh, config, metrics, logger), policy: mesh.policy, tenants, accounting: gatewayBooks.accounting, metrics, logger, dashboard });
  const server = http.createServer((req, res) => {
    void api(req, res).then((handled) => {
      if (!handled) {
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("not handled\n");
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const page: Page = {
    port,
    books,
    logs,
    get: (path, options = {}) => send(port, { method: "GET", ...options, path }),
    close: async () => {
      await gatewayBooks.close(1_000);
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    },
  };
  open.push(page);
  return page;
}

/** A GET that keeps the raw bytes (for gzip). */
function getBytes(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path, headers, agent: false }, (res) => {
        const parts: Buffer[] = [];
        res.on("data", (c: Buffer) => parts.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      })
      .on("error", reject);
  });
}

describe("the page and its files", () => {
  it("serves the page with a strict CSP and no inline code, so the CSP costs it nothing", async () => {
    const page = await startPage();
    const res = await page.get("/dashboard");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("text/html; charset=utf-8");
    const csp = String(res.headers["content-security-policy"]);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain("unsafe-inline");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(res.headers["x-content-type-options"]).toBe("nosniff");
    // Every script is a file of ours; no inline script, handler or style attribute the CSP would block.
    const scripts = [...res.text.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.map((s) => /src="([^"]+)"/.exec(s[1]!)?.[1])).toEqual(["/dashboard/vendor/chart.umd.min.js", "/dashboard/dashboard.js"]);
    for (const s of scripts) expect(s[2]!.trim()).toBe("");
    expect(res.text).not.toMatch(/\son[a-z]+=|\sstyle=|<style/i);
    expect(res.text).not.toMatch(/https?:\/\//);
    expect((await page.get("/dashboard/")).text).toBe(res.text);
  });

  it("serves its script, style and Chart.js with their content types; Chart.js is the pinned package's own build", async () => {
    const page = await startPage();
    const js = await page.get("/dashboard/dashboard.js");
    expect(js.status).toBe(200);
    expect(js.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect(js.text).toBe(readFileSync(join(PAGE_DIR, "dashboard.js"), "utf8"));
    expect((await page.get("/dashboard/dashboard.css")).headers["content-type"]).toBe("text/css; charset=utf-8");
    expect((await page.get("/dashboard/favicon.svg")).headers["content-type"]).toBe("image/svg+xml");
    const chart = await page.get("/dashboard/vendor/chart.umd.min.js");
    expect(chart.status).toBe(200);
    expect(chart.text).toBe(readFileSync(chartJsFile(), "utf8"));
    const pinned = (JSON.parse(readFileSync(join(PAGE_DIR, "..", "package.json"), "utf8")) as { dependencies: Record<string, string> }).dependencies["chart.js"];
    expect(pinned).toMatch(/^\d+\.\d+\.\d+$/);
    expect(chart.text.slice(0, 200)).toContain(`Chart.js v${pinned}`);
  });

  it("revalidates by ETag (304), gzips when asked, answers HEAD without a body", async () => {
    const page = await startPage();
    const first = await page.get("/dashboard/dashboard.js");
    expect(first.headers["cache-control"]).toBe("no-cache");
    const etag = String(first.headers.etag);
    const again = await page.get("/dashboard/dashboard.js", { headers: { "if-none-match": etag } });
    expect(again.status).toBe(304);
    expect(again.text).toBe("");
    const gz = await getBytes(page.port, "/dashboard/vendor/chart.umd.min.js", { "accept-encoding": "gzip, br" });
    expect(gz.headers["content-encoding"]).toBe("gzip");
    expect(gz.body.length).toBeLessThan(100_000);
    expect(gunzipSync(gz.body).toString("utf8")).toBe(readFileSync(chartJsFile(), "utf8"));
    const head = await page.get("/dashboard", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(Number(head.headers["content-length"])).toBeGreaterThan(1000);
    expect(head.text).toBe("");
  });

  it("answers 404 for an unknown file and 405 for a method other than GET or HEAD", async () => {
    const page = await startPage();
    const missing = await page.get("/dashboard/nope.js");
    expect(missing.status).toBe(404);
    expect(envelope(missing).code).toBe("not_found");
    expect(missing.headers["content-security-policy"]).toBeDefined();
    expect((await page.get("/dashboard/../package.json")).status).toBe(404);
    const post = await page.get("/dashboard", { method: "POST", body: "{}", headers: { "content-type": "application/json" } });
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe("GET, HEAD");
    expect((await page.get("/dashboard/api/overview", { method: "POST", body: "{}", headers: { "content-type": "application/json" } })).status).toBe(405);
  });

  it("passes the edge first: a foreign Host (DNS rebinding) or a foreign Origin gets 403", async () => {
    const page = await startPage();
    const rebound = await page.get("/dashboard/api/overview", { headers: { host: "attacker.example:8080" } });
    expect(rebound.status).toBe(403);
    expect(envelope(rebound).code).toBe("host_not_allowed");
    const foreign = await page.get("/dashboard/api/requests", { headers: { origin: "https://evil.example" } });
    expect(foreign.status).toBe(403);
    expect(envelope(foreign).code).toBe("origin_not_allowed");
    expect(page.books.recentCalls).toHaveLength(0);
  });
});

describe("the data, as the ledger and the policy give it", () => {
  it("overview: the ledger's totals and breakdowns over the period, with the ratios beside them", async () => {
    const page = await startPage();
    const res = await page.get("/dashboard/api/overview?period=7d");
    expect(res.status).toBe(200);
    expect(res.headers["cache-control"]).toBe("no-store");
    const o = res.json();
    expect(o).toMatchObject({ tenant: "", period: "7d", bucket: "hour", since_unix_ms: NOW - 7 * 86_400_000, until_unix_ms: NOW });
    expect(o.totals).toMatchObject({ requests: 4, errors: 1, error_rate: 0.25, cost_micro_usd: 1500, baseline_micro_usd: 6000, saved_micro_usd: 4500, saved_percent: 75, cache_hits: 1, cache_hit_rate: 0.25, cache_saved_micro_usd: 300, ttft_p50_ms: 12.5, ttft_p95_ms: 40 });
    // Every hour of the week, zeros where the ledger has nothing, the ledger's figures where it has.
    expect(o.series).toHaveLength(7 * 24 + 1);
    const filled = o.series.filter((p: { requests: number }) => p.requests > 0);
    expect(filled).toEqual([expect.objectContaining({ key: bucketKey(NOW - 3_600_000, "hour"), start_unix_ms: Date.UTC(2026, 10, 30, 11), cost_micro_usd: 1500, baseline_micro_usd: 6000 })]);
    expect(o.models).toEqual([expect.objectContaining({ key: "sim/a", requests: 3, share: 0.75 }), expect.objectContaining({ key: "", requests: 1, share: 0.25, error_rate: 1 })]);
    expect(o.cache.map((g: { key: string }) => g.key)).toEqual(["miss", "hit"]);
    expect(o.tiers[0]).toMatchObject({ key: "standard", share: 1 });
    expect(o.task_types[0]).toMatchObject({ key: "chat" });
    // Tenants to choose from: the configured one and any the books know.
    expect(o.tenants).toEqual(["default", "retired"]);
    // Reasons over the whole period, as the ledger groups them, with their share of its requests.
    expect(o.reasons).toEqual([
      { reason: "tier standard: sim/a is the cheapest", requests: 2, share: 0.5 },
      { reason: "not routed (rate_limited)", requests: 1, share: 0.25 },
      { reason: "pinned to sim/a by the client", requests: 1, share: 0.25 },
    ]);
    // One period for every query, all tenants, and the tenant list always over all tenants.
    for (const call of page.books.usageCalls) expect([call.sinceUnixMs, call.untilUnixMs]).toEqual([BigInt(NOW - 7 * 86_400_000), BigInt(NOW)]);
    expect(new Set(page.books.usageCalls.map((c) => c.groupBy))).toEqual(
      new Set([ledger.GroupBy.HOUR, ledger.GroupBy.TIER, ledger.GroupBy.MODEL, ledger.GroupBy.CACHE, ledger.GroupBy.TASK_TYPE, ledger.GroupBy.TENANT, ledger.GroupBy.REASON]),
    );
  });

  it("overview: a tenant and a period are passed to the ledger; days for 30 days; a bad period is a 400", async () => {
    const page = await startPage();
    const o = (await page.get("/dashboard/api/overview?tenant=default&period=30d")).json();
    expect(o.bucket).toBe("day");
    expect(o.series).toHaveLength(31);
    const byGroup = (g: ledger.GroupBy) => page.books.usageCalls.find((c) => c.groupBy === g)!;
    expect(byGroup(ledger.GroupBy.DAY).tenant).toBe("default");
    expect(byGroup(ledger.GroupBy.TENANT).tenant).toBe("");
    expect(byGroup(ledger.GroupBy.REASON).tenant).toBe("default");
    expect(page.books.recentCalls).toHaveLength(0); // the overview reads groups, not records
    expect((await page.get("/dashboard/api/overview?period=24h")).json().series).toHaveLength(25);
    const bad = await page.get("/dashboard/api/overview?period=1y");
    expect(bad.status).toBe(400);
    expect(envelope(bad)).toMatchObject({ param: "period" });
    expect((await page.get("/dashboard/api/requests?limit=0")).status).toBe(400);
    expect((await page.get("/dashboard/api/nothing")).status).toBe(404);
  });

  it("requests: each with its route, cost, cache kind and trace id; a Jaeger link only when telemetry.jaeger_url is set", async () => {
    const plain = await startPage();
    const records = (await plain.get("/dashboard/api/requests?limit=3")).json().records;
    expect(records).toHaveLength(3);
    expect(records[0]).toMatchObject({ request_id: "req_4", model: "sim/a", cache: "hit", cache_kind: "exact", trace_id: TRACE, status: 200 });
    expect(records[0].trace_url).toBeUndefined();
    expect(records[1]).toMatchObject({ request_id: "req_3", cost_micro_usd: 500 });
    const linked = await startPage({ telemetry: { jaeger_url: "http://jaeger.internal:16686/" } });
    const withLinks = (await linked.get("/dashboard/api/requests")).json().records;
    expect(withLinks[0].trace_url).toBe(`http://jaeger.internal:16686/trace/${TRACE}`);
    // No trace id, no link.
    expect(withLinks[2].trace_url).toBeUndefined();
  });

  it("live: prices and circuit per model, readiness lines with a level, and whether the ledger's database answers", async () => {
    const page = await startPage();
    const live = (await page.get("/dashboard/api/live")).json();
    expect(live.models).toEqual([
      expect.objectContaining({ id: "sim/a", circuit: "closed", input_micro_usd_per_mtok: 100_000, output_micro_usd_per_mtok: 400_000, price_source: "config" }),
      expect.objectContaining({ id: "sim/b", circuit: "open", price_source: "cli" }),
    ]);
    expect(live.ready).toBe(true);
    expect(live.checks).toEqual([
      { name: "policy", value: "serving", level: "ok" },
      { name: "cache", value: "unreachable (degraded: requests still served)", level: "warn" },
      { name: "nats", value: "connected", level: "ok" },
      { name: "usage_records", value: "jetstream", level: "ok" },
    ]);
    expect(live.ledger).toMatchObject({ level: "ok", detail: "answering" });
  });

  it("shows the overview without reasons when the ledger is older than the reason grouping (a rolling upgrade)", async () => {
    const page = await startPage();
    page.books.noReasonGrouping = true;
    const overview = await page.get("/dashboard/api/overview");
    expect(overview.status).toBe(200);
    expect(overview.json()).toMatchObject({ reasons: [], totals: expect.objectContaining({ requests: 4 }) });
  });

  it("says what is down instead of failing: the ledger's own message (503), the policy's absence in live", async () => {
    const page = await startPage();
    page.books.down = true;
    page.books.policyDown = true;
    const overview = await page.get("/dashboard/api/overview");
    expect(overview.status).toBe(503);
    expect(envelope(overview)).toMatchObject({ code: "ledger_unavailable" });
    expect(envelope(overview).message).toContain("database (postgres) is unreachable");
    const live = await page.get("/dashboard/api/live");
    expect(live.status).toBe(200);
    expect(live.json().ledger).toMatchObject({ level: "down", detail: expect.stringContaining("unreachable") });
    expect(live.json().models).toEqual([]);
    expect(live.json().models_error).toMatch(/policy service did not answer/);
  });

  it("reads readiness lines as a person would", () => {
    expect(checkLevel("serving")).toBe("ok");
    expect(checkLevel("disabled")).toBe("ok");
    expect(checkLevel("reconnecting")).toBe("warn");
    expect(checkLevel("stale: ledger unavailable")).toBe("warn");
    expect(checkLevel("unreachable")).toBe("down");
    expect(checkLevel("closed")).toBe("down");
  });
});

const TENANT_KEY = "sk-dash-tenant-0123456789";
const ADMIN_KEY = "sk-dash-admin-0123456789";
const sha = (k: string) => createHash("sha256").update(k).digest("hex");

describe("admin key", () => {
  it("with tenant keys: the page is public, its data needs an admin key (not a tenant's), as AdminService", async () => {
    const page = await startPage({ tenants: [{ name: "acme", api_key_sha256: [sha(TENANT_KEY)] }], gateway: { admin_key_sha256: [sha(ADMIN_KEY)] } });
    expect((await page.get("/dashboard")).status).toBe(200);
    for (const path of ["/dashboard/api/overview", "/dashboard/api/requests", "/dashboard/api/live"]) {
      const none = await page.get(path);
      expect(none.status, path).toBe(401);
      expect(envelope(none).code).toBe("missing_api_key");
      const tenant = await page.get(path, { headers: { authorization: `Bearer ${TENANT_KEY}` } });
      expect(tenant.status, path).toBe(403);
      expect(envelope(tenant).code).toBe("not_admin");
      expect((await page.get(path, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })).status, path).toBe(200);
      expect((await page.get(path, { headers: { "x-api-key": ADMIN_KEY } })).status, path).toBe(200);
    }
    // Refused calls never reached the ledger, and the log has the refusal, not the key.
    expect(page.books.usageCalls.length).toBe(7 * 2); // seven Usage calls per overview, two overviews let through
    expect(page.logs.some((l) => l.includes("dashboard call refused"))).toBe(true);
    expect(page.logs.join("\n")).not.toContain(ADMIN_KEY);
    expect(page.logs.join("\n")).not.toContain(TENANT_KEY);
  });

  it("with tenant keys and no admin key configured, the data is off (403 admin_disabled)", async () => {
    const page = await startPage({ tenants: [{ name: "acme", api_key_sha256: [sha(TENANT_KEY)] }] });
    const res = await page.get("/dashboard/api/live", { headers: { authorization: `Bearer ${TENANT_KEY}` } });
    expect(res.status).toBe(403);
    expect(envelope(res).code).toBe("admin_disabled");
  });

  it("with no keys at all (a local machine) the data is open", async () => {
    const page = await startPage();
    expect((await page.get("/dashboard/api/live")).status).toBe(200);
  });
});
