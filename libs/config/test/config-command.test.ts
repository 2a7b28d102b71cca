import { describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { configCommand } from "../../cli/src/commands/config.js";

const dir = mkdtempSync(join(tmpdir(), "switchyard-config-cmd-"));
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

async function run(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await configCommand(argv, { out: (t) => (out += t), err: (t) => (err += t), env, cwd: dir });
  return { code, out, err };
}

const providersOnly = file(
  "providers-only.yaml",
  "providers:\n  - name: s\n    kind: simulator\n    models: [{name: m, input_usd_per_mtok: 1, output_usd_per_mtok: 2, tiers: [simple]}]\n",
);

describe("switchyard config check", () => {
  it("says ok for a partial file and exits 0", async () => {
    expect(await run(["check", providersOnly])).toEqual({ code: 0, out: `ok: ${providersOnly}\n`, err: "" });
  });

  it("exits 2 listing every problem by key", async () => {
    const bad = file("bad.yaml", "listen_host: 0.0.0.0\ncache:\n  ttl_secnds: 1\nlimits:\n  max_tools: -1\n");
    const { code, out, err } = await run(["check", bad]);
    expect(code).toBe(2);
    expect(out).toBe("");
    expect(err).toContain("cache.ttl_secnds: unknown key");
    expect(err).toContain("limits.max_tools:");
  });

  it("reports the exposure rule, naming allow_unauthenticated", async () => {
    const open = file("open.yaml", "listen_host: 0.0.0.0\n");
    const { code, err } = await run(["check", open]);
    expect(code).toBe(2);
    expect(err).toMatch(/listen_host: "0\.0\.0\.0" is not loopback.*gateway\.allow_unauthenticated: true/);
    expect((await run(["check", file("open-ok.yaml", "listen_host: 0.0.0.0\ngateway: {allow_unauthenticated: true}\n")])).code).toBe(0);
  });

  it("exits 2 for a missing file or a wrong action", async () => {
    expect((await run(["check", join(dir, "nope.yaml")])).code).toBe(2);
    expect((await run(["frobnicate"])).code).toBe(2);
    expect((await run([])).code).toBe(2);
  });

  it("is what the switchyard command runs (built CLI)", async () => {
    const bin = fileURLToPath(new URL("../../cli/bin/switchyard.js", import.meta.url));
    const result = await new Promise<{ code: number; out: string }>((resolve) =>
      execFile(process.execPath, [bin, "config", "check", providersOnly], (error, stdout) => resolve({ code: error ? Number(error.code) : 0, out: stdout })),
    );
    expect(result).toEqual({ code: 0, out: `ok: ${providersOnly}\n` });
  });
});

describe("switchyard config print", () => {
  it("prints the merged configuration as YAML with secrets redacted", async () => {
    const key = "c".repeat(64);
    const path = file(
      "secrets.yaml",
      `tenants:\n  - name: team\n    api_key_sha256: ["${key}"]\ncache:\n  redis_url: redis://:hunter2@redis:6379\n`,
    );
    const { code, out, err } = await run(["print", path]);
    expect(code).toBe(0);
    expect(err).toBe("");
    expect(out).not.toContain(key);
    expect(out).not.toContain("hunter2");
    const printed = parseYaml(out) as Record<string, any>;
    expect(printed.tenants).toEqual([expect.objectContaining({ name: "team", api_key_sha256: ["[redacted]"] })]);
    expect(printed.cache.redis_url).toBe("redis://[redacted]@redis:6379");
    // The defaults the file left out are there: the effective configuration, not the file.
    expect(printed.tiers.map((t: { name: string }) => t.name)).toEqual(["simple", "standard", "complex"]);
    expect(printed.ports.gateway_http).toBe(8080);
  });

  it("applies environment overrides and resolves the file as start does when none is given", async () => {
    const { code, out } = await run(["print"], { SWITCHYARD_CONFIG: providersOnly, SWITCHYARD_GATEWAY_HTTP_PORT: "9999" });
    expect(code).toBe(0);
    const printed = parseYaml(out) as Record<string, any>;
    expect(printed.ports.gateway_http).toBe(9999);
    expect(printed.providers.map((p: { name: string }) => p.name)).toEqual(["s"]);
  });

  it("exits 2 with the problems when the configuration does not validate", async () => {
    const { code, out, err } = await run(["print", file("bad-print.yaml", "tiers: []\n")]);
    expect(code).toBe(2);
    expect(out).toBe("");
    expect(err).toContain("tiers:");
  });
});
