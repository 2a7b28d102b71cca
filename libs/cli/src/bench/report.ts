import type { LoadResult } from "./loadgen.js";

/** One row of the benchmark: a target, an API and mode, a concurrency. */
export interface BenchRow {
  target: string;
  api: "openai" | "grpc";
  stream: boolean;
  concurrency: number;
  requests: number;
  errors: number;
  hung: number;
  errorKinds: Record<string, number>;
  perSecond: number;
  /** Time to first answer text (streamed) or whole answer (not streamed). */
  ttft: { p50: number; p99: number };
  total: { p50: number; p99: number };
  /** Minus the direct call at the same concurrency and mode (OpenAI streamed for gRPC streamed). */
  added?: { ttftP50: number; ttftP99: number; totalP50: number };
  /** CPU time per request of each process of the target (µs), where its processes are known. */
  cpuUsPerRequest?: Record<string, number>;
  /** Largest resident set size seen per process during the run (MB). */
  peakRssMb?: Record<string, number>;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** A row from a load result. */
export function toRow(target: string, api: "openai" | "grpc", stream: boolean, concurrency: number, r: LoadResult): BenchRow {
  return {
    target,
    api,
    stream,
    concurrency,
    requests: r.requests,
    errors: r.errors,
    hung: r.hung,
    errorKinds: r.errorKinds,
    perSecond: ((r.requests - r.errors) / r.elapsedMs) * 1000,
    ttft: { p50: percentile(r.ttftMs, 50), p99: percentile(r.ttftMs, 99) },
    total: { p50: percentile(r.totalMs, 50), p99: percentile(r.totalMs, 99) },
  };
}

/** Fills `added` from the direct rows of the same mode and concurrency. */
export function addDeltas(rows: BenchRow[]): void {
  for (const row of rows) {
    if (row.target === "direct") continue;
    const direct = rows.find((d) => d.target === "direct" && d.stream === row.stream && d.concurrency === row.concurrency);
    if (!direct) continue;
    row.added = {
      ttftP50: row.ttft.p50 - direct.ttft.p50,
      ttftP99: row.ttft.p99 - direct.ttft.p99,
      totalP50: row.total.p50 - direct.total.p50,
    };
  }
}

/** The rows as a plain-text table, one line per row. */
export function table(rows: BenchRow[]): string {
  const head = ["target", "api", "mode", "conc", "req/s", "errors", "TTFT p50", "TTFT p99", "added p50", "added p99", "total p50", "CPU µs/req"];
  const lines = rows.map((r) => [
    r.target,
    r.api,
    r.stream ? "stream" : "json",
    String(r.concurrency),
    r.perSecond.toFixed(0),
    r.errors === 0 ? "0" : `${r.errors}${r.hung ? ` (${r.hung} hung)` : ""}`,
    r.ttft.p50.toFixed(1),
    r.ttft.p99.toFixed(1),
    r.added ? r.added.ttftP50.toFixed(1) : "",
    r.added ? r.added.ttftP99.toFixed(1) : "",
    r.total.p50.toFixed(1),
    r.cpuUsPerRequest ? targetCpu(r.cpuUsPerRequest).toFixed(0) : "",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd();
  const errors = rows
    .filter((r) => r.errors > 0)
    .map((r) => `  ${r.target} ${r.api} ${r.stream ? "stream" : "json"} c=${r.concurrency}: ${Object.entries(r.errorKinds).map(([k, n]) => `${n} x ${k}`).join("; ")}`);
  return [fmt(head), ...lines.map(fmt), ...(errors.length ? ["", "errors:", ...errors] : [])].join("\n") + "\n";
}

/** CPU per request of the target's own processes (the load generator excluded). */
export function targetCpu(cpu: Record<string, number>): number {
  return Object.entries(cpu).reduce((sum, [k, v]) => (k === "client" ? sum : sum + v), 0);
}

const COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d", "#bab0ac"];

/**
 * Grouped bars of requests per second by concurrency, one panel per API and mode, one bar per
 * target: the picture of who keeps up under load.
 */
export function svg(rows: BenchRow[], title: string): string {
  const panels = [...new Set(rows.map((r) => `${r.api} ${r.stream ? "streamed" : "non-streamed"}`))];
  const targets = [...new Set(rows.map((r) => r.target))];
  const levels = [...new Set(rows.map((r) => r.concurrency))].sort((a, b) => a - b);
  const panelW = 420;
  const panelH = 260;
  const top = 60;
  const width = 40 + panels.length * panelW;
  const height = top + panelH + 110;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="20" y="24" font-size="16">${escapeXml(title)}</text>`,
  ];
  panels.forEach((panel, p) => {
    const x0 = 60 + p * panelW;
    const inPanel = rows.filter((r) => `${r.api} ${r.stream ? "streamed" : "non-streamed"}` === panel);
    const max = Math.max(1, ...inPanel.map((r) => r.perSecond));
    const plotW = panelW - 80;
    const groupW = plotW / levels.length;
    const barW = (groupW - 12) / targets.length;
    out.push(`<text x="${x0}" y="${top - 10}" font-size="13">${escapeXml(panel)}: requests/s</text>`);
    out.push(`<line x1="${x0}" y1="${top + panelH}" x2="${x0 + plotW}" y2="${top + panelH}" stroke="#333"/>`);
    for (let t = 0; t <= 4; t++) {
      const v = (max * t) / 4;
      const y = top + panelH - (panelH * t) / 4;
      out.push(`<text x="${x0 - 6}" y="${y + 4}" text-anchor="end" fill="#555">${v.toFixed(0)}</text>`);
      out.push(`<line x1="${x0}" y1="${y}" x2="${x0 + plotW}" y2="${y}" stroke="#eee"/>`);
    }
    levels.forEach((c, i) => {
      const gx = x0 + i * groupW + 6;
      out.push(`<text x="${gx + (groupW - 12) / 2}" y="${top + panelH + 16}" text-anchor="middle">c=${c}</text>`);
      targets.forEach((t, j) => {
        const row = inPanel.find((r) => r.target === t && r.concurrency === c);
        if (!row) return;
        const h = (row.perSecond / max) * panelH;
        out.push(`<rect x="${(gx + j * barW).toFixed(1)}" y="${(top + panelH - h).toFixed(1)}" width="${(barW - 1).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[j % COLORS.length]}"><title>${escapeXml(`${t} c=${c}: ${row.perSecond.toFixed(0)}/s`)}</title></rect>`);
      });
    });
  });
  targets.forEach((t, j) => {
    const x = 60 + j * 170;
    const y = top + panelH + 50;
    out.push(`<rect x="${x}" y="${y - 10}" width="12" height="12" fill="${COLORS[j % COLORS.length]}"/><text x="${x + 18}" y="${y}">${escapeXml(t)}</text>`);
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}
