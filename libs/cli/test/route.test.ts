import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { routeCommand, type RouteCommandIo } from "../src/commands/route.js";
import { startInProcessMesh, type InProcessMesh } from "./in-process.js";
import { FAST_SIM_PROVIDER } from "./support.js";

const KEY = "sk-test-route-cli-0a1b2c3d4e";
const OTHER_KEY = "sk-test-route-cli-other-99";
const sha = (k: string) => createHash("sha256").update(k).digest("hex");

/** One run of the command with captured output; `stdin` is what is piped (undefined: a terminal). */
async function run(argv: string[], stdin?: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const io: RouteCommandIo = {
    out: (t) => (out += t),
    err: (t) => (err += t),
    env,
    stdin: () => (stdin === undefined ? undefined : Promise.resolve(stdin)),
  };
  const code = await routeCommand(argv, io);
  return { code, out, err };
}

/** The model and tier a real completion through the OpenAI API was answered by. */
async function completionRoute(mesh: InProcessMesh, key: string, body: Record<string, unknown>): Promise<{ model: string; tier: string }> {
  const res = await fetch(`${mesh.httpUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ model: "switchyard/auto", ...body }),
  });
  expect(res.status).toBe(200);
  await res.text();
  return { model: res.headers.get("x-switchyard-model") ?? "", tier: res.headers.get("x-switchyard-tier") ?? "" };
}

const noStack = (text: string) => expect(text).not.toMatch(/\n\s+at \S|Error: |node:internal/);

describe("switchyard route against a real in-process gateway", () => {
  let mesh: InProcessMesh;
  let auth: string[];
  beforeAll(async () => {
    mesh = await startInProcessMesh({
      providers: [FAST_SIM_PROVIDER],
      tenants: [
        { name: "team", api_key_sha256: [sha(KEY)] },
        { name: "frugal", api_key_sha256: [sha(OTHER_KEY)], cost_weight: 0.9 },
      ],
    });
    auth = ["--url", mesh.grpcUrl, "--api-key", KEY];
  });
  afterAll(() => mesh.close());

  it("prints the features, the tier, every candidate with its numbers, and the choice a real request gets", async () => {
    const prompt = "Prove that there are infinitely many primes, step by step.";
    const { code, out, err } = await run([prompt, ...auth]);
    expect(err).toBe("");
    expect(code).toBe(0);
    const real = await completionRoute(mesh, KEY, { messages: [{ role: "user", content: prompt }] });
    expect(out).toMatch(new RegExp(`^choice {6}${real.model.replace("/", "\\/")}$`, "m"));
    expect(out).toMatch(new RegExp(`-> tier ${real.tier} \\(router \\w+\\)`));
    expect(out).toMatch(/^tenant {6}team /m);
    expect(out).toMatch(/^prompt {6}58 chars, \d+ words, 1 line, 1 turn, language en, task \w+$/m);
    expect(out).toMatch(/^#\s+model\s+quality\s+\$\/Mtok in \/ out\s+expected cost\s+circuit\s+verdict\s+why$/m);
    // One row per configured model, each with a quality, prices and an expected cost in dollars.
    for (const model of ["sim/small", "sim/medium", "sim/large"]) {
      expect(out).toMatch(new RegExp(`^[-\\d]\\s+${model.replace("/", "\\/")}\\s+0\\.\\d\\d prior\\s+\\d+\\.\\d+ \\/ \\d+\\.\\d+\\s+\\$0\\.\\d{6}\\s+closed\\s+\\S`, "m"));
    }
    expect(out).toMatch(/^1\s+sim\/\w+\s.*\bchosen\s+cheapest expected cost among the models meeting quality/m);
    expect(out).toMatch(/^-\s+sim\/small\s.*\bnot in tier\s+serves simple, standard, not complex$/m);
    expect(out).toMatch(/^why {9}tier complex: sim\/\w+ is the cheapest of \d candidate\(s\) meeting quality 0\.85$/m);
  });

  it("--json: one JSON object whose choice is what real requests are routed to, for each tenant and prompt", async () => {
    for (const [key, tenant] of [
      [KEY, "team"],
      [OTHER_KEY, "frugal"],
    ] as const) {
      for (const prompt of ["hi", "Write a Python function that merges two sorted lists.", "Prove that there are infinitely many primes, step by step."]) {
        const { code, out } = await run([prompt, "--json", "--url", mesh.grpcUrl, "--api-key", key]);
        expect(code).toBe(0);
        expect(out.trimEnd().split("\n")).toHaveLength(1);
        const doc = JSON.parse(out) as { tenant: string; model: string; tier: string; candidates: { model: string; predictedQuality: number; expectedCostMicroUsd: string; outputMicroUsdPerMtok: string; verdict: string; planPosition: number }[] };
        const real = await completionRoute(mesh, key, { messages: [{ role: "user", content: prompt }] });
        expect({ tenant: doc.tenant, model: doc.model, tier: doc.tier }, prompt).toEqual({ tenant, ...real });
        expect(doc.candidates).toHaveLength(3);
        for (const c of doc.candidates) {
          expect(Number(c.expectedCostMicroUsd), c.model).toBeGreaterThan(0);
          expect(Number(c.outputMicroUsdPerMtok), c.model).toBeGreaterThan(0);
          expect(c.predictedQuality).toBeGreaterThan(0);
          expect(c.verdict).toMatch(/^CANDIDATE_VERDICT_[A-Z_]+$/);
        }
        expect(doc.candidates.filter((c) => c.verdict === "CANDIDATE_VERDICT_CHOSEN").map((c) => c.model)).toEqual([doc.model]);
      }
    }
  });

  it("explains a multi-turn conversation from --file or standard input, the prompt added as the last turn", async () => {
    const dir = mkdtempSync(join(tmpdir(), "switchyard-route-"));
    const turns = [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Write a Python function that merges two sorted lists." },
      { role: "assistant", content: "def merge(a, b): return sorted(a + b)" },
    ];
    const file = join(dir, "conversation.json");
    writeFileSync(file, JSON.stringify(turns));
    const fromFile = JSON.parse((await run(["--file", file, "Now prove it correct.", "--json", ...auth])).out);
    expect(fromFile.features).toMatchObject({ turns: 4, hasSystemPrompt: true });
    const fromStdin = JSON.parse((await run(["--json", ...auth], JSON.stringify({ messages: [...turns, { role: "user", content: "Now prove it correct." }] }))).out);
    expect(fromStdin.features).toEqual(fromFile.features);
    expect(fromStdin.model).toBe(fromFile.model);
    const real = await completionRoute(mesh, KEY, { messages: [...turns, { role: "user", content: "Now prove it correct." }] });
    expect(fromFile.model).toBe(real.model);
    // Plain text on standard input is one user message.
    expect(JSON.parse((await run(["--json", ...auth], "hi there\n")).out).features).toMatchObject({ turns: 1, chars: 8 });
  });

  it("says why there is no route, and exits 1, when no model is within the max price", async () => {
    const { code, out } = await run(["hi", "--max-output-usd-per-mtok", "0.01", ...auth]);
    expect(code).toBe(1);
    expect(out).toMatch(/^choice {6}none: a completion would fail$/m);
    expect(out).toMatch(/^why {9}no route: no model of tier "simple" is within the max price$/m);
    expect(out).toMatch(/over price cap\s+output price \$0\.400000\/Mtok is over the request's max \$0\.010000\/Mtok/);
  });

  it("fails cleanly: a refused key, another tenant, an unknown model, a gateway that is not there", async () => {
    const cases: [string[], RegExp][] = [
      [["hi", "--url", mesh.grpcUrl], /^switchyard route: an API key is required: send Authorization: Bearer <key> \(pass --api-key KEY or set SWITCHYARD_API_KEY\)\n$/],
      [["hi", "--url", mesh.grpcUrl, "--api-key", "sk-test-wrong"], /^switchyard route: the API key is not valid/],
      [["hi", ...auth, "--tenant", "frugal"], /^switchyard route: this API key belongs to tenant "team", not "frugal"\n$/],
      [["hi", ...auth, "--model", "sim/nope"], /^switchyard route: model "sim\/nope" is not routable\n$/],
      [["hi", ...auth, "--model", "switchyard/auto:huge"], /^switchyard route: unknown tier "huge" in model "switchyard\/auto:huge" \(tiers: simple, standard, complex\)\n$/],
      [["hi", "--url", "http://127.0.0.1:1"], /^switchyard route: cannot reach the gateway at http:\/\/127\.0\.0\.1:1 \(connect ECONNREFUSED 127\.0\.0\.1:1\): is it running/],
    ];
    for (const [argv, message] of cases) {
      const { code, out, err } = await run(argv);
      expect(code, argv.join(" ")).toBe(1);
      expect(out).toBe("");
      expect(err).toMatch(message);
      noStack(err);
    }
  });

  it("reaches the gateway on its HTTP/1.1 port too, and with gRPC", async () => {
    const h1 = await run(["hi", "--json", "--url", mesh.httpUrl, "--api-key", KEY]);
    expect(h1.code).toBe(0);
    const grpc = await run(["hi", "--json", "--protocol", "grpc", ...auth]);
    expect(JSON.parse(grpc.out).model).toBe(JSON.parse(h1.out).model);
    const wrong = await run(["hi", "--protocol", "grpc", "--url", mesh.httpUrl, "--api-key", KEY]);
    expect(wrong.code).toBe(1);
    expect(wrong.err).toMatch(/does not speak gRPC over HTTP\/2 .*use the gateway's port 8081, or --protocol connect/);
  });

  it("refuses bad options with the usage and exit 2, before calling anything", async () => {
    const cases: [string[], string | undefined, RegExp][] = [
      [["hi", "--bogus"], undefined, /^switchyard route: Unknown option '--bogus'\n\nusage: switchyard route/],
      [["hi", "--quality-target", "2"], undefined, /^switchyard route: --quality-target must be a number from 0 to 1, not "2"/],
      [["hi", "--max-tokens", "1.5"], undefined, /^switchyard route: --max-tokens must be a whole number from 1 to/],
      [["hi", "--protocol", "rest"], undefined, /^switchyard route: --protocol must be connect or grpc, not "rest"/],
      [["hi", "--url", "127.0.0.1:8081"], undefined, /^switchyard route: --url must be an http:\/\/ or https:\/\/ address/],
      [[], undefined, /^switchyard route: give a prompt, --file FILE, or the conversation on standard input/],
      [["--file", "/nonexistent/conversation.json"], undefined, /^switchyard route: cannot read \/nonexistent\/conversation\.json/],
      [[], "[{\"role\": \"user\"}]", /^switchyard route: standard input: messages\[0\]\.content must be a string/],
      [[], "[{\"role\": \"user\", ", /^switchyard route: standard input: not valid JSON/],
    ];
    for (const [argv, stdin, message] of cases) {
      const { code, out, err } = await run(argv, stdin, { SWITCHYARD_URL: "http://127.0.0.1:1" });
      expect(code, argv.join(" ")).toBe(2);
      expect(out).toBe("");
      expect(err).toMatch(message);
      noStack(err);
    }
    expect((await run(["--help"])).out).toMatch(/^usage: switchyard route \[PROMPT\] \[options\]/);
  });

  it("runs as the switchyard command: exits with its code as soon as it is done", async () => {
    const bin = fileURLToPath(new URL("../bin/switchyard.js", import.meta.url));
    expect(existsSync(fileURLToPath(new URL("../dist/main.js", import.meta.url))), "npm run build first").toBe(true);
    const spawn = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string; ms: number }>((resolve) => {
        const started = Date.now();
        execFile(process.execPath, [bin, "route", ...args], { env: { PATH: process.env.PATH ?? "", SWITCHYARD_API_KEY: KEY }, timeout: 15_000 }, (error, stdout, stderr) =>
          resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr, ms: Date.now() - started }),
        );
      });
    const ok = await spawn(["What is the capital of France?", "--url", mesh.grpcUrl]);
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^choice {6}sim\/\w+$/m);
    expect(ok.ms).toBeLessThan(10_000); // no idle connection keeps the process alive
    const down = await spawn(["hi", "--url", "http://127.0.0.1:1"]);
    expect(down.code).toBe(1);
    expect(down.stdout).toBe("");
    expect(down.stderr).toMatch(/^switchyard route: cannot reach the gateway at http:\/\/127\.0\.0\.1:1/);
    noStack(down.stderr);
  });
});
