import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport, type ServiceImpl } from "@connectrpc/connect";
import { readFileSync } from "node:fs";
import { defaultConfigPath, parseConfig } from "@switchyard/config";
import { cache, classifier, policy, provider } from "@switchyard/proto";
import { createLogger, Registry } from "@switchyard/telemetry";
import { GatewayError } from "../src/errors.js";
import { createGatewayMetrics } from "../src/metrics.js";
import { Orchestrator, StreamInterrupted, type CompletionEvent, type CompletionRequest } from "../src/orchestrator.js";

const config = parseConfig(readFileSync(defaultConfigPath(), "utf8"));
const price = { inputMicroUsdPerMtok: 1_000_000n, outputMicroUsdPerMtok: 2_000_000n, cachedInputMicroUsdPerMtok: 0n };
const plan = (...models: string[]) =>
  create(policy.RouteResponseSchema, {
    plan: { tier: "standard", reason: "test plan", routes: models.map((m) => ({ provider: "sim", model: m, price })) },
  });

type Impl<S extends Parameters<typeof createClient>[0]> = Partial<ServiceImpl<S>>;

interface Fakes {
  classifier?: Impl<typeof classifier.ClassifierService>;
  policy?: Impl<typeof policy.PolicyService>;
  cache?: Impl<typeof cache.CacheService>;
  provider?: Impl<typeof provider.ProviderService>;
}

const stored: cache.StoreRequest[] = [];

/** The batch methods of a fake, made from its single ones (as the real services do). */
function withBatches<T extends { classify?: unknown; lookup?: unknown }>(impl: T): T {
  const out: Record<string, unknown> = { ...impl };
  const classify = impl.classify as ((r: classifier.ClassifyRequest) => unknown) | undefined;
  if (classify && !("classifyBatch" in impl)) {
    out.classifyBatch = async (req: classifier.ClassifyBatchRequest) => ({
      results: await Promise.all(req.requests.map(async (r) => {
        try {
          return { response: await classify(r) };
        } catch (err) {
          return { error: String((err as Error).message) };
        }
      })),
    });
  }
  const lookup = impl.lookup as ((r: cache.LookupRequest) => unknown) | undefined;
  if (lookup && !("lookupBatch" in impl)) out.lookupBatch = async (req: cache.LookupBatchRequest) => ({ responses: await Promise.all(req.requests.map((r) => lookup(r))) });
  return out as T;
}

function orchestrator(f: Fakes): Orchestrator {
  const transport = createRouterTransport(({ service }) => {
    service(classifier.ClassifierService, withBatches(f.classifier ?? { classify: () => ({ tier: "standard", taskType: "chat", predictedQuality: {} }) }));
    service(policy.PolicyService, f.policy ?? { route: () => plan("a", "b") });
    service(cache.CacheService, withBatches(f.cache ?? { lookup: () => ({ hit: false }), store: (req) => (stored.push(req), { stored: true }), storeBatch: (req) => (stored.push(...req.entries), { stored: req.entries.map(() => true) }) }));
    service(provider.ProviderService, f.provider ?? { streamGenerate: answer("hello world") });
  });
  return new Orchestrator(
    {
      classifier: createClient(classifier.ClassifierService, transport),
      policy: createClient(policy.PolicyService, transport),
      cache: createClient(cache.CacheService, transport),
      provider: createClient(provider.ProviderService, transport),
    },
    config,
    createGatewayMetrics(new Registry()),
    createLogger({ service: "test", level: "error" }),
  );
}

function answer(text: string) {
  return async function* (req: provider.StreamGenerateRequest) {
    for (const word of text.split(/(?<= )/)) yield { event: { case: "delta" as const, value: { text: word } } };
    yield { event: { case: "finish" as const, value: { finishReason: "stop", responseModel: req.model, usage: { inputTokens: 1000n, outputTokens: 500n } } } };
  };
}

function request(overrides: Partial<CompletionRequest> = {}): CompletionRequest {
  return {
    requestId: "req_test",
    tenant: "default",
    requestedModel: "switchyard/auto",
    choice: { kind: "auto" },
    messages: [{ role: "user", content: "hello" }],
    sampling: { stop: [] },
    maxOutputMicroUsdPerMtok: 0n,
    cacheMode: "default",
    receivedAt: performance.now(),
    ...overrides,
  };
}

