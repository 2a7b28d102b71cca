import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "@switchyard/config";
import { isCertManager, validateCertManager } from "./lib/certmanager.js";
import { byId, GENERATED } from "./lib/compare.js";
import { coalesce, helmTemplate, loadValues, CHART } from "./lib/helm.js";
import { kustomize, StrictFieldChecker, validateModel, type KubeObject } from "./lib/kube.js";
import { checkLedgerDatabase } from "./lib/ledger.js";
import { checkMesh } from "./lib/mesh.js";
import { checkExposure, checkMeshTls, deployedServices, expectedIngress, hasDefaultDeny, ingressTable, readKey } from "./lib/security.js";
import { checkDeploymentConfig, NATS_CLIENTS, readRepoFile, ROOT, SERVICE_NAMES } from "./lib/services.js";
import { tool } from "./lib/tools.js";

const OVERLAYS = ["k8s/base", "k8s/overlays/dev", "k8s/overlays/prod"] as const;
const kubectl = tool("kubectl", ["version", "--client"]);
const helm = tool("helm");

/** kubernetes-models validation plus the unknown-field walk; cert-manager's kinds against its schemas. */
function hasObject(objects: KubeObject[], kind: string, name: string): boolean {
  return objects.some((o) => o.kind === kind && o.metadata.name === name);
}

function validateObjects(objects: KubeObject[], strict: StrictFieldChecker): string[] {
  const problems: string[] = [];
  for (const o of objects) problems.push(...(isCertManager(o) ? validateCertManager(o) : [...validateModel(o), ...strict.check(o)]));
  return problems;
}

