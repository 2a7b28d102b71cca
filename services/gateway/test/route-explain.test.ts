import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { stringify as toYaml } from "yaml";
import { createClassifierService } from "@switchyard/classifier";
import { parseConfig } from "@switchyard/config";
import { createPolicyService } from "@switchyard/policy";
import { cache, classifier, gateway as pb, policy, provider } from "@switchyard/proto";
import { createLeanClient, createRpcServer, HealthStatus, LocalChannel, ProcedureTable, serverTracing, type ServiceRuntime } from "@switchyard/rpc";
import { createLogger, Registry } from "@switchyard/telemetry";
import { createGatewayService } from "../src/service.js";

const GOLD_KEY = "sk-test-explain-gold-0123456789";
const THRIFTY_KEY = "sk-test-explain-thrifty-987654";
const sha = (k: string) => createHash("sha256").update(k).digest("hex");

const PROVIDERS = [
  {
    name: "sim",
    kind: "simulator",
    enabled: true,
    models: [
      { name: "small", input_usd_per_mtok: 0.1, output_usd_per_mtok: 0.4, tiers: ["simple", "standard"], simulator: { quality: 0.55 } },
      { name: "medium", input_usd_per_mtok: 0.6, output_usd_per_mtok: 2.4, tiers: ["standard", "complex"], simulator: { quality: 0.75 } },
      { name: "large", input_usd_per_mtok: 3, output_usd_per_mtok: 15, tiers: ["complex"], simulator: { quality: 0.92 } },
    ],
  },
];

const PROMPTS = [
  "hi",
  "Prove that there are infinitely many primes, step by step.",
  "Write a Python function that merges two sorted lists, and explain its complexity.",
  "Translate 'good morning' into French.",
];

interface Gateway {
  url: string;
  httpUrl: string;
  /** Models the (fake) provider was asked for. */
  upstream: string[];
  logs: () => Record<string, unknown>[];
  close(): Promise<void>;
}

/**
 * The gateway on real ports over the real classifier and policy, in process; a cache that never
 * hits and a provider that answers at once and records which model it was asked for.
 */
async function startGateway(settings: Record<string, unknown>): Promise<Gateway> {
  const config = parseConfig(toYaml({ listen_host: "127.0.0.1", nats: { enabled: false }, providers: PROVIDERS, ...settings }));
  const lines: string[] = [];
  const logger = createLogger({ service: "gateway", level: "info", write: (l) => lines.push(l) });
  const runtime: ServiceRuntime = { name: "gateway", config, configSource: "test", logger, metrics: new Registry(), tracing: { exporting: false, shutdown: async () => {} } };
  const upstream: string[] = [];
  const internal = [await createClassifierService({ ...runtime, name: "classifier" }), createPolicyService({ ...runtime, name: "policy" }, undefined)];
  const local = new LocalChannel(
    ProcedureTable.capture((router) => {
      for (const parts of internal) parts.routes(router);
      router.service(cache.CacheService, {
        lookup: () => ({ hit: false }),
        lookupBatch: (req: cache.LookupBatchRequest) => ({ responses: req.requests.map(() => ({ hit: false })) }),
        store: () => ({ stored: true }),
        storeBatch: () => ({}),
      } as never);
      router.service(provider.ProviderService, {
        streamGenerate: async function* (req) {
          upstream.push(`${req.provider}/${req.model}`);
          yield { event: { case: "delta" as const, value: { text: "ok" } } };
          yield { event: { case: "finish" as const, value: { finishReason: "stop", responseModel: req.model, usage: { inputTokens: 5n, outputTokens: 1n } } } };
        },
      } as never);
    }),
  );
  const gateway = await createGatewayService(runtime, {
    classifier: createLeanClient(classifier.ClassifierService, local),
    policy: createLeanClient(policy.PolicyService, local),
    cache: createLeanClient(cache.CacheService, local),
    provider: createLeanClient(provider.ProviderService, local),
  });
  const server = createRpcServer({
    name: "gateway",
    host: "127.0.0.1",
    port: 0,
    httpPort: 0,
    routes: gateway.routes,
    health: new HealthStatus(gateway.serviceNames),
    logger,
    interceptors: [serverTracing()],
    ...(gateway.admit ? { admit: gateway.admit } : {}),
    ...(gateway.httpFallback ? { httpFallback: gateway.httpFallback } : {}),
  });
  const { port, httpPort } = await server.listen();
  return {
    url: `http://127.0.0.1:${port}`,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    upstream,
    logs: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    close: async () => {
      await server.close(100);
      await gateway.onStop?.();
    },
  };
}

const ask = (content: string, extra: Partial<pb.CompleteRequest> = {}) => create(pb.CompleteRequestSchema, { messages: [{ role: "user", content }], ...extra });
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const refusal = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => ConnectError.from(e));

