import { afterAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import * as http from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../src/ports.js";
import { FAST_SIM_PROVIDER, startTestMesh, type TestMesh } from "./support.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface Answer {
  status: number;
  model: string;
  reason: string;
  fallbacks: number;
}

async function ask(m: TestMesh, content = "hello"): Promise<Answer> {
  const res = await fetch(`${m.httpUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "switchyard/auto:simple", messages: [{ role: "user", content }] }),
  });
  const body = (await res.json()) as { model?: string; switchyard?: { reason: string; fallbacks: number } };
  return { status: res.status, model: body.model ?? "", reason: body.switchyard?.reason ?? "", fallbacks: body.switchyard?.fallbacks ?? -1 };
}

function natsServer(port: number, dir: string): ChildProcess {
  return spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], { stdio: "ignore", env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin` } });
}

describe("a failing provider trips its circuit across the mesh", () => {
  it("falls back at once (users still get answers), then routes around it once the circuit opens", async () => {
    // An OpenAI-compatible upstream that is down for maintenance.
    const down = http.createServer((req, res) => {
      req.resume();
      res.writeHead(503, { "content-type": "application/json" });
      res.end('{"error":{"message":"maintenance"}}');
    });
    await new Promise<void>((r) => down.listen(0, "127.0.0.1", r));
    cleanups.push(() => void down.close());
    const bucket = `resilience-${Date.now().toString(36)}`;
    const m = await startTestMesh({
      providers: [
        { name: "flaky", kind: "openai", base_url: `http://127.0.0.1:${(down.address() as { port: number }).port}/v1`, enabled: true, models: [{ name: "cheap", input_usd_per_mtok: 0.01, output_usd_per_mtok: 0.01, tiers: ["simple"] }] },
        FAST_SIM_PROVIDER,
      ],
      nats: { enabled: true, url: "nats://127.0.0.1:4222", price_bucket: bucket, health_subject: `${bucket}.health` },
    });
    cleanups.push(() => m.stop());
    const first = await ask(m);
    expect(first).toMatchObject({ status: 200, model: "sim/small", fallbacks: 1 });
    let answer = first;
    for (let i = 0; i < 40 && answer.fallbacks !== 0; i++) {
      answer = await ask(m, `hello ${i}`);
      expect(answer.status).toBe(200);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(answer).toMatchObject({ model: "sim/small", fallbacks: 0 });
    expect(answer.reason).toMatch(/circuit open/);
  }, 60_000);
});

describe("infrastructure failures cost no user request", () => {
  it("keeps answering while NATS is down and reconnects when it returns", async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "switchyard-nats-"));
    let nats = natsServer(port, dir);
    cleanups.push(() => {
      nats.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    });
    await new Promise((r) => setTimeout(r, 300));
    const m = await startTestMesh({ nats: { enabled: true, url: `nats://127.0.0.1:${port}`, stale_after_ms: 500 } });
    cleanups.push(() => m.stop());
    const policyReady = () => fetch(`http://127.0.0.1:${m.config.ports.policy_http}/readyz`).then((r) => r.json() as Promise<{ checks: { nats: string } }>);
    for (let i = 0; i < 50 && (await policyReady()).checks.nats !== "connected"; i++) await new Promise((r) => setTimeout(r, 100));
    expect((await policyReady()).checks.nats).toBe("connected");

    nats.kill("SIGKILL");
    for (let i = 0; i < 10; i++) expect((await ask(m, `during outage ${i}`)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 700));
    expect((await policyReady()).checks.nats).toMatch(/tables stale/);
    expect((await ask(m, "still stale")).status).toBe(200);

    nats = natsServer(port, dir);
    let checks = "";
    for (let i = 0; i < 100 && checks !== "connected"; i++) {
      await new Promise((r) => setTimeout(r, 100));
      checks = (await policyReady()).checks.nats;
    }
    expect(checks).toBe("connected");
  }, 60_000);

  it("answers when the classifier or the cache process dies", async () => {
    const m = await startTestMesh();
    cleanups.push(() => m.stop());
    m.mesh.kill("classifier");
    m.mesh.kill("cache");
    await new Promise((r) => setTimeout(r, 200));
    const res = await fetch(`${m.httpUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "switchyard/auto", temperature: 0, messages: [{ role: "user", content: "anyone there?" }] }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { switchyard: { tier: string; reason: string; cache: string } };
    expect(body.switchyard.tier).toBe("standard");
    expect(body.switchyard.reason).toMatch(/^classifier unavailable, middle tier/);
    expect(body.switchyard.cache).toBe("miss");
  }, 60_000);

  it("gives a clear error, not a hang, when the provider service is gone", async () => {
    const m = await startTestMesh();
    cleanups.push(() => m.stop());
    m.mesh.kill("provider");
    await new Promise((r) => setTimeout(r, 200));
    const started = performance.now();
    const res = await fetch(`${m.httpUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "hello?" }] }),
    });
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(res.status).toBe(503);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("provider_service_unavailable");
  }, 60_000);
});
