import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import { CandidateVerdict, createSwitchyardClient, type SwitchyardClientOptions } from "@switchyard/client";
import { startInProcessMesh, type InProcessMesh } from "../../cli/test/in-process.js";
import { streamAnswer } from "../examples/stream.js";

const KEY = "sk-test-client-5e4d3c2b1a09";
const sha = (k: string) => createHash("sha256").update(k).digest("hex");

// Quick simulated models: a streamed answer of 30-50 tokens in a few milliseconds.
const SIM = {
  name: "sim",
  kind: "simulator",
  enabled: true,
  models: [
    { name: "small", input_usd_per_mtok: 0.1, output_usd_per_mtok: 0.4, tiers: ["simple", "standard"], simulator: { ttft_ms: 5, tokens_per_second: 5000, output_tokens: 30, quality: 0.55 } },
    { name: "large", input_usd_per_mtok: 3, output_usd_per_mtok: 15, tiers: ["standard", "complex"], simulator: { ttft_ms: 5, tokens_per_second: 5000, output_tokens: 50, quality: 0.92 } },
  ],
};

describe("the streaming example against a real in-process gateway", () => {
  let mesh: InProcessMesh;
  beforeAll(async () => {
    mesh = await startInProcessMesh({ providers: [SIM], tenants: [{ name: "team", api_key_sha256: [sha(KEY)] }] });
  });
  afterAll(() => mesh.close());

  const ways = (): [string, SwitchyardClientOptions][] => [
    ["gRPC", { baseUrl: mesh.grpcUrl, apiKey: KEY, protocol: "grpc" }],
    ["Connect over HTTP/2", { baseUrl: mesh.grpcUrl, apiKey: KEY, protocol: "connect" }],
    ["Connect JSON over HTTP/1.1", { baseUrl: mesh.httpUrl, apiKey: KEY, protocol: "connect", httpVersion: "1.1", useBinaryFormat: false }],
  ];

  it.each([0, 1, 2])("streams an answer delta by delta, then its route, usage and cost (%i)", async (i) => {
    const [name, options] = ways()[i]!;
    const pieces: string[] = [];
    const answer = await streamAnswer(createSwitchyardClient(options), "Explain routing in one line.", (d) => pieces.push(d));
    expect(answer.deltas, name).toBeGreaterThan(1); // streamed, not one block
    expect(pieces.join(""), name).toBe(answer.text);
    expect(answer.text, name).toMatch(/\[simulated/);
    expect(answer.requestId).toMatch(/^req_[0-9a-f]{24}$/);
    const { route, usage, costMicroUsd } = answer.completion;
    expect(["sim/small", "sim/large"]).toContain(route?.model);
    expect(route?.reason).toMatch(/^tier \w+: sim\/\w+ is the /);
    expect(usage?.outputTokens).toBeGreaterThan(0n);
    expect(costMicroUsd).toBeGreaterThan(0n);
  });

  it("sends the API key on every call: without it the gateway refuses the stream", async () => {
    const err = await streamAnswer(createSwitchyardClient({ baseUrl: mesh.grpcUrl, protocol: "grpc" }), "hi").then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.Unauthenticated);
    const wrong = await streamAnswer(createSwitchyardClient({ baseUrl: mesh.grpcUrl, apiKey: "sk-test-wrong", protocol: "connect" }), "hi").catch((e: unknown) => ConnectError.from(e));
    expect((wrong as ConnectError).code).toBe(Code.Unauthenticated);
  });

  it("explains the route the stream then takes", async () => {
    const client = createSwitchyardClient({ baseUrl: mesh.grpcUrl, apiKey: KEY });
    const prompt = "Prove that there are infinitely many primes, step by step.";
    const explained = await client.routeExplain({ request: { model: "switchyard/auto", messages: [{ role: "user", content: prompt }], maxTokens: 256 } });
    const answer = await streamAnswer(client, prompt);
    expect(explained.model).toBe(answer.completion.route?.model);
    expect(explained.candidates.find((c) => c.verdict === CandidateVerdict.CHOSEN)?.model).toBe(explained.model);
  });

  it("runs as a program from the build, printing the answer, the model and the cost", async () => {
    const built = fileURLToPath(new URL("../dist/examples/stream.js", import.meta.url));
    expect(existsSync(built), "npm run build first").toBe(true);
    const run = (env: Record<string, string>) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile(process.execPath, [built, "Say hello."], { env: { PATH: process.env.PATH ?? "", SWITCHYARD_URL: mesh.grpcUrl, ...env } }, (err, stdout, stderr) =>
          resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
        ),
      );
    const ok = await run({ SWITCHYARD_API_KEY: KEY, SWITCHYARD_PROTOCOL: "grpc" });
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/\[simulated[^]*\n\nanswered by sim\/\w+ \(tier \w+, cache bypass\): tier \w+: /);
    expect(ok.stdout).toMatch(/\d+ input \+ \d+ output tokens, \$0\.\d{6}; request req_[0-9a-f]{24}\n$/);
    const refused = await run({});
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe("stream failed: Unauthenticated: an API key is required: send Authorization: Bearer <key>\n");
  });

  it("refuses options that cannot work, before any call", () => {
    expect(() => createSwitchyardClient({ baseUrl: "localhost:8081" })).toThrow(/must start with http:\/\/ or https:\/\//);
    expect(() => createSwitchyardClient({ baseUrl: "127.0.0.1:8081" })).toThrow(/is not a URL \(for example http:\/\/127.0.0.1:8081\)/);
    expect(() => createSwitchyardClient({ baseUrl: "not a url" })).toThrow(/is not a URL/);
    expect(() => createSwitchyardClient({ baseUrl: mesh.grpcUrl, protocol: "grpc", httpVersion: "1.1" })).toThrow(/gRPC needs HTTP\/2/);
    expect(() => createSwitchyardClient({ baseUrl: mesh.grpcUrl, apiKey: "two words" })).toThrow(/without spaces/);
  });
});
