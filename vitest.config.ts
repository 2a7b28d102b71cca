import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: { conditions: ["@switchyard/source", "node", "import", "default"] },
  ssr: { resolve: { conditions: ["@switchyard/source", "node", "import", "default"] } },
  test: {
    include: ["libs/*/test/**/*.test.ts", "services/*/test/**/*.test.ts", "deploy/test/**/*.test.ts"],
    testTimeout: 20_000,
    hookTimeout: 60_000,
  },
});
