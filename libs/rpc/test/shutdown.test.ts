import { describe, expect, it } from "vitest";
import { setTimeout as sleep } from "node:timers/promises";
import { provider } from "@switchyard/proto";
import { createLogger } from "@switchyard/telemetry";
import { createRpcServer, createServiceClient, HealthStatus } from "../src/index.js";

const logger = createLogger({ service: "test", level: "error" });

/** A server whose one streaming method sends `count` deltas, `gapMs` apart. */
async function slowStreamServer(count: number, gapMs: number) {
  const server = createRpcServer({
    name: "test",
    host: "127.0.0.1",
    port: 0,
    health: new HealthStatus([]),
    logger,
    routes: (router) =>
      router.service(provider.ProviderService, {
        streamGenerate: async function* () {
          for (let i = 0; i < count; i++) {
            await sleep(gapMs);
            yield { event: { case: "delta" as const, value: { text: `${i}` } } };
          }
        },
      }),
  });
  const { port } = await server.listen();
  return { server, url: `http://127.0.0.1:${port}` };
}

async function drain(stream: AsyncIterable<provider.StreamGenerateResponse>): Promise<string[]> {
  const got: string[] = [];
  try {
    for await (const m of stream) if (m.event.case === "delta") got.push(m.event.value.text);
  } catch {
    got.push("<cut>");
  }
  return got;
}

describe("graceful shutdown", () => {
  it("lets an in-flight stream finish, then stops; new connections are refused meanwhile", async () => {
    const { server, url } = await slowStreamServer(5, 60);
    const c = createServiceClient(provider.ProviderService, url);
    const result = drain(c.client.streamGenerate({}));
    await sleep(100);
    const closed = server.close(5_000);
    await sleep(20);
    const late = createServiceClient(provider.ProviderService, url);
    await expect(drain(late.client.streamGenerate({}))).resolves.toEqual(["<cut>"]);
    expect(await result).toEqual(["0", "1", "2", "3", "4"]);
    const started = performance.now();
    await closed;
    expect(performance.now() - started).toBeLessThan(1_000);
    c.close();
    late.close();
  });

  it("cuts a stream that outlives the grace period", async () => {
    const { server, url } = await slowStreamServer(100, 50);
    const c = createServiceClient(provider.ProviderService, url);
    const result = drain(c.client.streamGenerate({}));
    await sleep(120);
    const started = performance.now();
    await server.close(300);
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(2_000);
    const got = await result;
    expect(got.at(-1)).toBe("<cut>");
    expect(got.length).toBeLessThan(20);
    c.close();
  });
});
