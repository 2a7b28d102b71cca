import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { stringify as toYaml } from "yaml";
import { parseConfig, type Config } from "@switchyard/config";
import { cache, classifier, events, ledger, policy, provider } from "@switchyard/proto";
import { createLogger, Registry } from "@switchyard/telemetry";
import { createGatewayBooks, type GatewayBooks } from "../src/accounting/index.js";
import { createGatewayMetrics } from "../src/metrics.js";
import { restApi } from "../src/rest/api.js";
import { Orchestrator, type MeshClients } from "../src/orchestrator.js";
import { TenantResolver } from "../src/tenants.js";

/** The gateway's REST API on a real port over an in-memory mesh of fake services. */
export interface TestApi {
  config: Config;
  port: number;
  /** Every log line the gateway wrote, parsed. */
  logs: Record<string, unknown>[];
  /** Raw log lines, to check that nothing secret was ever written. */
  rawLogs: string[];
  /** Requests that reached the (fake) provider: a refused request must add none. */
  upstreamCalls: provider.StreamGenerateRequest[];
  /** Usage records the (fake) ledger received. */
  records: events.UsageRecord[];
  /** What the gateway asked the (fake) policy. */
  routeRequests: policy.RouteRequest[];
  books: GatewayBooks;
  send(options: SendOptions): Promise<TestResponse>;
  close(): Promise<void>;
}

export interface SendOptions {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  /** A string is sent as is; anything else as JSON. */
  body?: unknown;
}

export interface TestResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The body parsed as JSON (throws when it is not). */
  json: () => any;
}

const price = { inputMicroUsdPerMtok: 1_000_000n, outputMicroUsdPerMtok: 2_000_000n, cachedInputMicroUsdPerMtok: 0n };

/** A minimal valid chat body. */
export const CHAT = { model: "switchyard/auto", messages: [{ role: "user", content: "hello" }] };

/** Headers of a well-formed JSON request. */
export const JSON_HEADERS = { "content-type": "application/json" };

/** What the fake provider streams for one request (default: "hi there", 10 tokens in, 2 out). */
export type FakeAnswer = (req: provider.StreamGenerateRequest) => AsyncIterable<MessageInitShape<typeof provider.StreamGenerateResponseSchema>>;

/** The fake provider's default answer. */
export const HI_THERE: FakeAnswer = async function* (req) {
  yield { event: { case: "delta" as const, value: { text: "hi there" } } };
  yield { event: { case: "finish" as const, value: { finishReason: "stop", responseModel: req.model, usage: { inputTokens: 10n, outputTokens: 2n } } } };
};

/**
 * Fakes of the classifier, policy, cache and provider behind in-memory transports: one plan
 * (sim/a), never a cache hit, an answer of "hi there" (or `answer`'s). `upstreamCalls` records
 * what reached the provider.
 */
export function fakeMesh(answer: FakeAnswer = HI_THERE): {
  mesh: MeshClients;
  upstreamCalls: provider.StreamGenerateRequest[];
  records: events.UsageRecord[];
  routeRequests: policy.RouteRequest[];
} {
  const upstreamCalls: provider.StreamGenerateRequest[] = [];
  const routeRequests: policy.RouteRequest[] = [];
  const records: events.UsageRecord[] = [];
  const transport = createRouterTransport(({ service }) => {
    const classification = { tier: "standard", taskType: "chat", predictedQuality: {} };
    service(classifier.ClassifierService, {
      classify: () => classification,
      classifyBatch: (req: { requests: unknown[] }) => ({ results: req.requests.map(() => ({ response: classification })) }),
    } as never);
    service(policy.PolicyService, {
      route: (req) => {
        routeRequests.push(req);
        return create(policy.RouteResponseSchema, { plan: { tier: "standard", reason: "test plan", routes: [{ provider: "sim", model: "a", price }] } });
      },
      listModels: () => ({ models: [{ provider: "sim", model: "a", tiers: ["standard"], price }] }),
    });
    service(cache.CacheService, {
      lookup: () => ({ hit: false }),
      lookupBatch: (req: { requests: unknown[] }) => ({ responses: req.requests.map(() => ({ hit: false })) }),
      store: () => ({ stored: true }),
      storeBatch: () => ({}),
    } as never);
    service(ledger.LedgerService, {
      record: (req: ledger.RecordRequest) => {
        records.push(...req.records);
        return { written: req.records.length };
      },
      listKeys: () => ({ keys: [], version: 0n }),
      lookupKey: () => ({}),
    } as never);
    service(provider.ProviderService, {
      streamGenerate: async function* (req) {
        upstreamCalls.push(req);
        yield* answer(req);
      },
    });
  });
  return {
    upstreamCalls,
    records,
    routeRequests,
    mesh: {
      classifier: createClient(classifier.ClassifierService, transport),
      policy: createClient(policy.PolicyService, transport),
      cache: createClient(cache.CacheService, transport),
      provider: createClient(provider.ProviderService, transport),
      ledger: createClient(ledger.LedgerService, transport),
    },
  };
}

/**
 * Starts `restApi` on 127.0.0.1:0 with the embedded defaults plus `overrides` (merged as a
 * configuration file would be), behind fakes of the classifier, policy, cache and provider
 * (whose answer is `answer`, default "hi there").
 */
export async function startTestApi(overrides: Record<string, unknown> = {}, answer?: FakeAnswer): Promise<TestApi> {
  const config = parseConfig(toYaml(overrides));
  const { mesh, upstreamCalls, records, routeRequests } = fakeMesh(answer);
  const rawLogs: string[] = [];
  const logger = createLogger({ service: "gateway", level: "info", write: (line) => rawLogs.push(line) });
  const metrics = createGatewayMetrics(new Registry());
  const books = createGatewayBooks({ config, logger, metrics, bus: undefined, ledger: mesh.ledger });
  const api = restApi({
    config,
    orchestrator: new Orchestrator(mesh, config, metrics, logger),
    policy: mesh.policy,
    tenants: new TenantResolver(config, books.keys),
    accounting: books.accounting,
    metrics,
    logger,
  });
  const server = http.createServer((req, res) => {
    void api(req, res).then((handled) => {
      if (!handled) {
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("not handled by the REST API\n");
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    config,
    port,
    rawLogs,
    get logs() {
      return rawLogs.map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    upstreamCalls,
    records,
    routeRequests,
    books,
    send: (options) => send(port, options),
    close: async () => {
      await books.close(1_000);
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    },
  };
}

/** One HTTP/1.1 request with full control of the headers (fetch would not let a test set Host). */
export function send(port: number, options: SendOptions): Promise<TestResponse> {
  const body = options.body === undefined ? undefined : typeof options.body === "string" ? options.body : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method: options.method ?? (body === undefined ? "GET" : "POST"),
        path: options.path ?? "/v1/chat/completions",
        headers: { ...(body === undefined ? {} : { "content-length": Buffer.byteLength(body) }), ...options.headers },
        agent: false,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** The one error envelope a response carries, checked for its shape. */
export function envelope(res: TestResponse): { message: string; type: string; param: string | null; code: string } {
  const body = res.json() as { error: { message: string; type: string; param: string | null; code: string } };
  const keys = Object.keys(body);
  if (keys.length !== 1 || keys[0] !== "error") throw new Error(`not an error envelope: ${res.text}`);
  if (!String(res.headers["content-type"]).startsWith("application/json")) throw new Error(`error not served as JSON: ${res.headers["content-type"]}`);
  return body.error;
}
