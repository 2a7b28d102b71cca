import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/**
 * Loads `pg` inside vitest. Vitest starts its workers with the root config's resolve conditions
 * as `--conditions` flags, `import` among them, so the `require("pg-pool")` inside pg's CommonJS
 * resolves to pg-pool's ESM wrapper, whose namespace object is not the Pool class ("Class extends
 * value [object Module]"). Putting pg-pool's CommonJS module in the require cache under the
 * wrapper's path first makes pg get the class, as it does under plain Node. Only tests need this.
 */
export async function loadPg(): Promise<typeof import("pg").default> {
  const require = createRequire(import.meta.url);
  const resolved = require.resolve("pg-pool");
  if (resolved.endsWith(".mjs") && !require.cache[resolved]) {
    const commonJs = join(dirname(resolved), "..", "index.js");
    require(commonJs);
    require.cache[resolved] = require.cache[commonJs];
  }
  return (await import("pg")).default;
}

await loadPg();
