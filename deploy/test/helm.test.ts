import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { describe, expect, it } from "vitest";
import { CHART, checkTemplateBlocks, checkTemplatePaths, coalesce, loadValues, readTemplates, validateValues } from "./lib/helm.js";
import { checkDeploymentConfig, ENVOY_PORTS, SERVICE_NAMES, SERVICE_PORTS, serviceCommand } from "./lib/services.js";

const schema = JSON.parse(readFileSync(join(CHART, "values.schema.json"), "utf8")) as object;
const valuesText = readFileSync(join(CHART, "values.yaml"), "utf8");
const values = loadValues(valuesText);
const ciFiles = readdirSync(join(CHART, "ci")).filter((f) => f.endsWith(".yaml"));

/** Each values set CI checks: the defaults, and each ci/*.yaml coalesced over them (as Helm does). */
const valueSets: [string, Record<string, any>][] = [
  ["values.yaml", values],
  ...ciFiles.map((f): [string, Record<string, any>] => [`ci/${f}`, coalesce(values, loadValues(readFileSync(join(CHART, "ci", f), "utf8")))]),
];

/** A component as the template sees it: merged over componentDefaults, its own keys winning. */
function component(v: Record<string, any>, name: string): Record<string, any> {
  return coalesce(v.componentDefaults, v.components[name]);
}

/** The switchyard.yaml the chart renders (mirrors the "switchyard.config" helper in _helpers.tpl). */
function renderedConfig(v: Record<string, any>): string {
  const config = structuredClone(v.config);
  const redisUrl = v.redis.enabled ? "redis://redis:6379" : v.redis.externalUrl;
  if (redisUrl) config.cache = { ...config.cache, backend: "redis", redis_url: redisUrl };
  return stringify(config);
}

describe("Helm chart deploy/helm/switchyard", () => {
  it("has ci values files to check", () => {
    expect(ciFiles).toEqual(expect.arrayContaining(["default-values.yaml", "external-nats-values.yaml", "minimal-values.yaml"]));
  });

  it.each(valueSets)("%s validates against values.schema.json", (_, v) => {
    expect(validateValues(schema, v)).toEqual([]);
  });

  it("reads only values that exist, and closes every template block", () => {
    const templates = readTemplates();
    expect(templates.map((t) => t.name)).toContain("component.yaml");
    expect(checkTemplatePaths(templates, values)).toEqual([]);
    expect(checkTemplateBlocks(templates)).toEqual([]);
  });

  it("has one component per service, plus Envoy, with the services' names, commands and ports", () => {
    expect(Object.keys(values.components as object).sort()).toEqual([...SERVICE_NAMES, "envoy"].sort());
    for (const name of SERVICE_NAMES) {
      const c = component(values, name);
      const { grpc, http } = SERVICE_PORTS[name];
      expect(c.command, name).toEqual(serviceCommand(name));
      expect(c.switchyard, name).toBe(true);
      const ports = Object.fromEntries(c.ports.map((p: any) => [p.name, p.port]));
      expect(ports, name).toEqual({ grpc, http });
      // The template builds SWITCHYARD_<SERVICE>_URL from the first port: it must be the h2c one.
      if (name !== "gateway") expect(c.ports[0], name).toMatchObject({ name: "grpc", port: grpc, appProtocol: "kubernetes.io/h2c" });
      // gRPC health on the h2c port; the gateway is ready when /readyz says so.
      const probes = [c.readinessProbe, c.livenessProbe];
      expect(probes.some((p) => p.grpc?.port === grpc), `${name} has a grpc probe on ${grpc}`).toBe(true);
      for (const p of probes) {
        const port = p.grpc?.port ?? p.httpGet?.port;
        expect([grpc, http], `${name} probes a port it listens on`).toContain(port);
      }
    }
    expect(component(values, "gateway").readinessProbe.httpGet).toEqual({ path: "/readyz", port: SERVICE_PORTS.gateway.http });
    expect(component(values, "gateway").service.headless, "Envoy resolves gateway-headless").toBe(true);
    expect(component(values, "gateway").autoscaling.enabled, "the gateway has an HPA").toBe(true);
    const envoy = component(values, "envoy");
    expect(Object.fromEntries(envoy.ports.map((p: any) => [p.name, p.port]))).toEqual({ http: ENVOY_PORTS.ingress, metrics: ENVOY_PORTS.metrics });
    expect(envoy.readinessProbe.httpGet).toEqual({ path: "/envoy/ready", port: ENVOY_PORTS.ingress });
  });

  it.each(valueSets)("%s renders a switchyard.yaml the services accept, in step with the defaults", (source, v) => {
    expect(checkDeploymentConfig(renderedConfig(v), `${source}: config`)).toEqual([]);
  });
});

describe("the Helm checks catch broken copies", () => {
  it("a misspelled values key", () => {
    const v = loadValues(valuesText.replace("  replicas: 2\n", "  replicsa: 2\n"));
    expect(validateValues(schema, v)).toContain('/componentDefaults: unknown key "replicsa"');
  });

  it("a ci file with a key the schema does not know", () => {
    const v = coalesce(values, { redis: { enabled: false, externalURL: "redis://r:6379" } });
    expect(validateValues(schema, v)).toContain('/redis: unknown key "externalURL"');
  });

  it("a hardened setting turned off", () => {
    const v = coalesce(values, { containerSecurityContext: { readOnlyRootFilesystem: false } });
    expect(validateValues(schema, v).join("\n")).toMatch(/\/containerSecurityContext\/readOnlyRootFilesystem: must be equal to constant/);
  });

  it("external NATS without its URL", () => {
    const v = coalesce(values, { nats: { enabled: false } });
    expect(validateValues(schema, v).join("\n")).toMatch(/\/nats\/externalUrl: must NOT have fewer than 1 characters/);
  });

  it("a template reading a value that values.yaml does not have", () => {
    const templates = readTemplates().map((t) => (t.name === "component.yaml" ? { ...t, text: t.text.replace("$.Values.otel.sampler", "$.Values.otel.samplr") } : t));
    expect(checkTemplatePaths(templates, values)).toContain("component.yaml: .Values.otel.samplr is not in values.yaml");
  });

  it("a template reading a component field no component has", () => {
    const templates = readTemplates().map((t) => (t.name === "component.yaml" ? { ...t, text: t.text.replace("$c.terminationGracePeriodSeconds", "$c.terminationGracePeriod") } : t));
    expect(checkTemplatePaths(templates, values)).toContain("component.yaml: $c.terminationGracePeriod is neither in componentDefaults nor in components.gateway");
  });

  it("a template block left open", () => {
    const templates = readTemplates().map((t) => (t.name === "redis.yaml" ? { ...t, text: t.text.replace(/\{\{- end \}\}\s*$/, "") } : t));
    expect(checkTemplateBlocks(templates)).toContain("redis.yaml: 1 block(s) not closed with {{ end }}");
  });

  it("a config the services would reject", () => {
    const v = coalesce(values, { config: { cache: { ttl_second: 60 } } });
    expect(checkDeploymentConfig(renderedConfig(v), "config").join("\n")).toMatch(/cache\.ttl_second: unknown key/);
  });

  it("a config that drifted from the defaults", () => {
    const v = structuredClone(values) as Record<string, any>;
    v.config.tiers[0].quality_target = 0.6;
    expect(checkDeploymentConfig(renderedConfig(v), "config").join("\n")).toMatch(/tiers differs from libs\/config\/switchyard.default.yaml/);
  });
});
