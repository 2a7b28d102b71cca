import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { isCertManager, validateCertManager } from "./lib/certmanager.js";
import { CHART, checkTemplateBlocks, checkTemplatePaths, coalesce, helmLint, helmNotes, helmTemplate, loadValues, readTemplates, validateValues } from "./lib/helm.js";
import { StrictFieldChecker, validateModel, type KubeObject } from "./lib/kube.js";
import { checkLedgerDatabase } from "./lib/ledger.js";
import { checkMesh } from "./lib/mesh.js";
import { checkExposure, checkMeshTls, deployedServices, expectedIngress, hasDefaultDeny, ingressTable, readKey } from "./lib/security.js";
import { checkDeploymentConfig, ENVOY_PORTS, LEDGER_DATA_DIR, NATS_CLIENTS, SERVICE_NAMES, SERVICE_PORTS, serviceCommand } from "./lib/services.js";
import { tool } from "./lib/tools.js";

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
      // Ready when /readyz on the HTTP/1.1 port says so: the internal services' h2c port answers
      // only mTLS callers, which kubelet's grpc probe is not.
      expect(c.readinessProbe.httpGet, name).toEqual({ path: "/readyz", port: http });
      if (name !== "gateway") expect(c.livenessProbe.httpGet, name).toEqual({ path: "/healthz", port: http });
      for (const p of [c.readinessProbe, c.livenessProbe]) expect([grpc, http], `${name} probes a port it listens on`).toContain(p.grpc?.port ?? p.httpGet?.port);
    }
    expect(component(values, "gateway").readinessProbe.httpGet).toEqual({ path: "/readyz", port: SERVICE_PORTS.gateway.http });
    expect(SERVICE_NAMES.filter((n) => component(values, n).nats), "components with a NATS identity: the services that connect").toEqual([...NATS_CLIENTS]);
    expect(component(values, "gateway").service.headless, "Envoy resolves gateway-headless").toBe(true);
    expect(component(values, "gateway").autoscaling.enabled, "the gateway has an HPA").toBe(true);
    const envoy = component(values, "envoy");
    expect(Object.fromEntries(envoy.ports.map((p: any) => [p.name, p.port]))).toEqual({ http: ENVOY_PORTS.ingress, metrics: ENVOY_PORTS.metrics });
    expect(envoy.readinessProbe.httpGet).toEqual({ path: "/envoy/ready", port: ENVOY_PORTS.ingress });
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

  it("a plain-text database URL in values (only a Secret may hold it)", () => {
    const v = coalesce(values, { ledger: { database: { external: { url: "postgres://ledger:hunter2@db:5432/switchyard" } } } });
    expect(validateValues(schema, v)).toContain('/ledger/database/external: unknown key "url"');
  });

  it("a database Secret name Kubernetes would refuse, a volume size it would not parse, a misspelled database key", () => {
    expect(validateValues(schema, coalesce(values, { ledger: { database: { external: { existingSecret: "Ledger_DB" } } } })).join("\n")).toMatch(
      /\/ledger\/database\/external\/existingSecret: must match pattern/,
    );
    expect(validateValues(schema, coalesce(values, { ledger: { database: { pglite: { size: "5GB" } } } })).join("\n")).toMatch(/\/ledger\/database\/pglite\/size: must match pattern/);
    expect(validateValues(schema, coalesce(values, { ledger: { databse: {} } }))).toContain('/ledger: unknown key "databse"');
    expect(validateValues(schema, coalesce(values, { ledger: { database: { external: { key: "" } } } })).join("\n")).toMatch(/\/ledger\/database\/external\/key: must NOT have fewer than 1 characters/);
  });

  it("an admin key instead of its hash", () => {
    const v = coalesce(values, { gateway: { adminKeySha256: ["sk-admin-plaintext"] } });
    expect(validateValues(schema, v).join("\n")).toMatch(/\/gateway\/adminKeySha256\/0: must match pattern/);
  });

  it("a component volume outside the restricted Pod Security Standard", () => {
    const v = coalesce(values, { components: { ledger: { volumes: [{ name: "host", hostPath: { path: "/var/lib" } }] } } });
    expect(validateValues(schema, v)).toContain('/components/ledger/volumes/0: unknown key "hostPath"');
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
});

const helm = tool("helm");
const METRICS = JSON.stringify((values as Record<string, any>).networkPolicy.metricsFrom[0]);

