import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { hostName, isJsonContentType } from "../src/openai/edge.js";
import { CHAT, envelope, JSON_HEADERS, startTestApi, type TestApi } from "./http-harness.js";

const KEY = "sk-test-edge-0123456789";
const KEY_SHA = createHash("sha256").update(KEY).digest("hex");

describe("JSON bodies only with a JSON content type", () => {
  let api: TestApi;
  beforeAll(async () => (api = await startTestApi()));
  afterAll(() => api.close());

  it("answers a text/plain POST carrying JSON with 415 (the CSRF vector: no preflight), and never calls upstream", async () => {
    const before = api.upstreamCalls.length;
    const res = await api.send({ body: CHAT, headers: { "content-type": "text/plain;charset=UTF-8" } });
    expect(res.status).toBe(415);
    const error = envelope(res);
    expect(error).toMatchObject({ type: "invalid_request_error", code: "unsupported_media_type", param: null });
    expect(error.message).toContain('"text/plain;charset=UTF-8"');
    expect(api.upstreamCalls.length).toBe(before);
  });

  it("refuses the other types a browser may send without a preflight, and a missing content-type", async () => {
    for (const type of ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=latin1"]) {
      const res = await api.send({ body: CHAT, headers: { "content-type": type } });
      expect(res.status, type).toBe(415);
      expect(envelope(res).code).toBe("unsupported_media_type");
    }
    const none = await api.send({ body: CHAT });
    expect(none.status).toBe(415);
    expect(envelope(none).message).toMatch(/no content-type/);
  });

  it("accepts application/json with or without charset, and application/*+json", async () => {
    for (const type of ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=\"UTF-8\"", "application/vnd.api+json"]) {
      const res = await api.send({ body: CHAT, headers: { "content-type": type } });
      expect(res.status, type).toBe(200);
      expect(res.json().choices[0].message.content).toBe("hi there");
    }
  });

  it("classifies content types as the edge does", () => {
    expect(isJsonContentType("application/json")).toBe(true);
    expect(isJsonContentType("application/problem+json")).toBe(true);
    expect(isJsonContentType("text/json")).toBe(false);
    expect(isJsonContentType("application/jsonp")).toBe(false);
    expect(isJsonContentType(undefined)).toBe(false);
  });
});

