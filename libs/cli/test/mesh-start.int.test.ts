import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { ServiceExitedError } from "../src/mesh.js";
import { freePort } from "../src/ports.js";
import { startTestMesh } from "./support.js";

describe("starting the mesh", () => {
  it("names a service that exits before it is ready at once, instead of waiting out the deadline", { timeout: 60_000 }, async () => {
    const port = await freePort();
    const squatter = createServer();
    await new Promise<void>((r) => squatter.listen(port, "127.0.0.1", r));
    const started = Date.now();
    try {
      // The classifier's port is taken (as another process might take a port found free): it
      // cannot listen and exits. The test helper tries other ports twice, then gives up; here the
      // taken port is pinned, so every attempt fails the same way.
      const err = await startTestMesh({ ports: { classifier: port } }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ServiceExitedError);
      expect((err as Error).message).toMatch(/^classifier exited \(code \d+\) before it was ready$/);
      expect(Date.now() - started).toBeLessThan(30_000); // three attempts, none waited for the 30 s deadline
    } finally {
      squatter.close();
    }
  });
});