async function collect(o: Orchestrator, req = request()): Promise<CompletionEvent[]> {
  const events: CompletionEvent[] = [];
  for await (const e of o.complete(req, new AbortController().signal)) events.push(e);
  return events;
}

const providerError = (kind: provider.ErrorKind, retryable: boolean, code = Code.Unavailable) =>
  new ConnectError("upstream trouble", code, undefined, [{ desc: provider.ProviderErrorSchema, value: create(provider.ProviderErrorSchema, { kind, retryable }) }]);

describe("orchestrator", () => {
  it("relays deltas in order, then prices the usage in integer micro-dollars", async () => {
    const events = await collect(orchestrator({}));
    expect(events.map((e) => e.type)).toEqual(["routed", "delta", "delta", "done"]);
    const done = events.at(-1) as Extract<CompletionEvent, { type: "done" }>;
    expect(events.filter((e) => e.type === "delta").map((e) => (e as { text: string }).text).join("")).toBe("hello world");
    expect(done.route).toMatchObject({ id: "sim/a", tier: "standard", cache: "bypass", fallbacks: 0 });
    expect(done.costMicroUsd).toBe(2000n); // 1000 x $1/M + 500 x $2/M = $0.002
  });

  it("falls back to the next route when the first fails before its first token", async () => {
    const o = orchestrator({
      provider: {
        streamGenerate: async function* (req) {
          if (req.model === "a") throw providerError(provider.ErrorKind.OVERLOADED, true);
          yield* answer("from b")(req);
        },
      },
    });
    const done = (await collect(o)).at(-1) as Extract<CompletionEvent, { type: "done" }>;
    expect(done.route).toMatchObject({ id: "sim/b", fallbacks: 1 });
    expect(done.route.reason).toMatch(/fell back 1 time/);
  });

  it("does not retry a request the provider rejected as bad", async () => {
    const o = orchestrator({ provider: { streamGenerate: async function* () { throw providerError(provider.ErrorKind.BAD_REQUEST, false, Code.InvalidArgument); } } });
    await expect(collect(o)).rejects.toMatchObject({ status: 400, code: "upstream_rejected_request" });
  });

  it("ends with a typed error when every route fails", async () => {
    const o = orchestrator({ provider: { streamGenerate: async function* () { throw providerError(provider.ErrorKind.CONNECTION, true); } } });
    await expect(collect(o)).rejects.toMatchObject({ status: 502, code: "upstream_unreachable" });
  });

  it("never passes off a stream broken mid-answer as whole, and never caches it", async () => {
    stored.length = 0;
    const o = orchestrator({
      provider: {
        streamGenerate: async function* () {
          yield { event: { case: "delta" as const, value: { text: "half an ans" } } };
          throw providerError(provider.ErrorKind.STREAM_BROKEN, true, Code.Aborted);
        },
      },
    });
    const events: CompletionEvent[] = [];
    await expect(async () => {
      for await (const e of o.complete(request({ sampling: { stop: [], temperature: 0 } }), new AbortController().signal)) events.push(e);
    }).rejects.toBeInstanceOf(StreamInterrupted);
    expect(events.map((e) => e.type)).toEqual(["routed", "delta"]);
    await new Promise((r) => setTimeout(r, 10));
    expect(stored).toHaveLength(0);
  });

  it("stores complete deterministic answers, those of one moment in one call", async () => {
    stored.length = 0;
    let calls = 0;
    const o = orchestrator({
      cache: {
        lookup: () => ({ hit: false }),
        storeBatch: (req) => (calls++, stored.push(...req.entries), { stored: req.entries.map(() => true) }),
      },
    });
    const deterministic = (content: string) => request({ messages: [{ role: "user", content }], sampling: { stop: [], temperature: 0 } });
    await Promise.all([collect(o, deterministic("one")), collect(o, deterministic("two")), collect(o, deterministic("three"))]);
    await new Promise((r) => setTimeout(r, 10));
    expect(stored.map((s) => s.key?.messages[0]?.content).sort()).toEqual(["one", "three", "two"]);
    expect(stored.every((s) => s.completion?.content === "hello world")).toBe(true);
    expect(calls).toBe(1);
  });

  it("uses the middle tier when the classifier is down", async () => {
    let askedTier = "";
    const o = orchestrator({
      classifier: { classify: () => { throw new ConnectError("down", Code.Unavailable); } },
      policy: { route: (req) => ((askedTier = req.tier), plan("a")) },
    });
    const done = (await collect(o)).at(-1) as Extract<CompletionEvent, { type: "done" }>;
    expect(askedTier).toBe("standard");
    expect(done.route.reason).toMatch(/^classifier unavailable/);
  });

  it("uses the policy's last plan for the tier when the policy goes down, and says so", async () => {
    let up = true;
    const o = orchestrator({ policy: { route: () => { if (!up) throw new ConnectError("down", Code.Unavailable); return plan("b"); } } });
    await collect(o);
    up = false;
    const done = (await collect(o)).at(-1) as Extract<CompletionEvent, { type: "done" }>;
    expect(done.route.id).toBe("sim/b");
    expect(done.route.reason).toMatch(/^policy unavailable, last known plan/);
    const fresh = orchestrator({ policy: { route: () => { throw new ConnectError("down", Code.Unavailable); } } });
    await expect(collect(fresh)).rejects.toMatchObject({ status: 503, code: "policy_unavailable" });
  });

  it("treats a cache slower than its budget as a miss", async () => {
    const o = orchestrator({ cache: { lookup: async () => (await new Promise((r) => setTimeout(r, 500)), { hit: true }), store: () => ({ stored: true }) } });
    const started = performance.now();
    const done = (await collect(o, request({ sampling: { stop: [], temperature: 0 } }))).at(-1) as Extract<CompletionEvent, { type: "done" }>;
    expect(done.route.cache).toBe("miss");
    expect(performance.now() - started).toBeLessThan(400);
  });

  it("replays a cache hit as a stream at no cost, reporting what it saved", async () => {
    const o = orchestrator({
      cache: {
        lookup: () => ({ hit: true, completion: { provider: "sim", model: "c", tier: "complex", content: "cached answer here", finishReason: "stop", usage: { inputTokens: 3n, outputTokens: 3n }, costMicroUsd: 42n } }),
      },
      provider: { streamGenerate: async function* () { throw new Error("must not be called"); } },
    });
    const events = await collect(o, request({ cacheMode: "use" }));
    const done = events.at(-1) as Extract<CompletionEvent, { type: "done" }>;
    expect(events.filter((e) => e.type === "delta").length).toBe(3);
    expect(done).toMatchObject({ costMicroUsd: 0n, savedMicroUsd: 42n, route: { id: "sim/c", cache: "hit" } });
  });

  it("maps an unknown pinned model to a 404", async () => {
    const o = orchestrator({ policy: { route: () => { throw new ConnectError('model "x/y" is not routable', Code.NotFound); } } });
    const err = await collect(o, request({ choice: { kind: "pinned", id: "x/y" }, requestedModel: "x/y" })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect(err).toMatchObject({ status: 404, code: "model_not_found", param: "model" });
  });
});

describe("plan reuse", () => {
  const reusable = (models: string[], inputs: string[] = []) => () =>
    create(policy.RouteResponseSchema, {
      plan: { tier: "standard", reason: "test plan", reusable: true, qualityInputs: inputs, routes: models.map((m) => ({ provider: "sim", model: m, price })) },
    });

  it("asks the policy once for requests alike, again after the tables change", async () => {
    let calls = 0;
    const route = reusable(["a"]);
    const o = orchestrator({ policy: { route: () => (calls++, route()) } });
    await collect(o);
    await collect(o);
    expect(calls).toBe(1);
    o.plans.invalidate();
    await collect(o);
    expect(calls).toBe(2);
  });

  it("shares one policy call among requests alike that miss together", async () => {
    let calls = 0;
    const route = reusable(["a"]);
    const o = orchestrator({ policy: { route: async () => (calls++, await new Promise((r) => setTimeout(r, 20)), route()) } });
    await Promise.all(Array.from({ length: 10 }, () => collect(o)));
    expect(calls).toBe(1);
  });

  it("asks again when a predicted quality the plan depends on differs, not when another does", async () => {
    let calls = 0;
    let quality: Record<string, number> = { "gpt-4": 0.9, other: 0.1 };
    const o = orchestrator({
      classifier: { classify: () => ({ tier: "standard", taskType: "chat", predictedQuality: quality }) },
      policy: { route: () => (calls++, reusable(["a"], ["gpt-4"])()) },
    });
    await collect(o);
    quality = { "gpt-4": 0.9, other: 0.7 };
    await collect(o);
    expect(calls).toBe(1);
    quality = { "gpt-4": 0.5, other: 0.7 };
    await collect(o);
    expect(calls).toBe(2);
  });

  it("keeps plans apart by provider preferences and input price cap, and never reuses a model list's", async () => {
    const asked: policy.RouteRequest[] = [];
    const route = reusable(["a"]);
    const o = orchestrator({ policy: { route: (req) => (asked.push(req), route()) } });
    const only = { order: [], only: ["sim"], ignore: [], allowFallbacks: true };
    await collect(o, request({ providers: only }));
    await collect(o, request({ providers: only }));
    expect(asked).toHaveLength(1);
    expect(asked[0]!.preferences?.providers).toMatchObject({ only: ["sim"], order: [], ignore: [] });
    await collect(o, request({ providers: { ...only, only: [], ignore: ["sim"] } }));
    await collect(o, request({ providers: { ...only, sort: "latency" } }));
    await collect(o, request({ maxInputMicroUsdPerMtok: 5n }));
    await collect(o);
    expect(asked).toHaveLength(5);
    expect(asked[2]!.preferences?.providers?.sort).toBe(policy.ProviderSort.LATENCY);
    expect(asked[3]!.preferences?.maxInputMicroUsdPerMtok).toBe(5n);
    const list = request({ choice: { kind: "list", ids: ["sim/b", "sim/a"] } });
    await collect(o, list);
    await collect(o, list);
    expect(asked).toHaveLength(7);
    expect(asked[6]).toMatchObject({ models: ["sim/b", "sim/a"], tier: "", pinnedModel: "" });
  });

  it("keeps cached answers apart by model list and provider preferences", async () => {
    const keys: string[] = [];
    const o = orchestrator({ cache: { lookup: (req) => (keys.push(req.key!.requestedModel), { hit: false }), storeBatch: () => ({}) } });
    await collect(o, request({ cacheMode: "use" }));
    await collect(o, request({ cacheMode: "use", providers: { order: [], only: ["sim"], ignore: [], allowFallbacks: true } }));
    await collect(o, request({ cacheMode: "use", choice: { kind: "list", ids: ["sim/a"] } }));
    expect(keys[0]).toBe("switchyard/auto");
    expect(new Set(keys).size).toBe(3);
  });

  it("answers a model list or preferences the policy finds unsatisfiable with a 400 naming the field", async () => {
    const o = orchestrator({ policy: { route: () => Promise.reject(new ConnectError("no model in 'models' may serve this request", Code.InvalidArgument)) } });
    const err = await collect(o, request({ choice: { kind: "list", ids: ["sim/b"] } })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect(err).toMatchObject({ status: 400, code: "unsatisfiable_preferences", param: "models", message: "no model in 'models' may serve this request" });
    const prefs = await collect(o, request({ providers: { order: [], only: ["x"], ignore: [], allowFallbacks: true } })).catch((e: unknown) => e);
    expect(prefs).toMatchObject({ status: 400, param: "provider" });
  });

  it("never reuses a plan the policy did not mark reusable (a capped tenant's), nor a pinned request's", async () => {
    let calls = 0;
    const o = orchestrator({ policy: { route: () => (calls++, plan("a")) } });
    await collect(o);
    await collect(o);
    expect(calls).toBe(2);
  });
});
