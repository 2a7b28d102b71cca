import { createHash, randomUUID } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestMesh, type TestMesh } from "./support.js";

/**
 * The dashboard in a real browser: Debian's Chromium driven by playwright-core (no browser
 * download), against the real six-process mesh after real traffic. CI installs Chromium
 * (.ci/run) and this test fails there without it; elsewhere it is skipped when Chromium is absent.
 */
const CHROMIUM = process.env.SWITCHYARD_CHROMIUM ?? "/usr/bin/chromium";
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_CHROMIUM && process.env.CI) throw new Error(`the dashboard's browser test needs Chromium at ${CHROMIUM} (apt-get install chromium chromium-driver; .ci/run does)`);

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
/** Screenshots land here (gitignored); README's copy is docs/dashboard.png. */
const OUTPUT = join(ROOT, ".test-output", "dashboard");
const JAEGER = "http://localhost:16686";

/** Flags that let Debian's Chromium run headless here, as root, on a machine with no outside network. */
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

interface Sent {
  requestId: string;
  traceId: string;
  model: string;
  cache: string;
  costUsd: number;
}

/** One chat completion through the REST API; what its headers (and, streamed, its last chunk) said. */
async function chat(httpUrl: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<Sent> {
  const res = await fetch(`${httpUrl}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`chat answered ${res.status}: ${text}`);
  let costUsd = Number(res.headers.get("x-switchyard-cost-usd") ?? "NaN");
  if (body.stream) {
    // The cost of a stream is known at its end: the last chunk's switchyard.cost_usd.
    for (const line of text.split("\n")) {
      if (!line.startsWith("data: {")) continue;
      const info = (JSON.parse(line.slice(6)) as { switchyard?: { cost_usd: string } }).switchyard;
      if (info) costUsd = Number(info.cost_usd);
    }
  } else costUsd = Number((JSON.parse(text) as { switchyard: { cost_usd: string } }).switchyard.cost_usd);
  return {
    requestId: res.headers.get("x-switchyard-request-id") ?? "",
    traceId: (res.headers.get("traceparent") ?? "").split("-")[1] ?? "",
    model: res.headers.get("x-switchyard-model") ?? "",
    cache: res.headers.get("x-switchyard-cache") ?? "",
    costUsd,
  };
}

/** Polls the dashboard's own data until every id is on the books (records reach the ledger asynchronously). */
async function waitForRecords(httpUrl: string, ids: string[], headers: Record<string, string> = {}): Promise<void> {
  const deadline = Date.now() + 20_000;
  let seen: string[] = [];
  while (Date.now() < deadline) {
    const res = await fetch(`${httpUrl}/dashboard/api/requests?limit=100`, { headers });
    if (res.ok) {
      seen = ((await res.json()) as { records: { request_id: string }[] }).records.map((r) => r.request_id);
      if (ids.every((id) => seen.includes(id))) return;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the ledger never showed ${ids.filter((id) => !seen.includes(id)).join(", ")}`);
}

/** The dollar amount a table cell shows ("$0.00012" -> 0.00012). */
const dollars = (text: string) => Number(text.replace(/[$,]/g, ""));

async function launch(): Promise<Browser> {
  // playwright-core gives every launch a fresh, empty profile (its own --user-data-dir).
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/** Collects what a person would see in the console as an error: console.error, uncaught exceptions, CSP violations. */
function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(msg.text());
  });
  page.on("pageerror", (err) => errors.push(err.message));
  return errors;
}