/** kubernetes-models (and the unknown-field walk) for Kubernetes kinds, the cert-manager schemas for its kinds. */
function validateObjects(objects: KubeObject[]): string[] {
  const kube = objects.filter((o) => !isCertManager(o));
  const strict = new StrictFieldChecker(kube);
  return [...kube.flatMap((o) => [...validateModel(o), ...strict.check(o)]), ...objects.filter(isCertManager).flatMap(validateCertManager)];
}

/** Each ci/*.yaml as Helm takes it (`--values`, merged over values.yaml by Helm). */
const ciValues: [string, Record<string, any>][] = ciFiles.map((f) => [`ci/${f}`, loadValues(readFileSync(join(CHART, "ci", f), "utf8"))]);

describe.skipIf(helm.skip)("helm template (the chart rendered by Helm itself)", () => {
  const rendered = new Map<string, KubeObject[]>();
  beforeAll(async () => {
    for (const [name, v] of ciValues) rendered.set(name, await helmTemplate(v));
  });

  it("helm is installed (CI fails without it)", () => {
    expect(helm.available).toBe(true);
  });

  it("refuses to render an open gateway: values.yaml alone has no tenant key", async () => {
    await expect(helmTemplate({})).rejects.toThrow(/no tenant has an API key: set config\.tenants\[\]\.api_key_sha256 .* or set gateway\.allowUnauthenticated=true/);
  });

  it.each(ciValues)("%s passes helm lint --strict", async (_, v) => {
    expect(await helmLint(v)).toEqual([]);
  });

  it.each(ciValues)("%s: every object validates (Kubernetes and cert-manager schemas, no unknown field)", (name) => {
    const objects = rendered.get(name)!;
    expect(objects.length).toBeGreaterThan(20);
    expect(validateObjects(objects)).toEqual([]);
  });

  it.each(ciValues)("%s: wires the mesh with the services' names and ports, hardened", (name) => {
    expect(checkMesh(rendered.get(name)!)).toEqual([]);
  });

  it.each(ciValues)("%s: each service loads a config it accepts, in step with the defaults, and the gateway would start", (name) => {
    const { services, problems } = deployedServices(rendered.get(name)!);
    expect(problems).toEqual([]);
    expect(services.map((s) => s.name).sort()).toEqual([...SERVICE_NAMES].sort());
    for (const s of services) expect(checkDeploymentConfig(s.configText, `${name}: ${s.name}`)).toEqual([]);
    expect(checkExposure(services)).toEqual([]);
  });

  it.each(ciValues)("%s: mutual TLS as the config says: certificates in every pod, identities, probes off the mTLS port", (name) => {
    const objects = rendered.get(name)!;
    const { services } = deployedServices(objects);
    expect(checkMeshTls(objects, services)).toEqual([]);
  });

  it.each(ciValues)("%s: NetworkPolicies deny by default and admit only the callers each port needs", (name) => {
    const objects = rendered.get(name)!;
    const v = coalesce(values, ciValues.find(([n]) => n === name)![1]) as Record<string, any>;
    const gateway = deployedServices(objects).services.find((s) => s.name === "gateway")!;
    const quotasInRedis = v.redis.enabled && gateway.config.quotas.backend === "redis" && gateway.config.quotas.redis_url === "redis://redis:6379";
    expect(hasDefaultDeny(objects)).toBe(true);
    expect(ingressTable(objects)).toEqual(
      expectedIngress(METRICS, { nats: v.nats.enabled ? [...NATS_CLIENTS] : undefined, redis: v.redis.enabled && (quotasInRedis ? "cache+gateway" : true), jaeger: v.jaeger.enabled }),
    );
    // The books: only the gateway reaches the ledger's RPCs; the ledger reaches the bundled NATS.
    expect(ingressTable(objects).ledger).toEqual({ 9105: ["pods:gateway"], 9115: [METRICS] });
    if (v.nats.enabled) expect(ingressTable(objects).nats![4222]![0]).toMatch(/^pods:.*\bledger\b/);
  });

  it.each(ciValues)("%s: the ledger's books are where the values say: PGlite on its claim (one pod, Recreate), or Postgres from a Secret", (name, v) => {
    expect(checkLedgerDatabase(rendered.get(name)!, v.ledger?.database?.external?.existingSecret ? "postgres" : "pglite")).toEqual([]);
  });

  it("default values: mesh TLS from cert-manager (own CA), NATS identities from the mesh certificates", () => {
    const objects = rendered.get("ci/default-values.yaml")!;
    const { services } = deployedServices(objects);
    for (const s of services) {
      expect(s.config.mesh.tls, s.name).toEqual({ mode: "required", ca_file: "/etc/switchyard/tls/ca.crt", cert_file: "/etc/switchyard/tls/tls.crt", key_file: "/etc/switchyard/tls/tls.key" });
      expect(s.config.nats.tls, s.name).toEqual({ ca_file: "/etc/switchyard/tls/ca.crt", cert_file: "/etc/switchyard/tls/tls.crt", key_file: "/etc/switchyard/tls/tls.key" });
      expect(s.config.gateway.allow_unauthenticated, s.name).toBe(false);
      expect(s.config.endpoints, s.name).toEqual({});
    }
    const gateway = services.find((s) => s.name === "gateway")!;
    expect(gateway.env).toMatchObject({ SWITCHYARD_CLASSIFIER_URL: "http://classifier:9101", SWITCHYARD_PROVIDER_URL: "http://provider:9104" });
    const certs = objects.filter((o) => o.kind === "Certificate").map((o) => o.metadata.name).sort();
    expect(certs).toEqual(["cache-mesh", "classifier-mesh", "gateway-mesh", "ledger-mesh", "nats-mesh", "policy-mesh", "prices-mesh", "provider-mesh", "switchyard-mesh-ca"]);
    const ledger = objects.find((o) => o.kind === "Certificate" && o.metadata.name === "ledger-mesh")!;
    expect(ledger.spec).toMatchObject({
      secretName: "ledger-mesh-tls",
      commonName: "ledger",
      uris: ["spiffe://switchyard/ledger"],
      dnsNames: ["ledger", "ledger.switchyard.svc", "ledger.switchyard.svc.cluster.local"],
      usages: expect.arrayContaining(["server auth", "client auth"]),
    });
    expect(conf(objects)).toContain('user: "spiffe://switchyard/ledger"');
    const ca = objects.find((o) => o.kind === "Certificate" && o.metadata.name === "switchyard-mesh-ca")!;
    expect(ca.spec).toMatchObject({ isCA: true, issuerRef: { name: "switchyard-selfsigned", kind: "Issuer" } });
    const classifier = objects.find((o) => o.kind === "Certificate" && o.metadata.name === "classifier-mesh")!;
    expect(classifier.spec).toMatchObject({
      secretName: "classifier-mesh-tls",
      commonName: "classifier",
      uris: ["spiffe://switchyard/classifier"],
      dnsNames: ["classifier", "classifier.switchyard.svc", "classifier.switchyard.svc.cluster.local"],
      usages: expect.arrayContaining(["server auth", "client auth"]),
      privateKey: { algorithm: "ECDSA", size: 256 },
      issuerRef: { name: "switchyard-mesh-ca", kind: "Issuer" },
    });
    const nats = objects.find((o) => o.kind === "StatefulSet" && o.metadata.name === "nats")!;
    const sources = nats.spec.template.spec.volumes.find((v: any) => v.name === "config").projected.sources;
    expect(sources.map((x: any) => x.configMap?.name ?? x.secret?.name)).toEqual(["nats-config", "nats-mesh-tls"]);
    expect(conf(objects)).toMatch(/verify_and_map: true/);
    expect(conf(objects)).toContain('user: "spiffe://switchyard/prices"');
    expect(objects.some((o) => o.kind === "Secret" && o.metadata.name === "switchyard-nats")).toBe(false);
  });

  it("an existing CA issuer signs the certificates when certManager.issuerRef names one", () => {
    const objects = rendered.get("ci/external-nats-values.yaml")!;
    expect(objects.filter((o) => o.kind === "Issuer")).toEqual([]);
    for (const c of objects.filter((o) => o.kind === "Certificate")) expect(c.spec.issuerRef, c.metadata.name).toEqual({ name: "corp-internal-ca", kind: "ClusterIssuer", group: "cert-manager.io" });
    const { services } = deployedServices(objects);
    for (const s of services) expect(s.config.nats, s.name).toMatchObject({ creds_file: "/etc/switchyard/nats/nats.creds", tls: { ca_file: "/etc/switchyard/nats/ca.crt" } });
  });

  it("mesh.tls.mode off (a service mesh does mTLS): no certificates, plaintext between services, NATS passwords from a Secret", () => {
    const objects = rendered.get("ci/service-mesh-values.yaml")!;
    expect(objects.filter(isCertManager)).toEqual([]);
    const { services } = deployedServices(objects);
    for (const s of services) {
      expect(s.config.mesh.tls.mode, s.name).toBe("off");
      expect([...s.files.keys()].filter((f) => f.includes("/tls/")), s.name).toEqual([]);
      expect(s.config.nats, s.name).toMatchObject({ user: "switchyard", password_env: "NATS_PASSWORD" });
    }
    const secret = objects.find((o) => o.kind === "Secret" && o.metadata.name === "switchyard-nats")!;
    expect(Object.keys(secret.data).sort()).toEqual(["prices", "switchyard"]);
    const withPassword = services.filter((s) => (s.container.env ?? []).some((e: any) => e.name === "NATS_PASSWORD")).map((s) => s.name).sort();
    expect(withPassword, "only the services that use NATS get its password").toEqual([...NATS_CLIENTS].sort());
  });

  it("default values (no external database): the ledger on PGlite, its folder on a kept PersistentVolumeClaim, one pod replaced with Recreate", () => {
    const objects = rendered.get("ci/default-values.yaml")!;
    const ledger = deployedServices(objects).services.find((s) => s.name === "ledger")!;
    const deployment = ledger.workload;
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.strategy).toEqual({ type: "Recreate" });
    expect(objects.find((o) => o.kind === "HorizontalPodAutoscaler" && o.metadata.name === "ledger")).toBeUndefined();
    const pvc = objects.find((o) => o.kind === "PersistentVolumeClaim" && o.metadata.name === "ledger-data")!;
    expect(pvc.spec).toEqual({ accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "5Gi" } } });
    expect((pvc.metadata as Record<string, unknown>).annotations, "kept when the release is uninstalled").toEqual({ "helm.sh/resource-policy": "keep" });
    const volume = deployment.spec.template.spec.volumes.find((v: any) => v.persistentVolumeClaim);
    expect(volume).toEqual({ name: "ledger-data", persistentVolumeClaim: { claimName: "ledger-data" } });
    const mount = ledger.container.volumeMounts.find((m: any) => m.name === "ledger-data");
    // PGlite's folder is below the mount point (a fresh volume's root may hold lost+found).
    expect(ledger.config.ledger.data_dir).toBe(LEDGER_DATA_DIR);
    expect(LEDGER_DATA_DIR.startsWith(`${mount.mountPath}/`)).toBe(true);
    expect(ledger.container.env.map((e: any) => e.name)).not.toContain("DATABASE_URL");
    // Only the ledger mounts the claim.
    const mounting = objects.filter((o) => o.kind === "Deployment" && (o.spec.template.spec.volumes ?? []).some((v: any) => v.persistentVolumeClaim)).map((o) => o.metadata.name);
    expect(mounting).toEqual(["ledger"]);
  });

  it("an external Postgres: DATABASE_URL from the Secret, no PersistentVolumeClaim, the replicas asked for, rolling updates", () => {
    const objects = rendered.get("ci/external-nats-values.yaml")!;
    const ledger = deployedServices(objects).services.find((s) => s.name === "ledger")!;
    expect(ledger.container.env).toContainEqual({ name: "DATABASE_URL", valueFrom: { secretKeyRef: { name: "switchyard-ledger-db", key: "url" } } });
    expect(objects.filter((o) => o.kind === "PersistentVolumeClaim")).toEqual([]);
    expect(ledger.workload.spec.template.spec.volumes.some((v: any) => v.persistentVolumeClaim)).toBe(false);
    expect(ledger.workload.spec.replicas).toBe(2);
    expect(ledger.workload.spec.strategy).toBeUndefined();
    expect(ledger.config.ledger.database_url_env).toBe("DATABASE_URL");
    expect(ledger.configText).not.toMatch(/postgres(ql)?:\/\//);
  });

  it("the gateway finds the ledger, shares its quotas in Redis when it runs several replicas, and takes the admin key hashes", () => {
    const gateway = (name: string) => deployedServices(rendered.get(name)!).services.find((s) => s.name === "gateway")!;
    for (const [name] of ciValues) expect(gateway(name).env.SWITCHYARD_LEDGER_URL, name).toBe(`http://ledger:${SERVICE_PORTS.ledger.grpc}`);
    // Autoscaled gateway: bundled Redis, or the external one; one replica without Redis: its own counters.
    expect(gateway("ci/default-values.yaml").config.quotas).toMatchObject({ backend: "redis", redis_url: "redis://redis:6379" });
    expect(gateway("ci/external-nats-values.yaml").config.quotas).toMatchObject({ backend: "redis", redis_url: "redis://redis-master.cache-system.svc:6379" });
    expect(gateway("ci/minimal-values.yaml").config.quotas.backend).toBe("memory");
    expect(gateway("ci/external-nats-values.yaml").config.gateway.admin_key_sha256).toEqual(["58c9cdc58b80389bc95b81dde1aca7be2b95e424424efe88da7e876365c6dd3f"]);
    expect(gateway("ci/service-mesh-values.yaml").config.gateway).toMatchObject({ require_api_key: true, admin_key_sha256: ["58c9cdc58b80389bc95b81dde1aca7be2b95e424424efe88da7e876365c6dd3f"] });
    expect(gateway("ci/default-values.yaml").config.gateway.admin_key_sha256).toEqual([]);
  });

  it("NOTES tell how to reach the books: switchyard usage and switchyard keys through Envoy, where the ledger keeps them", async () => {
    const notes = await helmNotes(ciValues.find(([n]) => n === "ci/default-values.yaml")![1]);
    expect(notes).toContain("npx switchyard usage");
    expect(notes).toContain("npx switchyard keys create --tenant default");
    expect(notes).toContain("export SWITCHYARD_URL=http://localhost:8080");
    expect(notes).toMatch(/PGlite on the PersistentVolumeClaim "ledger-data"/);
    expect(notes).toMatch(/The admin API is OFF until you set gateway\.adminKeySha256/);
    const external = await helmNotes(ciValues.find(([n]) => n === "ci/external-nats-values.yaml")![1]);
    expect(external).toMatch(/Postgres; its URL from the Secret "switchyard-ledger-db" \(key "url"\)/);
    expect(external).not.toMatch(/admin API is OFF/);
  });

  it("an open gateway on purpose: allow_unauthenticated and the allowed Host names reach the config", () => {
    const { services } = deployedServices(rendered.get("ci/minimal-values.yaml")!);
    const gateway = services.find((s) => s.name === "gateway")!;
    expect(gateway.config.gateway).toMatchObject({ allow_unauthenticated: true, allowed_hosts: ["switchyard.internal.example.com"] });
    expect(hasTenantKeysIn(gateway.configText)).toBe(false);
  });
});

