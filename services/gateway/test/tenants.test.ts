import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { stringify as toYaml } from "yaml";
import { parseConfig } from "@switchyard/config";
import type { GatewayError } from "../src/errors.js";
import { TenantResolver } from "../src/tenants.js";

const sha = (k: string) => createHash("sha256").update(k).digest("hex");
const resolver = (extra: Record<string, unknown>) => new TenantResolver(parseConfig(toYaml(extra)));
const refusal = (f: () => void) => {
  try {
    f();
  } catch (err) {
    return { status: (err as GatewayError).status, code: (err as GatewayError).code };
  }
  return undefined;
};

describe("who may use the admin API", () => {
  it("anyone on a local machine with no keys at all", () => {
    expect(refusal(() => resolver({}).authorizeAdmin({}))).toBeUndefined();
  });

  it("only the admin key once one is configured, even where tenants need no key", () => {
    const r = resolver({ gateway: { admin_key_sha256: [sha("admin-secret")] } });
    expect(refusal(() => r.authorizeAdmin({}))).toEqual({ status: 401, code: "missing_api_key" });
    expect(refusal(() => r.authorizeAdmin({ authorization: "Bearer wrong" }))).toEqual({ status: 403, code: "not_admin" });
    expect(refusal(() => r.authorizeAdmin({ authorization: "Bearer admin-secret" }))).toBeUndefined();
  });

  it("no one on an open gateway listening beyond loopback without an admin key", () => {
    const r = resolver({ listen_host: "0.0.0.0", gateway: { allow_unauthenticated: true } });
    expect(refusal(() => r.authorizeAdmin({ authorization: "Bearer anything" }))).toEqual({ status: 403, code: "admin_disabled" });
  });

  it("not a tenant's key where tenants have keys", () => {
    const r = resolver({ tenants: [{ name: "a", api_key_sha256: [sha("tenant-key")] }], gateway: { admin_key_sha256: [sha("admin-secret")] } });
    expect(refusal(() => r.authorizeAdmin({ authorization: "Bearer tenant-key" }))).toEqual({ status: 403, code: "not_admin" });
    expect(refusal(() => r.authorizeAdmin({ xApiKey: "admin-secret" }))).toBeUndefined();
  });
});