describe.skipIf(!HAVE_CHROMIUM)("the dashboard in Chromium, on a mesh with traffic", () => {
  let m: TestMesh;
  let browser: Browser;
  const sent: Record<string, Sent> = {};

  beforeAll(async () => {
    // As `npm start` runs it: NATS on (usage records through JetStream to the ledger), with a price bucket of its own.
    const nats = { enabled: true, url: process.env.NATS_URL ?? "nats://127.0.0.1:4222", price_bucket: `sy-test-${randomUUID().slice(0, 8)}` };
    [m, browser] = await Promise.all([startTestMesh({ nats, telemetry: { log_level: "warn", jaeger_url: JAEGER } }), launch()]);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await m?.stop();
  });

  it("says \"no requests yet\" on a fresh mesh, and still shows the live state", async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errors = watchErrors(page);
    await page.goto(`${m.httpUrl}/dashboard`);
    await page.locator("#live-models tbody tr").first().waitFor();
    await page.locator("#kpi-requests", { hasText: "0" }).waitFor();
    expect(await page.locator("#requests-table tbody").innerText()).toBe("no requests yet");
    expect(await page.locator(".chart .empty:visible").count()).toBe(5);
    expect(await page.locator("#kpi-saved-pct").innerText()).toBe("no baseline spend yet");
    expect(await page.locator("#live-models tbody").innerText()).toContain("sim/large");
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);

  it("loads with no console error, draws every chart with data, lists each request with its route, cost and trace", async () => {
    sent.routed = await chat(m.httpUrl, { model: "switchyard/auto", messages: [{ role: "user", content: "Prove that there are infinitely many primes, step by step." }] });
    sent.streamed = await chat(m.httpUrl, { model: "switchyard/auto", stream: true, messages: [{ role: "user", content: "hi" }] });
    sent.pinned = await chat(m.httpUrl, { model: "sim/large", messages: [{ role: "user", content: "Write a haiku about routers." }] });
    // The same deterministic request twice: the second is answered by the cache (stored after the first ends).
    const cached = { model: "switchyard/auto", temperature: 0, messages: [{ role: "user", content: "What is the capital of France?" }] };
    sent.miss = await chat(m.httpUrl, cached);
    let tries = 0;
    for (; tries < 20 && sent.hit?.cache !== "hit"; tries++) {
      await new Promise((r) => setTimeout(r, 100));
      sent.hit = await chat(m.httpUrl, cached);
    }
    const requests = 4 + tries;
    await waitForRecords(m.httpUrl, Object.values(sent).map((s) => s.requestId));
    expect(sent.hit?.cache).toBe("hit");
    expect(sent.pinned?.model).toBe("sim/large");
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errors = watchErrors(page);
    const response = await page.goto(`${m.httpUrl}/dashboard`);
    expect(response?.status()).toBe(200);
    expect(response?.headers()["content-security-policy"]).toContain("script-src 'self'");

    // Every request just sent is in the list, with the route and cost its response announced.
    for (const [name, s] of Object.entries(sent)) {
      const row = page.locator(`#requests-table tr[data-request-id="${s.requestId}"]`);
      await row.waitFor({ timeout: 15_000 });
      const cells = await row.locator("td").allInnerTexts();
      expect(cells[3], name).toContain(s.model);
      expect(dollars(cells[6]!), name).toBeCloseTo(s.costUsd, 6);
      const trace = row.locator("a.trace");
      expect(await trace.getAttribute("href"), name).toBe(`${JAEGER}/trace/${s.traceId}`);
      expect(await trace.innerText(), name).toBe(s.traceId);
    }
    const hitRow = page.locator(`#requests-table tr[data-request-id="${sent.hit!.requestId}"]`);
    expect(await hitRow.locator("td").nth(5).innerText()).toMatch(/^hit \((exact|semantic)\)$/);
    expect(await hitRow.locator("td").nth(6).innerText()).toBe("$0.00");
    expect(await page.locator(`#requests-table tr[data-request-id="${sent.streamed!.requestId}"] td`).nth(10).innerText()).toContain("stream");

    // The charts were drawn by Chart.js, each with data points that are not all zero.
    await page.waitForFunction(() => (window as unknown as { Chart?: { getChart(id: string): unknown } }).Chart?.getChart("chart-ttft") !== undefined, undefined, { timeout: 10_000 });
    const charts = await page.evaluate(() => {
      const C = (window as unknown as { Chart: { getChart(id: string): { data: { labels: unknown[]; datasets: { data: number[] }[] } } | undefined } }).Chart;
      return Object.fromEntries(
        ["chart-spend", "chart-tiers", "chart-models", "chart-cache", "chart-ttft"].map((id) => {
          const chart = C.getChart(id);
          return [id, { labels: chart?.data.labels.map(String) ?? [], nonZero: chart?.data.datasets.flatMap((d) => d.data).filter((v) => v > 0).length ?? 0 }];
        }),
      );
    });
    for (const [id, c] of Object.entries(charts)) expect(c.nonZero, id).toBeGreaterThan(0);
    expect(charts["chart-models"]!.labels).toContain("sim/large");
    expect(charts["chart-cache"]!.labels).toContain("hit");
    expect(await page.locator(".chart .empty:visible").count()).toBe(0);

    // The summary: every request sent, one cache hit, a saving against the baseline.
    expect(await page.locator("#kpi-requests").innerText()).toBe(String(requests));
    expect(await page.locator("#kpi-cache").innerText()).toMatch(/^1 \(\d+(\.\d)?%\)$/);
    expect(dollars(await page.locator("#kpi-saved").innerText())).toBeGreaterThan(0);
    expect(await page.locator("#reasons-table tbody tr").count()).toBeGreaterThan(1);

    // Live: prices and circuit state per model, and the ledger's database answering.
    await page.locator("#live-models tbody tr").first().waitFor();
    const live = await page.locator("#live-models tbody").innerText();
    for (const model of ["sim/small", "sim/medium", "sim/large"]) expect(live).toContain(model);
    expect(live).toContain("closed");
    expect(await page.locator("#checks").innerText()).toMatch(/ledger database\s+answering/);
    expect(await page.locator("#checks").innerText()).toMatch(/nats\s+connected/);
    expect(await page.locator("#checks").innerText()).toMatch(/usage_records\s+jetstream/);

    // A request sent while the page is open shows up on its own (the list refreshes every 5 s).
    const late = await chat(m.httpUrl, { model: "switchyard/auto", messages: [{ role: "user", content: "One more, while you watch." }] });
    await page.locator(`#requests-table tr[data-request-id="${late.requestId}"]`).waitFor({ timeout: 15_000 });

    // Another period: the overview is read again, the spend chart in hours of the last day.
    const hoursBefore = await page.evaluate(() => (window as unknown as { Chart: { getChart(id: string): { data: { labels: unknown[] } } } }).Chart.getChart("chart-spend").data.labels.length);
    await page.selectOption("#period", "24h");
    await page.waitForFunction(
      (before) => (window as unknown as { Chart: { getChart(id: string): { data: { labels: unknown[] } } } }).Chart.getChart("chart-spend").data.labels.length < before,
      hoursBefore,
      { timeout: 10_000 },
    );
    expect(await page.locator("#kpi-requests").innerText()).toBe(String(requests + 1));

    mkdirSync(OUTPUT, { recursive: true });
    await page.screenshot({ path: join(OUTPUT, "dashboard.png"), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  }, 90_000);
});

const TENANT_KEY = "sk-dashboard-tenant-0123456789";
const ADMIN_KEY = "sk-dashboard-admin-0123456789";
const sha = (k: string) => createHash("sha256").update(k).digest("hex");

describe.skipIf(!HAVE_CHROMIUM)("the dashboard behind an admin key, when tenants have keys", () => {
  let m: TestMesh;
  let browser: Browser;
  let requestId = "";

  beforeAll(async () => {
    [m, browser] = await Promise.all([
      startTestMesh({ tenants: [{ name: "acme", api_key_sha256: [sha(TENANT_KEY)] }], gateway: { admin_key_sha256: [sha(ADMIN_KEY)] } }),
      launch(),
    ]);
    requestId = (await chat(m.httpUrl, { model: "switchyard/auto", messages: [{ role: "user", content: "hi" }] }, { authorization: `Bearer ${TENANT_KEY}` })).requestId;
    await waitForRecords(m.httpUrl, [requestId], { authorization: `Bearer ${ADMIN_KEY}` });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await m?.stop();
  });

  it("shows the page but no data without the key, refuses a tenant's key, and shows the books with the admin key (kept out of the URL)", async () => {
    // Without a key, and with a tenant's key, the data calls are refused.
    expect((await fetch(`${m.httpUrl}/dashboard/api/overview`)).status).toBe(401);
    expect((await fetch(`${m.httpUrl}/dashboard/api/live`, { headers: { authorization: `Bearer ${TENANT_KEY}` } })).status).toBe(403);

    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errors = watchErrors(page);
    await page.goto(`${m.httpUrl}/dashboard`);
    await page.locator("#key-panel").waitFor({ state: "visible", timeout: 10_000 });
    expect(await page.locator("#key-reason").innerText()).toMatch(/admin key/);
    expect(await page.locator(`tr[data-request-id="${requestId}"]`).count()).toBe(0);

    await page.fill("#key-input", ADMIN_KEY);
    await page.click("#key-form button[type=submit]");
    await page.locator(`#requests-table tr[data-request-id="${requestId}"]`).waitFor({ timeout: 15_000 });
    expect(await page.locator("#key-panel").isHidden()).toBe(true);
    expect(page.url()).not.toContain(ADMIN_KEY);
    expect(await page.locator("#tenant").innerText()).toContain("acme");
    // The only errors are the browser's own reports of the refused (401) calls before the key was given.
    expect(errors.filter((e) => !/status of 401/.test(e))).toEqual([]);
    await page.close();
  }, 90_000);
});