function conf(objects: KubeObject[]): string {
  return readKey(objects, { kind: "ConfigMap", name: "nats-config", key: "nats.conf" })!;
}

function hasTenantKeysIn(configText: string): boolean {
  return /api_key_sha256:\s*\n\s*-/.test(configText) || /api_key_sha256: \[[0-9a-f]/.test(configText);
}

describe.skipIf(helm.skip)("the rendered-chart checks catch broken values", () => {
  const base = ciValues.find(([n]) => n === "ci/default-values.yaml")![1];

  it("an internal service that admits callers other than the gateway", async () => {
    const objects = await helmTemplate(coalesce(base, { components: { provider: { networkPolicy: { from: ["gateway", "envoy"] } } } }));
    expect(ingressTable(objects).provider![9104]).toEqual(["pods:envoy", "pods:gateway"]);
    expect(ingressTable(objects)).not.toEqual(expectedIngress(METRICS, { nats: ["gateway", "policy", "provider"], redis: true, jaeger: true }));
  });

  it("a ledger that admits callers other than the gateway", async () => {
    const objects = await helmTemplate(coalesce(base, { components: { ledger: { networkPolicy: { from: ["gateway", "provider"] } } } }));
    expect(ingressTable(objects).ledger![9105]).toEqual(["pods:gateway", "pods:provider"]);
  });

  it("a ledger on PGlite asked for several replicas or an autoscaler still runs one pod, replaced with Recreate", async () => {
    const objects = await helmTemplate(coalesce(base, { components: { ledger: { replicas: 3, autoscaling: { enabled: true, minReplicas: 2, maxReplicas: 4 }, strategy: { type: "RollingUpdate" } } } }));
    const ledger = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "ledger")!;
    expect(ledger.spec.replicas).toBe(1);
    expect(ledger.spec.strategy).toEqual({ type: "Recreate" });
    expect(objects.find((o) => o.kind === "HorizontalPodAutoscaler" && o.metadata.name === "ledger")).toBeUndefined();
  });

  it("an existing claim for PGlite: mounted, and the chart makes none; a storage class and size reach the chart's claim", async () => {
    const own = await helmTemplate(coalesce(base, { ledger: { database: { pglite: { existingClaim: "ledger-restored" } } } }));
    expect(own.filter((o) => o.kind === "PersistentVolumeClaim")).toEqual([]);
    expect(own.find((o) => o.kind === "Deployment" && o.metadata.name === "ledger")!.spec.template.spec.volumes).toContainEqual({ name: "ledger-data", persistentVolumeClaim: { claimName: "ledger-restored" } });
    const sized = await helmTemplate(coalesce(base, { ledger: { database: { pglite: { size: "20Gi", storageClassName: "fast-ssd" } } } }));
    expect(sized.find((o) => o.kind === "PersistentVolumeClaim")!.spec).toMatchObject({ storageClassName: "fast-ssd", resources: { requests: { storage: "20Gi" } } });
  });

  it("the database URL under the variable the config names (ledger.database_url_env)", async () => {
    const objects = await helmTemplate(coalesce(base, { ledger: { database: { external: { existingSecret: "books", key: "dsn" } } }, config: { ledger: { database_url_env: "LEDGER_DATABASE_URL" } } }));
    const { services } = deployedServices(objects);
    const ledger = services.find((s) => s.name === "ledger")!;
    expect(ledger.container.env).toContainEqual({ name: "LEDGER_DATABASE_URL", valueFrom: { secretKeyRef: { name: "books", key: "dsn" } } });
    expect(ledger.config.ledger.database_url_env).toBe("LEDGER_DATABASE_URL");
    // Only the ledger gets the database.
    for (const s of services.filter((x) => x.name !== "ledger")) expect((s.container.env ?? []).map((e: any) => e.name), s.name).not.toContain("LEDGER_DATABASE_URL");
  });

  it("quotas: an explicit backend wins; redis asked for without any Redis fails the render; a replicated gateway without Redis is warned about", async () => {
    const explicit = await helmTemplate(coalesce(base, { config: { quotas: { backend: "memory" } } }));
    expect(deployedServices(explicit).services.find((s) => s.name === "gateway")!.config.quotas.backend).toBe("memory");
    expect(ingressTable(explicit).redis![6379]).toEqual(["pods:cache"]);
    await expect(helmTemplate(coalesce(base, { redis: { enabled: false }, config: { quotas: { backend: "redis" } } }))).rejects.toThrow(/config\.quotas\.backend is redis but there is no Redis/);
    const notes = await helmNotes(coalesce(base, { redis: { enabled: false } }));
    expect(notes).toMatch(/WARNING: the gateway may run several replicas but its budgets and rate limits are counted per\s+replica/);
  });

  it("NetworkPolicies turned off: every port open to anyone", async () => {
    const objects = await helmTemplate(coalesce(base, { networkPolicy: { enabled: false } }));
    expect(hasDefaultDeny(objects)).toBe(false);
    expect(ingressTable(objects).cache![9103]).toEqual(["*"]);
  });

  it("a grpc probe on an internal service's mTLS port", async () => {
    const objects = await helmTemplate(coalesce(base, { components: { classifier: { readinessProbe: { grpc: { port: 9101 }, httpGet: null } } } }));
    const { services } = deployedServices(objects);
    expect(checkMeshTls(objects, services)).toContain("classifier: readinessProbe is a grpc probe on port 9101, which answers only mTLS callers: probe the HTTP side port");
  });

  it("a config the services would reject", async () => {
    const objects = await helmTemplate(coalesce(base, { config: { cache: { ttl_second: 60 } } }));
    expect(deployedServices(objects).problems.join("\n")).toMatch(/cache\.ttl_second: unknown key/);
  });

  it("a config that drifted from the defaults", async () => {
    const v = structuredClone(values) as Record<string, any>;
    v.config.tiers[0].quality_target = 0.6;
    const objects = await helmTemplate({ ...base, config: { ...base.config, tiers: v.config.tiers } });
    const { services } = deployedServices(objects);
    expect(checkDeploymentConfig(services[0]!.configText, "config").join("\n")).toMatch(/tiers differs from libs\/config\/switchyard.default.yaml/);
  });
});
