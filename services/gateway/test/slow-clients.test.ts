import * as http from "node:http";
import * as net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "./rpc-harness.js";

/** Clients that hold a connection without finishing their request are cut, with a readable answer where one fits. */
describe("slow and oversized clients", () => {
  let g: TestGateway;
  let port: number;
  beforeAll(async () => {
    g = await startTestGateway({ limits: { header_timeout_ms: 1_000, body_timeout_ms: 1_000, max_body_bytes: 1_000_000 } });
    port = Number(new URL(g.h1Url).port);
  });
  afterAll(() => g?.close());

  it("closes a connection whose headers trickle in one line at a time past header_timeout_ms", async () => {
    const socket = net.connect(port, "127.0.0.1");
    const started = performance.now();
    socket.write("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n");
    const trickle = setInterval(() => socket.writable && socket.write(`x-slow-${Math.floor(performance.now())}: 1\r\n`), 250);
    let answer = "";
    socket.on("data", (d: Buffer) => (answer += d.toString()));
    await new Promise<void>((resolve) => socket.once("close", () => resolve()));
    clearInterval(trickle);
    const elapsed = performance.now() - started;
    expect(elapsed).toBeLessThan(3_500);
    expect(elapsed).toBeGreaterThan(900);
    expect(answer === "" || answer.startsWith("HTTP/1.1 408")).toBe(true);
  });

  it("answers a body that stalls past body_timeout_ms with 408 in the error envelope, and closes", async () => {
    const socket = net.connect(port, "127.0.0.1");
    socket.write("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"messages\":");
    let answer = "";
    socket.on("data", (d: Buffer) => (answer += d.toString()));
    const started = performance.now();
    await new Promise<void>((resolve) => socket.once("close", () => resolve()));
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("request_timeout");
  });

  it("lets a client upload a 20 MB body to its end and read the 413 (no reset mid-upload)", async () => {
    const chunk = Buffer.alloc(1 << 20, 0x61);
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port, path: "/v1/chat/completions", method: "POST", headers: { "content-type": "application/json", "content-length": 20 * chunk.length } }, (r) => {
        let body = "";
        r.setEncoding("utf8");
        r.on("data", (d: string) => (body += d));
        r.on("end", () => resolve({ status: r.statusCode ?? 0, body }));
      });
      req.on("error", reject);
      let sent = 0;
      const pump = () => {
        while (sent < 20) {
          sent++;
          if (!req.write(chunk)) return void req.once("drain", pump);
        }
        req.end();
      };
      pump();
    });
    expect(res.status).toBe(413);
    expect((JSON.parse(res.body) as { error: { code: string } }).error.code).toBe("request_too_large");
  });
});
