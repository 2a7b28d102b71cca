import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "@switchyard/config";
import { coalesce, loadValues, CHART } from "./lib/helm.js";
import { hasKubectl, kustomize, StrictFieldChecker, validateModel, type KubeObject } from "./lib/kube.js";
import { checkMesh } from "./lib/mesh.js";
import { checkDeploymentConfig, readRepoFile, ROOT, SERVICE_NAMES } from "./lib/services.js";

const OVERLAYS = ["k8s/base", "k8s/overlays/dev", "k8s/overlays/prod"] as const;
const kubectl = hasKubectl();
if (!kubectl) console.warn("deploy/test/k8s.test.ts: kubectl is not installed, the kustomize checks are skipped (CI installs it: .ci/run)");

/** kubernetes-models validation plus the unknown-field walk, for every object. */
function validateObjects(objects: KubeObject[], strict: StrictFieldChecker): string[] {
  const problems: string[] = [];
  for (const o of objects) problems.push(...validateModel(o), ...strict.check(o));
  return problems;
}

describe.skipIf(!kubectl)("kustomize: k8s/", () => {
  const rendered = new Map<string, KubeObject[]>();
  let strict: StrictFieldChecker;
  let scratch: string;

  beforeAll(async () => {
    const all = await Promise.all(OVERLAYS.map((dir) => kustomize(dir)));
    OVERLAYS.forEach((dir, i) => rendered.set(dir, all[i]!));
    strict = new StrictFieldChecker([...rendered.values()].flat());
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

  it.each(OVERLAYS)("%s: every object validates against the Kubernetes schemas, with no unknown field", (dir) => {
    const objects = rendered.get(dir)!;
    expect(objects.length).toBeGreaterThan(20);
    expect(validateObjects(objects, strict)).toEqual([]);
  });

  it.each(OVERLAYS)("%s: wires the mesh with the services' names and ports, hardened", (dir) => {
    expect(checkMesh(rendered.get(dir)!)).toEqual([]);
  });

  it("overlays differ from the base where they should", () => {
    const hpa = (dir: string) => rendered.get(dir)!.find((o) => o.kind === "HorizontalPodAutoscaler" && o.metadata.name === "gateway");
    expect(hpa("k8s/overlays/dev")).toBeUndefined();
    expect(hpa("k8s/overlays/prod")?.spec.minReplicas).toBe(3);
    for (const o of rendered.get("k8s/overlays/prod")!) if (o.kind !== "Namespace") expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe("switchyard");
    for (const o of rendered.get("k8s/overlays/dev")!) if (o.kind !== "Namespace") expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe("switchyard-dev");
  });

  it("config files are the same as deploy/ and the Helm chart's", () => {
    expect(readRepoFile("k8s/base/config/envoy.yaml")).toBe(readRepoFile("deploy/envoy/envoy.yaml"));
    const text = readRepoFile("k8s/base/config/switchyard.yaml");
    expect(checkDeploymentConfig(text, "k8s/base/config/switchyard.yaml")).toEqual([]);
    // The chart's default config with its bundled Redis (the "switchyard.config" helper).
    const values = loadValues(readFileSync(join(CHART, "values.yaml"), "utf8")) as Record<string, any>;
    const chartConfig = { ...values.config, cache: { ...values.config.cache, backend: "redis", redis_url: "redis://redis:6379" } };
    expect(parseConfig(text)).toEqual(parseConfig(stringify(chartConfig)));
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
      expect(deployment.spec.replicas, `${name} replicas`).toBe(c.autoscaling.enabled ? undefined : c.replicas);
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
      const objects = await renderEdited("base/classifier.yaml", (t) => t.replace(/grpc:\n(\s+)port: 9101/, "grpc:\n$1port: 9100"));
      const problems = checkMesh(objects);
      expect(problems).toContain("Deployment/classifier container classifier: readinessProbe probes port 9100, which the container does not open");
      expect(problems).toContain("Deployment/classifier: no grpc health probe on port 9101");
    });

    it("a hardened setting dropped in an overlay", async ({ expect }) => {
      const objects = await renderEdited(
        "overlays/prod/envoy.yaml",
        (t) => t.replace("      topologySpreadConstraints:", "      containers:\n        - name: envoy\n          securityContext:\n            readOnlyRootFilesystem: false\n      topologySpreadConstraints:"),
        "overlays/prod",
      );
      expect(checkMesh(objects)).toContain("Deployment/envoy container envoy: readOnlyRootFilesystem must be true");
    });

    it("an overlay that does not build", async ({ expect }) => {
      await expect(renderEdited("overlays/dev/kustomization.yaml", (t) => t.replace("- namespace.yaml", "- namespaces.yaml"))).rejects.toThrow(/namespaces\.yaml/);
    });
  });
});
