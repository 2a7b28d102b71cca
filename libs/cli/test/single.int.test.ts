import { afterAll, beforeAll, describe, expect, it } from "vitest";
import OpenAI from "openai";
import { startTestMesh, type TestMesh } from "./support.js";

let m: TestMesh;
beforeAll(async () => {
  m = await startTestMesh({}, {}, true);
}, 60_000);
afterAll(async () => m?.stop());

describe("switchyard start --single-process", () => {
  it("routes, streams, caches and accounts like the five-process mesh", async () => {
    const openai = new OpenAI({ baseURL: `${m.httpUrl}/v1`, apiKey: "unused", maxRetries: 0 });
    const body = { model: "switchyard/auto", temperature: 0, messages: [{ role: "user" as const, content: "One process, please." }] };
    const first = await openai.chat.completions.create(body).withResponse();
    expect(first.response.headers.get("x-switchyard-cache")).toBe("miss");
    expect(first.data.model).toMatch(/^sim\/(small|medium|large)$/);
    expect(Number(first.response.headers.get("x-switchyard-cost-usd"))).toBeGreaterThan(0);
    let again = await openai.chat.completions.create(body).withResponse();
    for (let i = 0; i < 20 && again.response.headers.get("x-switchyard-cache") !== "hit"; i++) {
      await new Promise((r) => setTimeout(r, 50));
      again = await openai.chat.completions.create(body).withResponse();
    }
    expect(again.response.headers.get("x-switchyard-cache")).toBe("hit");
    expect(again.data.choices[0]!.message.content).toBe(first.data.choices[0]!.message.content);
    const ready = (await (await fetch(`${m.httpUrl}/readyz`)).json()) as { status: string; checks: Record<string, string> };
    expect(ready.status).toBe("ready");
    expect(ready.checks.mode).toBe("single process");
  });
});
