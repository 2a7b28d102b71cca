import { afterAll, describe, expect, it } from "vitest";
import { setTimeout as sleep } from "node:timers/promises";
import { context, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { provider } from "@switchyard/proto";
import { createLogger, tracer } from "@switchyard/telemetry";
import { createRpcServer, createServiceClient, HealthStatus, serverTracing } from "../src/index.js";

const exporter = new InMemorySpanExporter();
const tracerProvider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
tracerProvider.register();
afterAll(() => tracerProvider.shutdown());

describe("tracing interceptors", () => {
  it("runs every step of a server-streaming handler inside the RPC's server span, child of the client span", async () => {
    const activeDuringSteps: string[] = [];
    const server = createRpcServer({
      name: "test",
      host: "127.0.0.1",
      port: 0,
      health: new HealthStatus([]),
      logger: createLogger({ service: "test", level: "error" }),
      interceptors: [serverTracing()],
      routes: (router) =>
        router.service(provider.ProviderService, {
          streamGenerate: async function* () {
            for (let i = 0; i < 3; i++) {
              await sleep(10); // resumes on a fresh tick: the context must still be the span's
              activeDuringSteps.push(trace.getActiveSpan()?.spanContext().spanId ?? "none");
              tracer().startSpan(`work ${i}`).end();
              yield { event: { case: "delta" as const, value: { text: `${i}` } } };
            }
          },
        }),
    });
    const { port } = await server.listen();
    const c = createServiceClient(provider.ProviderService, `http://127.0.0.1:${port}`);
    const outer = tracer().startSpan("caller");
    await context.with(trace.setSpan(context.active(), outer), async () => {
      for await (const _ of c.client.streamGenerate({})) void _;
    });
    outer.end();
    c.close();
    await server.close(100);

    const spans = exporter.getFinishedSpans();
    const serverSpan = spans.find((s) => s.name === "switchyard.provider.v1.ProviderService/StreamGenerate" && s.kind === 1)!;
    const clientSpan = spans.find((s) => s.name === "switchyard.provider.v1.ProviderService/StreamGenerate" && s.kind === 2)!;
    expect(serverSpan).toBeDefined();
    expect(clientSpan).toBeDefined();
    expect(clientSpan.parentSpanContext?.spanId).toBe(outer.spanContext().spanId);
    expect(serverSpan.parentSpanContext?.spanId).toBe(clientSpan.spanContext().spanId);
    expect(serverSpan.spanContext().traceId).toBe(outer.spanContext().traceId);
    expect(activeDuringSteps).toEqual(Array(3).fill(serverSpan.spanContext().spanId));
    const work = spans.filter((s) => s.name.startsWith("work "));
    expect(work).toHaveLength(3);
    for (const w of work) expect(w.parentSpanContext?.spanId).toBe(serverSpan.spanContext().spanId);
    // The server span lasts as long as the stream (three 10 ms steps, each of which may end up to
    // a millisecond early on libuv's whole-millisecond clock), not just until the handler was called. Compared by duration: the SDK anchors each span's start to Date.now() (whole
    // milliseconds) and times its length with performance.now(), so the end times of two spans can
    // disagree by up to a millisecond, while a span's own duration is exact.
    const ms = ([s, ns]: [number, number]) => s * 1e3 + ns / 1e6;
    expect(ms(serverSpan.duration)).toBeGreaterThanOrEqual(25);
    expect(ms(clientSpan.duration)).toBeGreaterThanOrEqual(ms(serverSpan.duration) - 1);
  });
});
