/** Standalone SVG plots of routing curves (no dependencies; open in any browser). */
import type { MultiMetrics, PairPoint } from "./evaluate.js";

/** One plotted series. */
export interface Series {
  name: string;
  points: { x: number; y: number; label?: string }[];
  kind: "line" | "dashed" | "points";
  color: string;
}

/** A chart: axes, title and series. */
export interface Chart {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Logarithmic x axis (for costs spanning orders of magnitude). */
  xLog?: boolean;
  series: Series[];
}

const WIDTH = 860;
const HEIGHT = 560;
const MARGIN = { left: 78, right: 220, top: 48, bottom: 62 };

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function fmt(x: number): string {
  return Number(x.toFixed(2)).toString();
}

function tickLabel(value: number, log: boolean): string {
  if (log) return value >= 0.01 ? `$${value.toPrecision(2)}` : `$${value.toExponential(0)}`;
  return Number(value.toPrecision(3)).toString();
}

/** Renders a chart as a standalone SVG document. */
export function renderChart(chart: Chart): string {
  const all = chart.series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && (!chart.xLog || p.x > 0));
  const tx = (x: number): number => (chart.xLog ? Math.log10(x) : x);
  let x0 = Math.min(...all.map((p) => tx(p.x)));
  let x1 = Math.max(...all.map((p) => tx(p.x)));
  let y0 = Math.min(...all.map((p) => p.y));
  let y1 = Math.max(...all.map((p) => p.y));
  if (!Number.isFinite(x0)) [x0, x1, y0, y1] = [0, 1, 0, 1];
  const padX = (x1 - x0 || 1) * 0.05;
  const padY = (y1 - y0 || 1) * 0.08;
  x0 -= padX;
  x1 += padX;
  y0 -= padY;
  y1 += padY;
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const px = (x: number): number => MARGIN.left + ((tx(x) - x0) / (x1 - x0)) * plotW;
  const py = (y: number): number => MARGIN.top + (1 - (y - y0) / (y1 - y0)) * plotH;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`);
  out.push(`<text x="${WIDTH / 2 - MARGIN.right / 2}" y="26" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(chart.title)}</text>`);
  for (let t = 0; t <= 5; t++) {
    const yv = y0 + ((y1 - y0) * t) / 5;
    const y = py(yv);
    out.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${fmt(y)}" y2="${fmt(y)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${MARGIN.left - 8}" y="${fmt(y + 4)}" text-anchor="end">${tickLabel(yv, false)}</text>`);
    const xv = x0 + ((x1 - x0) * t) / 5;
    const x = MARGIN.left + (t / 5) * plotW;
    out.push(`<line x1="${fmt(x)}" x2="${fmt(x)}" y1="${MARGIN.top}" y2="${MARGIN.top + plotH}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${fmt(x)}" y="${MARGIN.top + plotH + 18}" text-anchor="middle">${tickLabel(chart.xLog ? Math.pow(10, xv) : xv, !!chart.xLog)}</text>`);
  }
  out.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 18}" text-anchor="middle">${escapeXml(chart.xLabel)}</text>`);
  out.push(`<text transform="translate(20 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(chart.yLabel)}</text>`);
  chart.series.forEach((series, s) => {
    const pts = series.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && (!chart.xLog || p.x > 0));
    const color = escapeXml(series.color);
    if (series.kind === "points") {
      for (const p of pts) {
        out.push(`<circle cx="${fmt(px(p.x))}" cy="${fmt(py(p.y))}" r="4" fill="${color}"/>`);
        if (p.label) out.push(`<text x="${fmt(px(p.x) + 6)}" y="${fmt(py(p.y) - 6)}" font-size="10" fill="#333">${escapeXml(p.label)}</text>`);
      }
    } else if (pts.length > 0) {
      const d = pts.map((p, i) => `${i === 0 ? "M" : "L"}${fmt(px(p.x))},${fmt(py(p.y))}`).join(" ");
      out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${series.kind === "dashed" ? ' stroke-dasharray="6 4"' : ""}/>`);
    }
    const ly = MARGIN.top + 10 + s * 20;
    const lx = MARGIN.left + plotW + 16;
    if (series.kind === "points") out.push(`<circle cx="${lx + 10}" cy="${ly}" r="4" fill="${color}"/>`);
    else out.push(`<line x1="${lx}" x2="${lx + 20}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${series.kind === "dashed" ? ' stroke-dasharray="6 4"' : ""}/>`);
    out.push(`<text x="${lx + 26}" y="${ly + 4}">${escapeXml(series.name)}</text>`);
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/** The many-model plot: the router's quality/cost curve, every single model (labelled) and their convex hull. */
export function qualityCostSvg(metrics: MultiMetrics, title = "Router quality vs cost"): string {
  return renderChart({
    title,
    xLabel: "mean cost per prompt (USD, log scale)",
    yLabel: "mean quality",
    xLog: true,
    series: [
      { name: "router (λ sweep)", kind: "line", color: "#1f77b4", points: thin(metrics.curve.filter((p) => p.cost > 0)).map((p) => ({ x: p.cost, y: p.quality })) },
      { name: "zero router (hull)", kind: "dashed", color: "#7f7f7f", points: metrics.hull.map((p) => ({ x: p.cost, y: p.quality })) },
      { name: "single models", kind: "points", color: "#d62728", points: metrics.models.map((p) => ({ x: p.cost, y: p.quality, label: shortName(p.model) })) },
    ],
  });
}

/** The two-model plot: quality against the share of strong-model calls, for one or more rankings. */
export function pairSvg(curves: { name: string; curve: PairPoint[] }[], title: string): string {
  const palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"];
  const first = curves[0]?.curve ?? [];
  const weak = first[0]?.quality ?? 0;
  const strong = first[first.length - 1]?.quality ?? 1;
  return renderChart({
    title,
    xLabel: "share of calls to the strong model",
    yLabel: "mean quality",
    series: [
      ...curves.map((c, i) => ({ name: c.name, kind: "line" as const, color: palette[i % palette.length] as string, points: thin(c.curve).map((p) => ({ x: p.strongShare, y: p.quality })) })),
      { name: "random", kind: "dashed", color: "#7f7f7f", points: [{ x: 0, y: weak }, { x: 1, y: strong }] },
      { name: "95% of strong", kind: "dashed", color: "#d62728", points: [{ x: 0, y: 0.95 * strong }, { x: 1, y: 0.95 * strong }] },
    ],
  });
}

/** Keeps at most `max` points of a curve, evenly spread, always with both ends. */
function thin<T>(points: readonly T[], max = 400): T[] {
  if (points.length <= max) return [...points];
  const step = (points.length - 1) / (max - 1);
  return Array.from({ length: max }, (_, i) => points[Math.round(i * step)] as T);
}

function shortName(model: string): string {
  const slash = model.lastIndexOf("/");
  return slash >= 0 ? model.slice(slash + 1) : model;
}
