import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

/** A file the page needs, held in memory: served as is or gzipped, never read from disk per request. */
export interface Asset {
  contentType: string;
  body: Buffer;
  gzipped: Buffer;
  /** Strong validator: the SHA-256 of the body. */
  etag: string;
}

/**
 * The page's own files: `services/gateway/dashboard/` (plain HTML, CSS and an ES module: no build
 * step), found from this module's place in `src/dashboard/` or `dist/dashboard/`.
 */
export const PAGE_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "dashboard");

const PAGE_FILES: Record<string, { file: string; contentType: string }> = {
  "/dashboard": { file: "index.html", contentType: "text/html; charset=utf-8" },
  "/dashboard/dashboard.js": { file: "dashboard.js", contentType: "text/javascript; charset=utf-8" },
  "/dashboard/dashboard.css": { file: "dashboard.css", contentType: "text/css; charset=utf-8" },
  "/dashboard/favicon.svg": { file: "favicon.svg", contentType: "image/svg+xml" },
};

/** Where the page loads Chart.js from: the gateway serves the npm package's own UMD build. */
export const CHART_JS_PATH = "/dashboard/vendor/chart.umd.min.js";

/**
 * Every asset by URL path, loaded once. Chart.js comes from the `chart.js` package in
 * node_modules (pinned in the gateway's package.json), so no copy of it lives in the repository
 * and no CDN is involved.
 */
export function loadAssets(pageDir = PAGE_DIR): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  for (const [path, { file, contentType }] of Object.entries(PAGE_FILES)) assets.set(path, asset(readFileSync(join(pageDir, file)), contentType));
  assets.set("/dashboard/", assets.get("/dashboard")!);
  assets.set(CHART_JS_PATH, asset(readFileSync(chartJsFile()), "text/javascript; charset=utf-8"));
  return assets;
}

/** The minified UMD build of the installed chart.js (defines the global `Chart`). */
export function chartJsFile(): string {
  // The package exports only its ESM and CJS entry points; the UMD build sits beside them in dist/.
  const main = createRequire(import.meta.url).resolve("chart.js");
  return join(dirname(main), "chart.umd.min.js");
}

function asset(body: Buffer, contentType: string): Asset {
  return { contentType, body, gzipped: gzipSync(body, { level: 9 }), etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"` };
}
