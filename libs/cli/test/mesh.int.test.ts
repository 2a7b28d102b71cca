import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import OpenAI from "openai";
import { startTestMesh, type TestMesh } from "./support.js";

const PROTO_ROOT = fileURLToPath(new URL("../../../proto", import.meta.url));
let m: TestMesh;
let openai: OpenAI;

beforeAll(async () => {
  m = await startTestMesh();
  openai = new OpenAI({ baseURL: `${m.httpUrl}/v1`, apiKey: "unused-locally", maxRetries: 0 });
}, 60_000);
afterAll(async () => m?.stop());

const MODELS = new Set(["sim/small", "sim/medium", "sim/large"]);

describe("the mesh through the official openai SDK", () => {
  it("streams a routed completion with usage, cost and route headers", async () => {
    const { data: stream, response } = await openai.chat.completions
      .create({
        model: "switchyard/auto",
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: "user", content: "Say hello to the routing layer." }],
      })
      .withResponse();
    expect(MODELS.has(response.headers.get("x-switchyard-model")!)).toBe(true);
    expect(["simple", "standard", "complex"]).toContain(response.headers.get("x-switchyard-tier"));
    expect(response.headers.get("x-switchyard-cache")).toBe("bypass");
    expect(response.headers.get("x-switchyard-request-id")).toMatch(/^req_[0-9a-f]{24}$/);
    expect(response.headers.get("traceparent")).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    let text = "";
    let usage: OpenAI.CompletionUsage | undefined;
    let finish: string | null = null;
    let info: Record<string, unknown> | undefined;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      expect(chunk.model).toBe(response.headers.get("x-switchyard-model"));
      text += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
      const extra = (chunk as unknown as { switchyard?: Record<string, unknown> }).switchyard;
      if (extra) info = extra;
    }
    expect(chunks).toBeGreaterThan(5); // relayed piece by piece, not buffered into one chunk
    expect(text).toMatch(/^\[simulated (small|medium|large)\] On "Say hello to the routing layer\.":/);
    expect(finish).toBe("stop");
    expect(usage!.prompt_tokens).toBeGreaterThan(5);
    expect(usage!.completion_tokens).toBeGreaterThan(10);
    expect(usage!.total_tokens).toBe(usage!.prompt_tokens + usage!.completion_tokens);
    expect(info!.model).toBe(response.headers.get("x-switchyard-model"));
    expect(Number(info!.cost_usd)).toBeGreaterThan(0);
    expect(String(info!.reason)).toMatch(/^tier (simple|standard|complex): sim\//);
  });

  it("answers without streaming, with the same text for the same request and the cost in a header", async () => {
    const ask = () =>
      openai.chat.completions
        .create({ model: "sim/medium", messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "What is 2 + 2?" }] })
        .withResponse();
    const first = await ask();
    const second = await ask();
    expect(first.data.model).toBe("sim/medium");
    expect(first.response.headers.get("x-switchyard-model")).toBe("sim/medium");
    expect(first.data.choices[0]!.message.content).toBe(second.data.choices[0]!.message.content);
    expect(first.data.choices[0]!.message.content).toContain('On "What is 2 + 2?"');
    const cost = Number(first.response.headers.get("x-switchyard-cost-usd"));
    // medium: $0.60/M in, $2.40/M out
    const u = first.data.usage!;
    expect(cost).toBeCloseTo((u.prompt_tokens * 0.6 + u.completion_tokens * 2.4) / 1e6, 6);
  });

  it("serves a repeated deterministic request from the cache at no cost", async () => {
    const body = { model: "switchyard/auto", temperature: 0, messages: [{ role: "user" as const, content: "Cache me, please." }] };
    const miss = await openai.chat.completions.create(body).withResponse();
    expect(miss.response.headers.get("x-switchyard-cache")).toBe("miss");
    let hit = await openai.chat.completions.create(body).withResponse();
    for (let i = 0; i < 20 && hit.response.headers.get("x-switchyard-cache") !== "hit"; i++) {
      await new Promise((r) => setTimeout(r, 50)); // the store is asynchronous
      hit = await openai.chat.completions.create(body).withResponse();
    }
    expect(hit.response.headers.get("x-switchyard-cache")).toBe("hit");
    expect(hit.response.headers.get("x-switchyard-cost-usd")).toBe("0.000000");
    expect(hit.data.choices[0]!.message.content).toBe(miss.data.choices[0]!.message.content);
    expect(hit.data.model).toBe(miss.data.model);
    const saved = (hit.data as unknown as { switchyard: { saved_usd: string } }).switchyard.saved_usd;
    expect(saved).toBe(miss.response.headers.get("x-switchyard-cost-usd"));
  });

  it("lists routable models with prices", async () => {
    const ids = [];
    for await (const model of openai.models.list()) ids.push(model.id);
    expect(ids).toEqual(expect.arrayContaining(["switchyard/auto", "switchyard/auto:complex", "sim/small", "sim/medium", "sim/large"]));
  });

  it("forces a tier with switchyard/auto:<tier>", async () => {
    const { data, response } = await openai.chat.completions
      .create({ model: "switchyard/auto:complex", messages: [{ role: "user", content: "hi" }] })
      .withResponse();
    expect(response.headers.get("x-switchyard-tier")).toBe("complex");
    expect(["sim/medium", "sim/large"]).toContain(data.model);
  });
});