/** The route a real completion took: the last streamed message's RouteInfo. */
async function routeTaken(c: Client<typeof pb.GatewayService>, request: pb.CompleteRequest, headers: Record<string, string>): Promise<pb.RouteInfo> {
  for await (const m of c.streamComplete(request, { headers })) if (m.completion?.route) return m.completion.route;
  throw new Error("no completion");
}

describe("RouteExplain with API keys", () => {
  let g: Gateway;
  let c: Client<typeof pb.GatewayService>;
  beforeAll(async () => {
    g = await startGateway({
      tenants: [
        { name: "gold", api_key_sha256: [sha(GOLD_KEY)], quality_target: 0.9 },
        { name: "thrifty", api_key_sha256: [sha(THRIFTY_KEY)], cost_weight: 1 },
      ],
    });
    c = createClient(pb.GatewayService, createGrpcTransport({ baseUrl: g.url }));
  });
  afterAll(() => g.close());

  it("chooses the model a real completion of the same request and tenant is routed to, for the same reason", async () => {
    const seen = new Set<string>();
    for (const key of [GOLD_KEY, THRIFTY_KEY]) {
      for (const content of PROMPTS) {
        for (const extra of [{}, { model: "switchyard/auto:complex" }, { routing: { qualityTarget: 0.6 } }, { maxTokens: 4_000 }]) {
          const request = ask(content, extra);
          const explained = await c.routeExplain({ request }, { headers: bearer(key) });
          const taken = await routeTaken(c, request, bearer(key));
          const what = `${key === GOLD_KEY ? "gold" : "thrifty"} ${JSON.stringify(extra)} "${content}"`;
          expect(explained.model, what).toBe(taken.model);
          expect(explained.tier, what).toBe(taken.tier);
          expect(explained.reason, what).toBe(taken.reason);
          expect(explained.taskType, what).toBe(taken.taskType);
          expect(g.upstream.at(-1)).toBe(explained.model);
          seen.add(explained.model);
        }
      }
    }
    // The cases are not all alike: tenants and prompts reach different models.
    expect(seen.size).toBeGreaterThanOrEqual(2);
  });

  it("shows the prompt's features, its tier and every model with its numbers and verdict", async () => {
    const prompt = "Prove that there are infinitely many primes, step by step.";
    const res = await c.routeExplain({ request: ask(prompt) }, { headers: bearer(GOLD_KEY) });
    expect(res.tenant).toBe("gold");
    expect(res.features).toMatchObject({ chars: prompt.length, turns: 1, language: "en", hasSystemPrompt: false });
    expect(res.features!.words).toBeGreaterThanOrEqual(10);
    expect(res.features!.hardCues).toBeGreaterThan(0);
    expect(res.difficulty).toBeGreaterThan(0);
    expect(res.difficulty).toBeLessThanOrEqual(1);
    expect(res.routerVersion).not.toBe("");
    expect(res.tierSource).toBe("classifier");
    expect(res.qualityTarget).toBe(0.9); // the tenant's
    expect(res.estimatedInputTokens).toBeGreaterThan(0n);
    expect(res.candidates.map((x) => x.model).sort()).toEqual(["sim/large", "sim/medium", "sim/small"]);
    for (const x of res.candidates) {
      expect(x.outputMicroUsdPerMtok, x.model).toBeGreaterThan(0n);
      expect(x.expectedCostMicroUsd, x.model).toBeGreaterThan(0n);
      expect(x.predictedQuality, x.model).toBeGreaterThan(0);
      expect(x.predictedQuality, x.model).toBeLessThanOrEqual(1);
      expect(x.verdict, x.model).not.toBe(pb.CandidateVerdict.UNSPECIFIED);
      expect(x.explanation, x.model).not.toBe("");
    }
    const chosen = res.candidates.filter((x) => x.verdict === pb.CandidateVerdict.CHOSEN);
    expect(chosen.map((x) => x.model)).toEqual([res.model]);
    expect(chosen[0]!.planPosition).toBe(1);
    expect(res.candidates[0]!.model).toBe(res.model);
  });

  it("answers on every protocol and port, and calls no provider", async () => {
    const transports: Transport[] = [
      createGrpcTransport({ baseUrl: g.url }),
      createConnectTransport({ baseUrl: g.url, httpVersion: "2", useBinaryFormat: true }),
      createConnectTransport({ baseUrl: g.httpUrl, httpVersion: "1.1" }),
      createGrpcWebTransport({ baseUrl: g.httpUrl, httpVersion: "1.1" }),
    ];
    const calls = g.upstream.length;
    const models = new Set<string>();
    for (const t of transports) models.add((await createClient(pb.GatewayService, t).routeExplain({ request: ask("hi") }, { headers: bearer(THRIFTY_KEY) })).model);
    expect([...models]).toEqual(["sim/small"]);
    expect(g.upstream.length).toBe(calls);
  });

  it("authenticates as the other RPCs do, and keeps a caller to its own tenant", async () => {
    const calls = g.upstream.length;
    const missing = await refusal(c.routeExplain({ request: ask("hi") }));
    expect(missing?.code).toBe(Code.Unauthenticated);
    expect(missing?.rawMessage).toMatch(/an API key is required/);
    expect((await refusal(c.routeExplain({ request: ask("hi") }, { headers: bearer("sk-test-not-a-key") })))?.code).toBe(Code.Unauthenticated);
    const other = await refusal(c.routeExplain({ request: ask("hi"), tenant: "thrifty" }, { headers: bearer(GOLD_KEY) }));
    expect(other?.code).toBe(Code.PermissionDenied);
    expect(other?.rawMessage).toBe('this API key belongs to tenant "gold", not "thrifty"');
    expect((await c.routeExplain({ request: ask("hi"), tenant: "gold" }, { headers: bearer(GOLD_KEY) })).tenant).toBe("gold");
    expect(g.upstream.length).toBe(calls);
    const line = g.logs().findLast((l) => l.msg === "request" && l.method === "RouteExplain");
    expect(line).toMatchObject({ tenant: "gold", status: "OK", key_id: sha(GOLD_KEY).slice(0, 12) });
    expect(JSON.stringify(g.logs())).not.toContain(GOLD_KEY);
  });

  it("refuses what a completion would refuse, with the same clean errors", async () => {
    const cases: [pb.CompleteRequest, Code, RegExp][] = [
      [ask("hi", { model: "sim/nope" }), Code.NotFound, /^model "sim\/nope" is not routable$/],
      [ask("hi", { model: "switchyard/auto:huge" }), Code.NotFound, /unknown tier "huge"/],
      [create(pb.CompleteRequestSchema, {}), Code.InvalidArgument, /messages must not be empty/],
      [ask("hi", { routing: { qualityTarget: 2 } }), Code.InvalidArgument, /routing.quality_target must be from 0 to 1/],
      [ask("hi", { routing: { maxOutputMicroUsdPerMtok: 1n } }), Code.OK, /.*/],
    ];
    for (const [request, code, message] of cases) {
      const explained = await refusal(c.routeExplain({ request }, { headers: bearer(GOLD_KEY) }));
      const completed = await refusal(routeTaken(c, request, bearer(GOLD_KEY)));
      if (code === Code.OK) {
        // No model under the max price: the explanation says so; the completion fails.
        expect(explained).toBeUndefined();
        expect(completed?.code).toBe(Code.Unavailable);
        const res = await c.routeExplain({ request }, { headers: bearer(GOLD_KEY) });
        expect(res.model).toBe("");
        expect(res.reason).toMatch(/^no route: no model of tier "\w+" is within the max price$/);
        expect(res.candidates.some((x) => x.verdict === pb.CandidateVerdict.OVER_PRICE_CAP)).toBe(true);
        continue;
      }
      expect(explained?.code, message.source).toBe(code);
      expect(explained?.rawMessage).toMatch(message);
      expect(completed?.code, message.source).toBe(code);
      expect(explained?.rawMessage).not.toMatch(/\bat \S+:\d+/); // no stack
    }
  });

  it("explains a pinned model as pinned, without classifying", async () => {
    const res = await c.routeExplain({ request: ask("hi", { model: "sim/large" }) }, { headers: bearer(GOLD_KEY) });
    expect(res).toMatchObject({ model: "sim/large", tierSource: "pinned", reason: "pinned to sim/large by the client" });
    expect(res.features).toBeUndefined();
    expect(res.candidates).toHaveLength(1);
    expect(res.candidates[0]!.explanation).toBe("pinned by the client: no routing");
  });
});

describe("RouteExplain on a local gateway (no API keys)", () => {
  let g: Gateway;
  beforeAll(async () => {
    g = await startGateway({ tenants: [{ name: "default" }, { name: "strict", quality_target: 0.99 }] });
  });
  afterAll(() => g.close());

  it("explains for any configured tenant, and names the tenants when one is unknown", async () => {
    const c = createClient(pb.GatewayService, createConnectTransport({ baseUrl: g.url, httpVersion: "2" }));
    const own = await c.routeExplain({ request: ask("hi") });
    expect(own.tenant).toBe("default");
    const strict = await c.routeExplain({ request: ask("hi"), tenant: "strict" });
    expect(strict.tenant).toBe("strict");
    expect(strict.qualityTarget).toBe(0.99);
    expect(strict.reason).toMatch(/no candidate meets quality 0\.99/);
    const unknown = await refusal(c.routeExplain({ request: ask("hi"), tenant: "nobody" }));
    expect(unknown?.code).toBe(Code.NotFound);
    expect(unknown?.rawMessage).toBe('unknown tenant "nobody" (tenants: default, strict)');
  });
});
