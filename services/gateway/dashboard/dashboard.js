// Switchyard's dashboard: reads /dashboard/api/{overview,requests,live} and draws them with Chart.js
// (the global `Chart`, loaded just before this script). Every figure comes from the gateway; this file
// only formats it. No build step: the gateway serves this file as it is.
// A classic deferred script, not a module: browsers send `Origin` with module script requests, and
// the gateway's edge answers requests carrying an Origin only for the origins in gateway.cors_origins.
// @ts-check
(() => {
  "use strict";

  /** @type {any} */
  const Chart = /** @type {any} */ (window).Chart;
  const KEY_STORAGE = "switchyard.dashboard.admin-key";
  const REQUESTS_EVERY_MS = 5_000;
  const OVERVIEW_EVERY_MS = 10_000;
  const COLORS = ["#2f6fde", "#1d8a54", "#d97706", "#9333ea", "#0891b2", "#dc2626", "#4b5563", "#65a30d", "#db2777", "#0d9488"];

  /** @param {string} id */
  const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

  const state = {
    /** A 401/403 stops the refresh loop until a key is given. */
    blocked: false,
    /** @type {Record<string, any>} */
    charts: {},
    /** The last overview, read by chart tooltips. @type {any} */
    overview: undefined,
    inFlight: { overview: false, requests: false, live: false },
  };

  class ApiError extends Error {
    /** @param {number} status @param {string} message */
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // ---- formatting (the only arithmetic here) ----

  /** Integer micro-dollars as dollars, with more decimals for small amounts. @param {number} micro */
  function usd(micro) {
    const v = micro / 1e6;
    const abs = Math.abs(v);
    const digits = abs === 0 || abs >= 100 ? 2 : abs >= 1 ? 4 : 6;
    return v.toLocaleString("en-US", { style: "currency", currency: "USD", minimumFractionDigits: 2, maximumFractionDigits: digits });
  }
  /** A ratio in [0, 1] as a percentage. @param {number} r */
  function pct(r) {
    const p = r * 100;
    return `${p.toFixed(p !== 0 && Math.abs(p) < 10 ? 1 : 0)}%`;
  }
  /** @param {number} v */
  function ms(v) {
    if (!(v > 0)) return "–";
    return v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`;
  }
  /** @param {number} n */
  const int = (n) => n.toLocaleString("en-US");
  /** @param {string} key */
  const groupName = (key) => key || "(none)";

  /**
   * An element with text and attributes: all page content goes through textContent, never HTML.
   * @param {string} tag @param {Record<string, string>} [attrs] @param {(Node|string)[]} [children]
   */
  function el(tag, attrs = {}, children = []) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    for (const c of children) e.append(c);
    return e;
  }

  // ---- data ----

  /** @param {string} path @param {Record<string, string>} [params] */
  async function getJson(path, params = {}) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(params)) if (v) url.searchParams.set(k, v);
    const key = sessionStorage.getItem(KEY_STORAGE);
    const res = await fetch(url, { headers: key ? { authorization: `Bearer ${key}` } : {}, cache: "no-store" });
    const body = await res.json().catch(() => null);
    if (!res.ok) throw new ApiError(res.status, body?.error?.message ?? `the gateway answered ${res.status}`);
    return body;
  }

  function filters() {
    return { tenant: /** @type {HTMLSelectElement} */ ($("tenant")).value, period: /** @type {HTMLSelectElement} */ ($("period")).value };
  }

  /** @param {"overview"|"requests"|"live"} name @param {() => Promise<void>} load */
  async function guarded(name, load) {
    if (state.blocked || state.inFlight[name]) return;
    state.inFlight[name] = true;
    try {
      await load();
      $("error").hidden = true;
      $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      showError(err);
    } finally {
      state.inFlight[name] = false;
    }
  }

  /** @param {unknown} err */
  function showError(err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      state.blocked = true;
      $("key-reason").textContent = err.message;
      $("key-panel").hidden = false;
      $("error").hidden = true;
      return;
    }
    $("error").textContent = err instanceof Error ? err.message : String(err);
    $("error").hidden = false;
  }

  const loadOverview = () =>
    guarded("overview", async () => {
      const { tenant, period } = filters();
      const o = await getJson("/dashboard/api/overview", { tenant, period });
      state.overview = o;
      renderOverview(o);
    });

  const loadRequests = () =>
    guarded("requests", async () => {
      const { tenant } = filters();
      renderRequests(await getJson("/dashboard/api/requests", { tenant, limit: "50" }));
    });

  const loadLive = () => guarded("live", async () => renderLive(await getJson("/dashboard/api/live")));

  function refreshAll() {
    return Promise.all([loadOverview(), loadRequests(), loadLive()]);
  }

  // ---- rendering ----

  /** @param {any} o */
  function renderOverview(o) {
    const t = o.totals;
    $("kpi-cost").textContent = usd(t.cost_micro_usd);
    $("kpi-tokens").textContent = `${int(t.input_tokens)} in / ${int(t.output_tokens)} out tokens`;
    $("kpi-baseline").textContent = usd(t.baseline_micro_usd);
    $("kpi-saved").textContent = usd(t.saved_micro_usd);
    $("kpi-saved-pct").textContent = t.saved_percent === null ? "no baseline spend yet" : `${t.saved_percent.toFixed(1)}% of baseline`;
    $("kpi-requests").textContent = int(t.requests);
    $("kpi-errors").textContent = `${int(t.errors)} errors (${pct(t.error_rate)})`;
    $("kpi-cache").textContent = `${int(t.cache_hits)} (${pct(t.cache_hit_rate)})`;
    $("kpi-cache-saved").textContent = `saved ${usd(t.cache_saved_micro_usd)}`;
    $("kpi-ttft").textContent = t.ttft_p50_ms > 0 ? `${ms(t.ttft_p50_ms)} / ${ms(t.ttft_p95_ms)}` : "–";

    const select = /** @type {HTMLSelectElement} */ ($("tenant"));
    const chosen = select.value;
    const names = ["", ...o.tenants];
    if ([...select.options].map((x) => x.value).join("\n") !== names.join("\n")) {
      select.replaceChildren(...names.map((n) => el("option", { value: n }, [n || "all tenants"])));
      select.value = names.includes(chosen) ? chosen : "";
    }

    const empty = t.requests === 0;
    const hourly = o.bucket === "hour";
    const label = (/** @type {any} */ p) =>
      new Date(p.start_unix_ms).toLocaleString(undefined, hourly ? { weekday: "short", hour: "2-digit", minute: "2-digit" } : { month: "short", day: "numeric" });
    draw("chart-spend", empty, {
      type: "bar",
      data: {
        labels: o.series.map(label),
        datasets: [
          { label: "spend", data: o.series.map((/** @type {any} */ p) => p.cost_micro_usd / 1e6), backgroundColor: COLORS[0] },
          { label: "baseline", data: o.series.map((/** @type {any} */ p) => p.baseline_micro_usd / 1e6), backgroundColor: "#b8c2d1" },
        ],
      },
      options: {
        scales: { x: { ticks: { maxRotation: 0, autoSkipPadding: 12 } }, y: { beginAtZero: true, ticks: { callback: (/** @type {number} */ v) => usd(v * 1e6) } } },
        plugins: { tooltip: { callbacks: { label: (/** @type {any} */ c) => `${c.dataset.label}: ${usd(c.raw * 1e6)}` } } },
      },
    });
    draw("chart-tiers", empty, share("doughnut", o.tiers, "tiers"));
    draw("chart-models", empty, share("bar", o.models, "models"));
    draw("chart-cache", empty, share("doughnut", o.cache, "cache"));
    const timed = o.models.filter((/** @type {any} */ m) => m.ttft_p95_ms > 0);
    draw("chart-ttft", timed.length === 0, {
      type: "bar",
      data: {
        labels: timed.map((/** @type {any} */ m) => groupName(m.key)),
        datasets: [
          { label: "p50", data: timed.map((/** @type {any} */ m) => m.ttft_p50_ms), backgroundColor: COLORS[0] },
          { label: "p95", data: timed.map((/** @type {any} */ m) => m.ttft_p95_ms), backgroundColor: COLORS[2] },
        ],
      },
      options: {
        scales: { y: { beginAtZero: true, ticks: { callback: (/** @type {number} */ v) => ms(v) } } },
        plugins: { tooltip: { callbacks: { label: (/** @type {any} */ c) => `${c.dataset.label}: ${ms(c.raw)}` } } },
      },
    });

    fillTable(
      "models-table",
      o.models.map((/** @type {any} */ m) => [
        el("td", {}, [groupName(m.key)]),
        num(int(m.requests)),
        num(pct(m.share)),
        num(usd(m.cost_micro_usd)),
        num(usd(m.saved_micro_usd)),
        num(pct(m.error_rate), m.errors > 0 ? "status-bad" : ""),
        num(ms(m.ttft_p50_ms)),
        num(ms(m.ttft_p95_ms)),
        num(ms(m.total_p95_ms)),
      ]),
      9,
    );
    fillTable(
      "reasons-table",
      o.reasons.slice(0, 12).map((/** @type {any} */ r) => [el("td", {}, [r.reason]), num(int(r.requests)), num(pct(r.share))]),
      3,
    );
  }

  /**
   * A share chart (requests per group); tooltips show the share the gateway computed.
   * @param {"doughnut"|"bar"} type @param {any[]} groups @param {string} name
   */
  function share(type, groups, name) {
    const tooltip = { callbacks: { label: (/** @type {any} */ c) => `${int(c.raw)} requests (${pct(state.overview?.[name]?.[c.dataIndex]?.share ?? 0)})` } };
    return {
      type,
      data: {
        labels: groups.map((g) => groupName(g.key)),
        datasets: [{ label: "requests", data: groups.map((g) => g.requests), backgroundColor: type === "bar" ? COLORS[0] : groups.map((_, i) => COLORS[i % COLORS.length]) }],
      },
      options:
        type === "bar"
          ? { indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } } }, plugins: { legend: { display: false }, tooltip } }
          : { plugins: { legend: { position: "right" }, tooltip } },
    };
  }

  /**
   * Creates a chart once, then swaps its data; an empty one is covered by "no requests yet".
   * @param {string} id @param {boolean} empty @param {any} config
   */
  function draw(id, empty, config) {
    const canvas = /** @type {HTMLCanvasElement} */ ($(id));
    /** @type {HTMLElement} */ (canvas.nextElementSibling).hidden = !empty;
    const existing = state.charts[id];
    if (existing && existing.config.type === config.type) {
      existing.data.labels = config.data.labels;
      existing.data.datasets = config.data.datasets;
      existing.update("none");
      return;
    }
    existing?.destroy();
    state.charts[id] = new Chart(canvas, config);
  }

  /** @param {string} text @param {string} [cls] */
  function num(text, cls = "") {
    return el("td", { class: `num ${cls}`.trim() }, [text]);
  }

  /** @param {string} id @param {HTMLElement[][]} rows @param {number} columns */
  function fillTable(id, rows, columns) {
    const body = /** @type {HTMLTableElement} */ ($(id)).tBodies[0];
    if (!body) return;
    if (rows.length === 0) body.replaceChildren(el("tr", {}, [el("td", { class: "empty-row", colspan: String(columns) }, ["no requests yet"])]));
    else body.replaceChildren(...rows.map((cells) => el("tr", {}, cells)));
  }

  /** @param {{records: any[]}} data */
  function renderRequests(data) {
    const body = /** @type {HTMLTableElement} */ ($("requests-table")).tBodies[0];
    if (!body) return;
    if (data.records.length === 0) {
      body.replaceChildren(el("tr", {}, [el("td", { class: "empty-row", colspan: "12" }, ["no requests yet"])]));
      return;
    }
    body.replaceChildren(
      ...data.records.map((r) => {
        const when = new Date(r.time_unix_ms);
        const route = el("td", {}, [el("strong", {}, [r.model || "(no model answered)"])]);
        if (r.requested_model && r.requested_model !== r.model) route.append(el("span", { class: "muted" }, [` asked ${r.requested_model}`]));
        if (r.fallbacks > 0) route.append(el("span", { class: "muted" }, [` after ${r.fallbacks} fallback(s)`]));
        if (r.reason) route.append(el("span", { class: "reason" }, [r.reason]));
        const cache = el("span", { class: `tag ${r.cache === "hit" ? "hit" : ""}` }, [r.cache_kind ? `${r.cache} (${r.cache_kind})` : r.cache || "–"]);
        const saved = num(usd(r.saved_micro_usd));
        if (r.baseline_model) saved.title = `baseline ${r.baseline_model}: ${usd(r.baseline_micro_usd)}`;
        const status = el("td", { class: r.status >= 400 ? "status-bad" : "" }, [`${r.status}${r.error_code ? ` ${r.error_code}` : ""}${r.streamed ? " · stream" : ""}`]);
        const trace = r.trace_url
          ? el("a", { class: "trace mono", href: r.trace_url, target: "_blank", rel: "noopener noreferrer", title: r.trace_id }, [r.trace_id])
          : el("code", { class: "trace", title: r.trace_id }, [r.trace_id || "–"]);
        return el("tr", { "data-request-id": r.request_id }, [
          el("td", { title: when.toISOString(), class: "num" }, [when.toLocaleTimeString()]),
          el("td", {}, [el("code", {}, [r.request_id])]),
          el("td", {}, [r.tenant]),
          route,
          el("td", {}, [r.tier || "–"]),
          el("td", {}, [cache]),
          num(usd(r.cost_micro_usd)),
          saved,
          num(ms(r.ttft_ms)),
          num(ms(r.total_ms)),
          status,
          el("td", {}, [trace]),
        ]);
      }),
    );
  }

  /** @param {any} live */
  function renderLive(live) {
    const pill = $("ready");
    pill.textContent = live.ready ? "ready" : "not ready";
    pill.className = `pill ${live.ready ? "ok" : "down"}`;
    $("live-updated").textContent = `checked ${new Date(live.checked_at_unix_ms).toLocaleTimeString()}`;
    const checks = [{ name: "ledger database", value: `${live.ledger.detail} (${live.ledger.latency_ms} ms)`, level: live.ledger.level }, ...live.checks];
    $("checks").replaceChildren(...checks.map((c) => el("li", {}, [el("span", { class: "name" }, [c.name]), el("span", { class: `tag ${c.level}` }, [c.value])])));
    const body = /** @type {HTMLTableElement} */ ($("live-models")).tBodies[0];
    if (!body) return;
    if (live.models.length === 0) {
      body.replaceChildren(el("tr", {}, [el("td", { class: "empty-row", colspan: "7" }, [live.models_error ?? "no models"])]));
      return;
    }
    const level = (/** @type {string} */ circuit) => (circuit === "closed" ? "ok" : circuit === "half_open" ? "warn" : "down");
    body.replaceChildren(
      ...live.models.map((/** @type {any} */ m) =>
        el("tr", {}, [
          el("td", {}, [m.id]),
          el("td", {}, [m.tiers.join(", ")]),
          num(usd(m.input_micro_usd_per_mtok)),
          num(usd(m.output_micro_usd_per_mtok)),
          num(usd(m.cached_input_micro_usd_per_mtok)),
          el("td", {}, [m.price_source]),
          el("td", {}, [el("span", { class: `tag ${level(m.circuit)}` }, [m.circuit])]),
        ]),
      ),
    );
  }

  // ---- wiring ----

  function start() {
    if (!Chart) {
      showError(new Error("Chart.js did not load"));
      return;
    }
    Chart.defaults.animation = false;
    Chart.defaults.maintainAspectRatio = false;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;

    $("tenant").addEventListener("change", () => void refreshAll());
    $("period").addEventListener("change", () => void loadOverview());
    $("refresh").addEventListener("click", () => void refreshAll());
    $("key-button").addEventListener("click", () => ($("key-panel").hidden = !$("key-panel").hidden));
    $("key-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const input = /** @type {HTMLInputElement} */ ($("key-input"));
      const key = input.value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_STORAGE, key);
      input.value = "";
      state.blocked = false;
      $("key-panel").hidden = true;
      void refreshAll();
    });
    $("key-forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORAGE);
      /** @type {HTMLInputElement} */ ($("key-input")).value = "";
    });
    setInterval(() => {
      if (document.hidden) return;
      void loadRequests();
      void loadLive();
    }, REQUESTS_EVERY_MS);
    setInterval(() => {
      if (!document.hidden) void loadOverview();
    }, OVERVIEW_EVERY_MS);
    void refreshAll();
  }

  start();
})();