describe("routing by difficulty through the running mesh", () => {
  // A classifier that answered one tier for everything would pass every check that a tier is
  // one of the names: these prompts are far apart and must each land in their own tier, and the
  // model must be one that serves that tier.
  const SERVES = { simple: ["sim/small"], standard: ["sim/small", "sim/medium"], complex: ["sim/medium", "sim/large"] } as const;
  it.each([
    ["hi", "simple"],
    ["What is the capital of France?", "simple"],
    ["Write a Python function that merges two sorted lists.", "standard"],
    ["Prove that there are infinitely many primes p such that p ≡ 3 (mod 4). Give a rigorous proof with every step justified.", "complex"],
    ["Implement a lock-free concurrent hash map in C++ with linearizable resize, prove its correctness, and analyse its amortized complexity under contention.", "complex"],
  ] as const)("REST: %j goes to the %s tier", async (content, tier) => {
    const { data, response } = await openai.chat.completions.create({ model: "switchyard/auto", messages: [{ role: "user", content }] }).withResponse();
    expect(response.headers.get("x-switchyard-tier")).toBe(tier);
    expect(SERVES[tier]).toContain(data.model);
    expect((data as unknown as { switchyard: { reason: string } }).switchyard.reason).toMatch(new RegExp(`^tier ${tier}: `));
  });

  it("gRPC: the same tiers in the completion's route", async () => {
    const definition = protoLoader.loadSync(join(PROTO_ROOT, "switchyard/gateway/v1/gateway.proto"), { keepCase: true, enums: String, longs: String, defaults: true, includeDirs: [PROTO_ROOT] });
    const pkg = grpc.loadPackageDefinition(definition) as unknown as { switchyard: { gateway: { v1: { GatewayService: grpc.ServiceClientConstructor } } } };
    const client = new pkg.switchyard.gateway.v1.GatewayService(m.grpcUrl.replace("http://", ""), grpc.credentials.createInsecure());
    const tierOf = (content: string) =>
      new Promise<string>((resolve, reject) =>
        (client.Complete as (req: unknown, cb: (err: grpc.ServiceError | null, res: { completion: { route: { tier: string } } }) => void) => void)(
          { model: "", messages: [{ role: "user", content }] },
          (err, res) => (err ? reject(err) : resolve(res.completion.route.tier)),
        ),
      );
    expect(await tierOf("hi")).toBe("simple");
    expect(await tierOf("Prove that every bounded monotone sequence of real numbers converges, then generalise the argument to complete lattices and show where completeness is used.")).toBe("complex");
    client.close();
  });
});