describe.skipIf(kubectl.skip)("kustomize: k8s/", () => {
  const rendered = new Map<string, KubeObject[]>();
  let strict: StrictFieldChecker;
  let scratch: string;

  beforeAll(async () => {
    const all = await Promise.all(OVERLAYS.map((dir) => kustomize(dir)));
    OVERLAYS.forEach((dir, i) => rendered.set(dir, all[i]!));
    strict = new StrictFieldChecker([...rendered.values()].flat().filter((o) => !isCertManager(o)));
    scratch = mkdtempSync(join(tmpdir(), "switchyard-k8s-"));
  });
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  /** Renders a copy of k8s/ with one file edited: the path a typo takes in real life. */
  async function renderEdited(file: string, edit: (text: string) => string, overlay = "overlays/dev"): Promise<KubeObject[]> {
    const copy = join(scratch, String(Math.random()).slice(2));
    cpSync(join(ROOT, "k8s"), copy, { recursive: true });
    const path = join(copy, file);
    const before = readFileSync(path, "utf8");
    const after = edit(before);
    if (after === before) throw new Error(`the edit of ${file} changed nothing`);
    writeFileSync(path, after);
    return kustomize(join(copy, overlay));
  }

  it("kubectl is installed (CI fails without it)", () => {
    expect(kubectl.available).toBe(true);
  });

  it.each(OVERLAYS)("%s: every object validates against the Kubernetes schemas, with no unknown field", (dir) => {
    const objects = rendered.get(dir)!;
    expect(objects.length).toBeGreaterThan(20);
    expect(validateObjects(objects, strict)).toEqual([]);
  });

  it.each(OVERLAYS)("%s: wires the mesh with the services' names and ports, hardened", (dir) => {
    expect(checkMesh(rendered.get(dir)!)).toEqual([]);
  });

  it.each(OVERLAYS)("%s: each service loads a config it accepts, in step with the defaults, and the gateway would start", (dir) => {
    const { services, problems } = deployedServices(rendered.get(dir)!);
    expect(problems).toEqual([]);
    expect(services.map((s) => s.name).sort()).toEqual([...SERVICE_NAMES].sort());
    for (const s of services) expect(checkDeploymentConfig(s.configText, `${dir}: ${s.name}`)).toEqual([]);
    expect(checkExposure(services)).toEqual([]);
  });

  it.each(OVERLAYS)("%s: mutual TLS: certificates in every pod, identities, probes off the mTLS port", (dir) => {
    const objects = rendered.get(dir)!;
    expect(checkMeshTls(objects, deployedServices(objects).services)).toEqual([]);
    const namespace = objects.find((o) => o.kind === "ServiceAccount")!.metadata.namespace ?? "switchyard";
    for (const c of objects.filter((o) => o.kind === "Certificate" && o.spec.dnsNames)) {
      const name = c.spec.dnsNames[0];
      expect(c.spec.dnsNames, c.metadata.name).toEqual([name, `${name}.${namespace}.svc`, `${name}.${namespace}.svc.cluster.local`]);
    }
  });

  it.each(OVERLAYS)("%s: NetworkPolicies deny by default and admit only the callers each port needs", (dir) => {
    const objects = rendered.get(dir)!;
    const values = loadValues(readFileSync(join(CHART, "values.yaml"), "utf8")) as Record<string, any>;
    expect(hasDefaultDeny(objects)).toBe(true);
    expect(ingressTable(objects)).toEqual(expectedIngress(JSON.stringify(values.networkPolicy.metricsFrom[0]), { nats: [...NATS_CLIENTS], redis: "cache+gateway", jaeger: true }));
  });

  it.each(OVERLAYS)("%s: the ledger is rendered and reached only by the gateway; the gateway finds it and shares its quotas in Redis", (dir) => {
    const objects = rendered.get(dir)!;
    for (const kind of ["Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "NetworkPolicy"]) {
      expect(objects.some((o) => o.kind === kind && o.metadata.name === "ledger"), `${kind}/ledger`).toBe(true);
    }
    expect(objects.find((o) => o.kind === "Certificate" && o.metadata.name === "ledger-mesh")?.spec.uris).toEqual(["spiffe://switchyard/ledger"]);
    expect(ingressTable(objects).ledger![9105]).toEqual(["pods:gateway"]);
    const gateway = deployedServices(objects).services.find((s) => s.name === "gateway")!;
    expect(gateway.env.SWITCHYARD_LEDGER_URL).toBe("http://ledger:9105");
    expect(gateway.config.quotas).toMatchObject({ backend: "redis", redis_url: "redis://redis:6379" });
  });

  it("base and dev keep the books in PGlite on the claim ledger-data (one pod, Recreate); prod on Postgres from the Secret switchyard-ledger-db", () => {
    expect(checkLedgerDatabase(rendered.get("k8s/base")!, "pglite")).toEqual([]);
    expect(checkLedgerDatabase(rendered.get("k8s/overlays/dev")!, "pglite")).toEqual([]);
    const prod = rendered.get("k8s/overlays/prod")!;
    expect(checkLedgerDatabase(prod, "postgres")).toEqual([]);
    const ledger = deployedServices(prod).services.find((s) => s.name === "ledger")!;
    expect(ledger.container.env).toContainEqual({ name: "DATABASE_URL", valueFrom: { secretKeyRef: { name: "switchyard-ledger-db", key: "url" } } });
    expect(ledger.workload.spec.replicas).toBe(3);
    expect(prod.filter((o) => o.kind === "PersistentVolumeClaim")).toEqual([]);
    expect(prod.find((o) => o.kind === "PersistentVolumeClaim" && o.metadata.name === "ledger-data")).toBeUndefined();
  });

  it("prod keeps the base's placeholder key (every request refused until replaced); dev is open on purpose", () => {
    const gateway = (dir: string) => deployedServices(rendered.get(dir)!).services.find((s) => s.name === "gateway")!.config;
    expect(gateway("k8s/overlays/prod").tenants.flatMap((t) => t.api_key_sha256)).toEqual(["0".repeat(64)]);
    expect(gateway("k8s/overlays/prod").gateway.allow_unauthenticated).toBe(false);
    expect(gateway("k8s/overlays/dev").tenants.flatMap((t) => t.api_key_sha256)).toEqual([]);
    expect(gateway("k8s/overlays/dev").gateway.allow_unauthenticated).toBe(true);
  });

  it.skipIf(helm.skip)("the base is the chart rendered with its default values (and the base's tenants), object by object", async () => {
    const base = rendered.get("k8s/base")!;
    const { services } = deployedServices(base);
    const tenants = services[0]!.config.tenants.map((t) => ({ name: t.name, api_key_sha256: t.api_key_sha256 }));
    const chart = await helmTemplate({ config: { tenants } });
    expect(hasObject(chart, "PersistentVolumeClaim", "ledger-data"), "the chart's defaults keep the books on PGlite, as the base does").toBe(true);
    const a = byId(base), b = byId(chart);
    expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
    for (const [id, object] of a) {
      const generated = GENERATED.some((g) => id.endsWith(`/${g}`));
      if (!generated) expect(object, id).toEqual(b.get(id));
    }
    // Generated from files: the same content.
    const key = (objects: KubeObject[], kind: "Secret" | "ConfigMap", prefix: string, k: string) =>
      readKey(objects, { kind, name: objects.find((o) => o.kind === kind && o.metadata.name.startsWith(prefix))!.metadata.name, key: k });
    expect(key(base, "ConfigMap", "nats-config", "nats.conf")).toBe(key(chart, "ConfigMap", "nats-config", "nats.conf"));
    expect(key(base, "ConfigMap", "envoy-config", "envoy.yaml")).toBe(key(chart, "ConfigMap", "envoy-config", "envoy.yaml"));
    expect(parseConfig(key(base, "Secret", "switchyard-config", "switchyard.yaml")!)).toEqual(parseConfig(key(chart, "Secret", "switchyard-config", "switchyard.yaml")!));
  });

  it("overlays differ from the base where they should", () => {
    const hpa = (dir: string) => rendered.get(dir)!.find((o) => o.kind === "HorizontalPodAutoscaler" && o.metadata.name === "gateway");
    expect(hpa("k8s/overlays/dev")).toBeUndefined();
    expect(hpa("k8s/overlays/prod")?.spec.minReplicas).toBe(3);
    for (const o of rendered.get("k8s/overlays/prod")!) if (o.kind !== "Namespace") expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe("switchyard");
    for (const o of rendered.get("k8s/overlays/dev")!) if (o.kind !== "Namespace") expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe("switchyard-dev");
  });

  it("config files are the same as deploy/'s", () => {
    expect(readRepoFile("k8s/base/config/envoy.yaml")).toBe(readRepoFile("deploy/envoy/envoy.yaml"));
    expect(checkDeploymentConfig(readRepoFile("k8s/base/config/switchyard.yaml"), "k8s/base/config/switchyard.yaml")).toEqual([]);
    expect(checkDeploymentConfig(readRepoFile("k8s/overlays/dev/switchyard.yaml"), "k8s/overlays/dev/switchyard.yaml")).toEqual([]);
  });

  it("the base is what the Helm chart renders with its default values", () => {
    const values = loadValues(readFileSync(join(CHART, "values.yaml"), "utf8")) as Record<string, any>;
    const base = rendered.get("k8s/base")!;
    for (const name of Object.keys(values.components)) {
      const c = coalesce(values.componentDefaults, values.components[name]) as Record<string, any>;
      const image = coalesce(values.image, c.image);
      const deployment = base.find((o) => o.kind === "Deployment" && o.metadata.name === name)!;
      const pod = deployment.spec.template.spec;
      const container = pod.containers[0];
      // Without an external database the ledger runs PGlite: one pod, whatever replicas says.
      const pglite = name === "ledger" && !values.ledger.database.external.existingSecret;
      expect(deployment.spec.replicas, `${name} replicas`).toBe(c.autoscaling.enabled ? undefined : pglite ? 1 : c.replicas);
      expect(deployment.spec.strategy, `${name} strategy`).toEqual(pglite ? { type: "Recreate" } : Object.keys(c.strategy).length ? c.strategy : undefined);
      expect(container.startupProbe, `${name} startupProbe`).toEqual(Object.keys(c.startupProbe).length ? c.startupProbe : undefined);
      expect(container).toMatchObject({
        name,
        image: `${image.repository}:${image.tag}`,
        command: c.command,
        ports: c.ports.map((p: any) => ({ name: p.name, containerPort: p.port, protocol: "TCP" })),
        readinessProbe: c.readinessProbe,
        livenessProbe: c.livenessProbe,
        resources: c.resources,
        securityContext: values.containerSecurityContext,
        lifecycle: { preStop: { exec: { command: ["sleep", String(c.preStopSleepSeconds)] } } },
      });
      expect(container.envFrom ?? [], `${name} envFrom`).toEqual(c.envFrom);
      for (const env of c.env) expect(container.env, `${name} env`).toContainEqual(env);
      expect(container.env.find((e: any) => e.name === "OTEL_SERVICE_NAME")?.value).toBe(name);
      expect(pod.securityContext).toEqual(values.podSecurityContext);
      expect(pod.terminationGracePeriodSeconds).toBe(c.terminationGracePeriodSeconds);
      const service = base.find((o) => o.kind === "Service" && o.metadata.name === name)!;
      expect(service.spec.ports.map((p: any) => [p.name, p.port, p.targetPort, p.appProtocol])).toEqual(
        c.ports.map((p: any) => [p.name, p.servicePort ?? p.port, p.name, p.appProtocol]),
      );
      const pdb = base.find((o) => o.kind === "PodDisruptionBudget" && o.metadata.name === name);
      expect(pdb?.spec.maxUnavailable, `${name} PodDisruptionBudget`).toBe(c.podDisruptionBudget.enabled ? c.podDisruptionBudget.maxUnavailable : undefined);
      const hpa = base.find((o) => o.kind === "HorizontalPodAutoscaler" && o.metadata.name === name);
      expect(hpa?.spec.maxReplicas, `${name} HorizontalPodAutoscaler`).toBe(c.autoscaling.enabled ? c.autoscaling.maxReplicas : undefined);
    }
    expect(new Set(base.filter((o) => o.kind === "Deployment").map((o) => o.metadata.name))).toEqual(new Set([...SERVICE_NAMES, "envoy", "redis", "jaeger"]));
  });

  // Concurrent: each renders its own copy with kubectl (about a second each).
  describe.concurrent("the Kubernetes checks catch broken copies", () => {
    it("a misspelled field in a manifest (kustomize and kubernetes-models let it through)", async ({ expect }) => {
      const objects = await renderEdited("base/gateway.yaml", (t) => t.replace("containers:", "contianers:\n      - name: sidecar\n        image: busybox\n      containers:"));
      const problems = validateObjects(objects, strict);
      expect(problems).toContain('Deployment/gateway: spec.template.spec.contianers: unknown field (did you mean "containers"?)');
    });

    it("a misspelled field deep in a container", async ({ expect }) => {
      const objects = await renderEdited("base/policy.yaml", (t) => t.replace("readinessProbe:", "readinessprobe:"));
      const problems = validateObjects(objects, strict);
      expect(problems).toContain('Deployment/policy: spec.template.spec.containers[0].readinessprobe: unknown field (did you mean "readinessProbe"?)');
    });

    it("a value of the wrong type", async ({ expect }) => {
      const objects = await renderEdited("base/cache.yaml", (t) => t.replace("containerPort: 9103", "containerPort: grpc"));
      expect((validateObjects(objects, strict)).join("\n")).toMatch(/Deployment\/cache: \/spec\/template\/spec\/containers\/0\/ports\/0\/containerPort must be integer/);
    });

    it("a wrong port for a service", async ({ expect }) => {
      const objects = await renderEdited("base/gateway.yaml", (t) => t.replace("value: http://provider:9104", "value: http://provider:9114"));
      expect(checkMesh(objects)).toContain(
        "Deployment/gateway container gateway: SWITCHYARD_PROVIDER_URL=http://provider:9114, the provider service listens on http://provider:9104",
      );
    });

    it("a probe on a port the container does not open", async ({ expect }) => {
      const objects = await renderEdited("base/classifier.yaml", (t) => t.replace(/path: \/readyz\n(\s+)port: 9111/, "path: /readyz\n$1port: 9110"));
      const problems = checkMesh(objects);
      expect(problems).toContain("Deployment/classifier container classifier: readinessProbe probes port 9110, which the container does not open");
      expect(problems.join("\n")).toMatch(/Deployment\/classifier: readinessProbe must be httpGet \/readyz on port 9111/);
    });

    it("a grpc probe on an internal service's mTLS port", async ({ expect }) => {
      const objects = await renderEdited("base/cache.yaml", (t) => t.replace(/readinessProbe:\n(\s+)httpGet:\n\s+path: \/readyz\n\s+port: 9113/, "readinessProbe:\n$1grpc:\n$1  port: 9103"));
      expect(checkMeshTls(objects, deployedServices(objects).services)).toContain(
        "cache: readinessProbe is a grpc probe on port 9103, which answers only mTLS callers: probe the HTTP side port",
      );
    });

    it("a NetworkPolicy that lets any pod call the provider", async ({ expect }) => {
      const objects = await renderEdited("base/provider.yaml", (t) => t.replace(/(kind: NetworkPolicy[\s\S]*?ports:\n\s+- port: grpc\n\s+protocol: TCP\n)\s+from:\n\s+- podSelector:\n\s+matchLabels:\n\s+app.kubernetes.io\/name: gateway\n/, "$1"));
      expect(ingressTable(objects).provider![9104]).toEqual(["*"]);
    });

    it("a certificate without the service's identity", async ({ expect }) => {
      const objects = await renderEdited("base/policy.yaml", (t) => t.replace("spiffe://switchyard/policy", "spiffe://switchyard/gateway"));
      expect(checkMeshTls(objects, deployedServices(objects).services)).toContain("Certificate/policy-mesh: uris must include spiffe://switchyard/policy (the identity the services check)");
    });

    it("a hardened setting dropped in an overlay", async ({ expect }) => {
      const objects = await renderEdited(
        "overlays/prod/envoy.yaml",
        (t) => t.replace("      topologySpreadConstraints:", "      containers:\n        - name: envoy\n          securityContext:\n            readOnlyRootFilesystem: false\n      topologySpreadConstraints:"),
        "overlays/prod",
      );
      expect(checkMesh(objects)).toContain("Deployment/envoy container envoy: readOnlyRootFilesystem must be true");
    });

    it("prod without the external-postgres component: the books fall back to PGlite", async ({ expect }) => {
      const objects = await renderEdited("overlays/prod/kustomization.yaml", (t) => t.replace("components:\n  - ../../components/external-postgres\n", ""), "overlays/prod");
      expect(checkLedgerDatabase(objects, "postgres")).toContain("ledger: no DATABASE_URL in its environment (config ledger.database_url_env): it would fall back to PGlite");
    });

    it("a PGlite ledger scaled to two pods, or rolled", async ({ expect }) => {
      const objects = await renderEdited("base/ledger.yaml", (t) => t.replace("  replicas: 1\n  strategy:\n    type: Recreate\n", "  replicas: 2\n"), "base");
      const problems = checkLedgerDatabase(objects, "pglite");
      expect(problems).toContain("ledger: PGlite has a single writer: replicas must be 1 (found 2)");
      expect(problems).toContain("ledger: PGlite has a single writer: the strategy must be Recreate (a rolling update runs two pods on one folder)");
    });

    it("a database URL written into the external-postgres component", async ({ expect }) => {
      const objects = await renderEdited("components/external-postgres/ledger.yaml", (t) => t.replace(/valueFrom:\n\s+secretKeyRef:\n\s+name: switchyard-ledger-db\n\s+key: url/, 'value: "postgres://ledger:hunter2@db:5432/switchyard"'), "overlays/prod");
      expect(checkLedgerDatabase(objects, "postgres")).toContain("ledger: DATABASE_URL must come from a Secret key (valueFrom.secretKeyRef), never a literal value");
    });

    it("a ledger NetworkPolicy that lets any pod reach the books", async ({ expect }) => {
      const objects = await renderEdited("base/ledger.yaml", (t) => t.replace(/(kind: NetworkPolicy[\s\S]*?ports:\n\s+- port: grpc\n\s+protocol: TCP\n)\s+from:\n\s+- podSelector:\n\s+matchLabels:\n\s+app.kubernetes.io\/name: gateway\n/, "$1"));
      expect(ingressTable(objects).ledger![9105]).toEqual(["*"]);
    });

    it("an overlay that does not build", async ({ expect }) => {
      await expect(renderEdited("overlays/dev/kustomization.yaml", (t) => t.replace("- namespace.yaml", "- namespaces.yaml"))).rejects.toThrow(/namespaces\.yaml/);
    });
  });
});