describe("browsers: CORS with an allow-list of origins", () => {
  const APP = "https://app.example.com";
  let api: TestApi;
  beforeAll(async () => (api = await startTestApi({ gateway: { cors_origins: [APP] } })));
  afterAll(() => api.close());

  it("refuses a request whose Origin is not on the list with 403 in the envelope, before anything runs", async () => {
    const before = api.upstreamCalls.length;
    const res = await api.send({ body: CHAT, headers: { ...JSON_HEADERS, origin: "https://evil.example" } });
    expect(res.status).toBe(403);
    expect(envelope(res)).toMatchObject({ type: "permission_error", code: "origin_not_allowed" });
    expect(res.headers["access-control-allow-origin"]).toBeUndefined();
    expect(api.upstreamCalls.length).toBe(before);
    const preflight = await api.send({ method: "OPTIONS", headers: { origin: "https://evil.example", "access-control-request-method": "POST" } });
    expect(preflight.status).toBe(403);
    expect(preflight.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("answers the preflight of an allowed origin with what a browser SDK needs", async () => {
    const res = await api.send({
      method: "OPTIONS",
      headers: { origin: APP, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type, x-stainless-os, x-evil" },
    });
    expect(res.status).toBe(204);
    expect(res.text).toBe("");
    expect(res.headers["access-control-allow-origin"]).toBe(APP);
    expect(res.headers["access-control-allow-methods"]).toContain("POST");
    const allowed = String(res.headers["access-control-allow-headers"]).split(", ");
    expect(allowed).toEqual(expect.arrayContaining(["authorization", "content-type", "x-api-key", "x-switchyard-cache", "x-stainless-os"]));
    expect(allowed).not.toContain("x-evil");
    expect(res.headers.vary).toMatch(/origin/i);
  });

  it("serves an allowed origin with CORS headers that expose the x-switchyard-* headers and traceparent", async () => {
    const res = await api.send({ body: CHAT, headers: { ...JSON_HEADERS, origin: APP } });
    expect(res.status).toBe(200);
    expect(res.headers["access-control-allow-origin"]).toBe(APP);
    const exposed = String(res.headers["access-control-expose-headers"]).split(", ");
    expect(exposed).toEqual(expect.arrayContaining(["x-switchyard-model", "x-switchyard-cost-usd", "x-switchyard-request-id", "traceparent"]));
  });

  it("refuses every origin when none is configured (the default), and serves clients that send none", async () => {
    const closed = await startTestApi();
    try {
      const res = await closed.send({ body: CHAT, headers: { ...JSON_HEADERS, origin: "http://localhost:3000" } });
      expect(res.status).toBe(403);
      expect(envelope(res).code).toBe("origin_not_allowed");
      expect((await closed.send({ body: CHAT, headers: JSON_HEADERS })).status).toBe(200);
    } finally {
      await closed.close();
    }
  });
});

describe("DNS rebinding: with no keys, loopback Host names only", () => {
  let open: TestApi;
  let keyed: TestApi;
  beforeAll(async () => {
    open = await startTestApi();
    keyed = await startTestApi({ tenants: [{ name: "team", api_key_sha256: [KEY_SHA] }] });
  });
  afterAll(async () => {
    await open.close();
    await keyed.close();
  });

  it("refuses Host: evil.example with 403 on every path, probes aside", async () => {
    for (const [method, path] of [["POST", "/v1/chat/completions"], ["GET", "/v1/models"], ["GET", "/metrics"], ["GET", "/nowhere"]] as const) {
      const res = await open.send({ method, path, body: method === "POST" ? CHAT : undefined, headers: { ...JSON_HEADERS, host: "evil.example" } });
      expect(res.status, path).toBe(403);
      expect(envelope(res)).toMatchObject({ type: "permission_error", code: "host_not_allowed" });
    }
    // Probes are answered by the server beneath (here: not by the REST API at all).
    expect((await open.send({ path: "/healthz", headers: { host: "evil.example" } })).status).toBe(404);
    expect(open.upstreamCalls).toHaveLength(0);
  });

  it("accepts localhost, 127.0.0.1 and [::1] with any port", async () => {
    for (const host of ["localhost", "localhost:8080", "127.0.0.1:1", "[::1]", "[::1]:8080", "LOCALHOST:80"]) {
      const res = await open.send({ body: CHAT, headers: { ...JSON_HEADERS, host } });
      expect(res.status, host).toBe(200);
    }
  });

  it("refuses names that only look local", async () => {
    for (const host of ["localhost.evil.example", "127.0.0.1.nip.io", "[::1]x", "localhost:80:80"]) {
      expect((await open.send({ body: CHAT, headers: { ...JSON_HEADERS, host } })).status, host).toBe(403);
    }
  });

  it("accepts any Host once keys are configured", async () => {
    const res = await keyed.send({ body: CHAT, headers: { ...JSON_HEADERS, host: "evil.example", authorization: `Bearer ${KEY}` } });
    expect(res.status).toBe(200);
  });

  it("accepts the names in gateway.allowed_hosts, or any with \"*\"", async () => {
    const named = await startTestApi({ gateway: { allowed_hosts: ["gateway.internal"] } });
    const any = await startTestApi({ gateway: { allowed_hosts: ["*"] } });
    try {
      expect((await named.send({ body: CHAT, headers: { ...JSON_HEADERS, host: "gateway.internal:8080" } })).status).toBe(200);
      expect((await named.send({ body: CHAT, headers: { ...JSON_HEADERS, host: "evil.example" } })).status).toBe(403);
      expect((await any.send({ body: CHAT, headers: { ...JSON_HEADERS, host: "evil.example" } })).status).toBe(200);
    } finally {
      await named.close();
      await any.close();
    }
  });

  it("parses Host values strictly", () => {
    expect(hostName("[::1]:8080")).toBe("::1");
    expect(hostName("Example.COM:443")).toBe("example.com");
    expect(hostName("a:b")).toBeUndefined();
    expect(hostName("")).toBeUndefined();
  });
});

describe("every path and method of the REST API answers in the envelope", () => {
  let api: TestApi;
  beforeAll(async () => (api = await startTestApi()));
  afterAll(() => api.close());

  it("405 for a wrong method, with Allow", async () => {
    for (const [method, path, allow] of [["GET", "/v1/chat/completions", "POST"], ["DELETE", "/v1/models", "GET"], ["PUT", "/v1/chat/completions", "POST"]] as const) {
      const res = await api.send({ method, path });
      expect(res.status).toBe(405);
      expect(envelope(res).code).toBe("method_not_allowed");
      expect(res.headers.allow).toBe(`${allow}, OPTIONS`);
    }
  });

  it("OPTIONS without an Origin is answered 204 with Allow", async () => {
    const res = await api.send({ method: "OPTIONS", path: "/v1/models" });
    expect(res.status).toBe(204);
    expect(res.headers.allow).toBe("GET, OPTIONS");
  });

  it("400 for a body that is not JSON, 413 for one too large, in the envelope", async () => {
    const bad = await api.send({ body: "{not json", headers: JSON_HEADERS });
    expect(bad.status).toBe(400);
    expect(envelope(bad).code).toBe("invalid_json");
    const big = await api.send({ body: JSON.stringify({ ...CHAT, pad: "x".repeat(api.config.limits.max_body_bytes) }), headers: JSON_HEADERS });
    expect(big.status).toBe(413);
    expect(envelope(big).code).toBe("request_too_large");
  });
});
