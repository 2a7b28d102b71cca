import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { provider as pb } from "@switchyard/proto";
import { createLogger } from "@switchyard/telemetry";
import type { GenerateInput, ProviderAdapter, ProviderEvent } from "../src/adapters/types.js";
import { ProviderHandler } from "../src/handler.js";
import { HealthTracker } from "../src/health.js";
import { ConcurrencyLimiter } from "../src/limiter.js";

/** An adapter that answers at once and then lingers, as a stream does while its body drains. */
class LingeringAdapter implements ProviderAdapter {
  async *stream(_input: GenerateInput, signal: AbortSignal): AsyncGenerator<ProviderEvent> {
    yield { type: "delta", text: "hi" };
    yield { type: "finish", finishReason: "stop", responseModel: "m", usage: { inputTokens: 1, outputTokens: 1, cachedInputTokens: 0, cacheWriteInputTokens: 0, reasoningTokens: 0, estimated: false } };
    await sleep(300, undefined, { signal });
  }
}

function handlerWith(adapter: ProviderAdapter, tracker: HealthTracker): ProviderHandler {
  const limiter = new ConcurrencyLimiter("p", 1);
  return new ProviderHandler(
    new Map([["p", { name: "p", system: "test", adapter, limiter, models: new Set(["m"]), firstTokenTimeoutMs: 1_000 }]]),
    tracker,
    createLogger({ service: "provider", write: () => {} }),
  );
}

describe("ProviderHandler", () => {
  it("records a caller that leaves right after the finish event as a complete answer, timed at the finish", async () => {
    const tracker = new HealthTracker();
    const handler = handlerWith(new LingeringAdapter(), tracker);
    const caller = new AbortController();
    const ctx = { signal: caller.signal, timeoutMs: () => undefined } as unknown as HandlerContext;
    const stream = handler.streamGenerate(create(pb.StreamGenerateRequestSchema, { provider: "p", model: "m" }), ctx);
    for await (const r of stream) {
      if (r.event.case === "finish") {
        caller.abort();
        break;
      }
    }
    const [o] = tracker.snapshot();
    expect(o).toMatchObject({ requests: 1, inFlight: 0, errorRate: 0, consecutiveFailures: 0 });
    expect(o!.ewmaTotalMs).toBeGreaterThan(0);
    expect(o!.ewmaTotalMs).toBeLessThan(250);
  });

  it("frees its capacity slot at the finish event, even when the caller never resumes the stream", async () => {
    const tracker = new HealthTracker();
    const handler = handlerWith(new LingeringAdapter(), tracker); // one slot
    const ctx = { signal: new AbortController().signal, timeoutMs: () => undefined } as unknown as HandlerContext;
    const request = create(pb.StreamGenerateRequestSchema, { provider: "p", model: "m" });
    for (let i = 0; i < 3; i++) {
      // Read up to the finish event, then walk away without return(): what an in-process caller does.
      const it = handler.streamGenerate(request, ctx)[Symbol.asyncIterator]();
      let next = await it.next();
      while (!next.done && next.value.event.case !== "finish") next = await it.next();
      expect(next.done).toBe(false);
    }
    expect(tracker.snapshot()[0]).toMatchObject({ requests: 3, inFlight: 0 });
  });
});