describe("bad input gets OpenAI-style errors and the server keeps serving", () => {
  const post = (body: string, headers: Record<string, string> = {}) =>
    fetch(`${m.httpUrl}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });

  it.each([
    ["invalid JSON", "{not json", 400, "invalid_json", null],
    ["missing messages", JSON.stringify({ model: "switchyard/auto" }), 400, "invalid_request", "messages"],
    ["empty messages", JSON.stringify({ messages: [] }), 400, "invalid_request", "messages"],
    ["a bad role", JSON.stringify({ messages: [{ role: "wizard", content: "x" }] }), 400, "invalid_request", "messages[0].role"],
    ["an unknown model", JSON.stringify({ model: "nope/none", messages: [{ role: "user", content: "x" }] }), 404, "model_not_found", "model"],
    ["an unknown tier", JSON.stringify({ model: "switchyard/auto:huge", messages: [{ role: "user", content: "x" }] }), 404, "model_not_found", "model"],
    ["a bad temperature", JSON.stringify({ temperature: 9, messages: [{ role: "user", content: "x" }] }), 400, "invalid_request", "temperature"],
  ])("%s", async (_name, body, status, code, param) => {
    const res = await post(body);
    expect(res.status).toBe(status);
    const json = (await res.json()) as { error: Record<string, unknown> };
    expect(json.error).toMatchObject({ code, param });
    expect(typeof json.error.message).toBe("string");
    expect(typeof json.error.type).toBe("string");
    expect(JSON.stringify(json)).not.toMatch(/at .*\.js:\d+/); // no stack trace
  });

  it("answers a body over the size limit with 413, also when it arrives chunked without a length", async () => {
    const big = JSON.stringify({ messages: [{ role: "user", content: "x".repeat(m.config.limits.max_body_bytes + 10) }] });
    const declared = await post(big);
    expect(declared.status).toBe(413);
    const chunked = await fetch(`${m.httpUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: new ReadableStream({
        start(controller) {
          const bytes = new TextEncoder().encode(big);
          for (let i = 0; i < bytes.length; i += 65_536) controller.enqueue(bytes.subarray(i, i + 65_536));
          controller.close();
        },
      }),
      duplex: "half",
    } as RequestInit);
    expect(chunked.status).toBe(413);
    expect(((await chunked.json()) as { error: { code: string } }).error.code).toBe("request_too_large");
  });

  it("the SDK surfaces the error, and the next request still works", async () => {
    await expect(openai.chat.completions.create({ model: "nope/none", messages: [{ role: "user", content: "x" }] })).rejects.toMatchObject({ status: 404 });
    const ok = await openai.chat.completions.create({ model: "sim/small", messages: [{ role: "user", content: "still there?" }] });
    expect(ok.choices[0]!.message.content).toContain("still there?");
  });
});

describe("the gRPC API through @grpc/grpc-js built from the .proto files", () => {
  it("streams StreamComplete: text deltas, then the route, usage and cost", async () => {
    const definition = protoLoader.loadSync(join(PROTO_ROOT, "switchyard/gateway/v1/gateway.proto"), {
      keepCase: true,
      enums: String,
      longs: String,
      defaults: true,
      includeDirs: [PROTO_ROOT],
    });
    const pkg = grpc.loadPackageDefinition(definition) as unknown as {
      switchyard: { gateway: { v1: { GatewayService: grpc.ServiceClientConstructor } } };
    };
    const client = new pkg.switchyard.gateway.v1.GatewayService(m.grpcUrl.replace("http://", ""), grpc.credentials.createInsecure());
    const call = client.StreamComplete({ model: "", messages: [{ role: "user", content: "Explain routing in one line." }] }) as grpc.ClientReadableStream<{
      text: string;
      completion: null | { route: Record<string, unknown>; usage: Record<string, string>; cost_micro_usd: string; finish_reason: string };
    }>;
    const headers = new Promise<grpc.Metadata>((resolve) => call.on("metadata", resolve));
    let text = "";
    let deltas = 0;
    let completion: { route: Record<string, unknown>; usage: Record<string, string>; cost_micro_usd: string; finish_reason: string } | null = null;
    for await (const message of call) {
      if (message.completion) completion = message.completion;
      else {
        deltas++;
        text += message.text;
      }
    }
    client.close();
    const md = await headers;
    expect(deltas).toBeGreaterThan(5);
    expect(text).toContain('On "Explain routing in one line."');
    expect(completion!.finish_reason).toBe("stop");
    expect(MODELS.has(String(completion!.route.model))).toBe(true);
    expect(md.get("x-switchyard-model")[0]).toBe(completion!.route.model);
    expect(md.get("x-switchyard-tier")[0]).toBe(completion!.route.tier);
    expect(Number(completion!.usage.output_tokens)).toBeGreaterThan(10);
    expect(Number(completion!.cost_micro_usd)).toBeGreaterThan(0);
  });
});
