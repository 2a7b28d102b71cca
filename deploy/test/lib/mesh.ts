import type { KubeObject } from "./kube.js";
import { ENVOY_PORTS, SERVICE_NAMES, SERVICE_PORTS, serviceCommand } from "./services.js";

type Json = Record<string, any>;

const WORKLOADS = new Set(["Deployment", "StatefulSet", "DaemonSet"]);

/**
 * Checks that rendered manifests wire the mesh the way the services expect: one Deployment,
 * container and Service per service under its own name, on its own ports; every
 * SWITCHYARD_<SERVICE>_URL pointing at that Service's h2c port; probes on ports the container
 * opens (readiness: /readyz on the HTTP port); Services that select pods and target named ports those pods
 * have; ConfigMaps and the headless gateway Service that Envoy needs; and the hardened
 * securityContext on every pod and container.
 */
export function checkMesh(objects: KubeObject[]): string[] {
  const problems: string[] = [];
  const find = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name);
  const workloads = objects.filter((o) => WORKLOADS.has(o.kind));
  const services = objects.filter((o) => o.kind === "Service");
  const configMaps = new Set(objects.filter((o) => o.kind === "ConfigMap").map((o) => o.metadata.name));

  for (const name of [...SERVICE_NAMES, "envoy"] as const) {
    const deployment = find("Deployment", name);
    if (!deployment) {
      problems.push(`Deployment/${name} is missing`);
      continue;
    }
    // Its own identity: a service mesh authorizes callers by ServiceAccount.
    const account = deployment.spec.template.spec.serviceAccountName;
    if (account !== name) problems.push(`Deployment/${name}: serviceAccountName is ${account}, expected its own (${name})`);
    else if (!find("ServiceAccount", name)) problems.push(`Deployment/${name}: ServiceAccount/${name} is missing`);
    const container = (deployment.spec.template.spec.containers as Json[]).find((c) => c.name === name);
    if (!container) {
      problems.push(`Deployment/${name}: no container named ${name}`);
      continue;
    }
    const expected: Record<string, number> =
      name === "envoy" ? { http: ENVOY_PORTS.ingress, metrics: ENVOY_PORTS.metrics } : { grpc: SERVICE_PORTS[name].grpc, http: SERVICE_PORTS[name].http };
    const actual = Object.fromEntries((container.ports ?? []).map((p: Json) => [p.name, p.containerPort]));
    if (JSON.stringify(sortKeys(actual)) !== JSON.stringify(sortKeys(expected))) {
      problems.push(`Deployment/${name}: container ports ${JSON.stringify(actual)}, the service listens on ${JSON.stringify(expected)}`);
    }
    if (name !== "envoy") {
      if (JSON.stringify(container.command) !== JSON.stringify(serviceCommand(name))) {
        problems.push(`Deployment/${name}: command ${JSON.stringify(container.command)}, expected ${JSON.stringify(serviceCommand(name))}`);
      }
      // Readiness is /readyz on the HTTP/1.1 port: the internal services' h2c port answers only
      // mTLS callers, and the gateway's /readyz says whether it can reach them.
      const ready = container.readinessProbe?.httpGet;
      if (ready?.path !== "/readyz" || ready?.port !== SERVICE_PORTS[name].http) {
        problems.push(`Deployment/${name}: readinessProbe must be httpGet /readyz on port ${SERVICE_PORTS[name].http} (found ${JSON.stringify(container.readinessProbe)})`);
      }
    }
    const service = find("Service", name);
    if (!service) problems.push(`Service/${name} is missing`);
    else {
      const ports = (service.spec.ports as Json[]).map((p) => p.targetPort);
      for (const portName of Object.keys(expected)) {
        if (!ports.includes(portName)) problems.push(`Service/${name}: does not expose port "${portName}"`);
      }
    }
  }

  const headless = find("Service", "gateway-headless");
  if (!headless) problems.push("Service/gateway-headless is missing (Envoy's clusters resolve it)");
  else {
    if (headless.spec.clusterIP !== "None") problems.push("Service/gateway-headless: must be headless (clusterIP: None) so that Envoy sees every replica");
    const ports = (headless.spec.ports as Json[]).map((p) => p.port).sort();
    if (JSON.stringify(ports) !== JSON.stringify([SERVICE_PORTS.gateway.http, SERVICE_PORTS.gateway.grpc].sort())) {
      problems.push(`Service/gateway-headless: ports ${ports.join(", ")}, Envoy uses ${SERVICE_PORTS.gateway.http} and ${SERVICE_PORTS.gateway.grpc}`);
    }
  }

  for (const w of workloads) {
    const id = `${w.kind}/${w.metadata.name}`;
    const pod = w.spec.template.spec as Json;
    const podSecurity = pod.securityContext ?? {};
    if (podSecurity.runAsNonRoot !== true) problems.push(`${id}: pod securityContext.runAsNonRoot must be true`);
    if (podSecurity.seccompProfile?.type !== "RuntimeDefault") problems.push(`${id}: pod seccompProfile must be RuntimeDefault`);
    for (const v of pod.volumes ?? []) {
      if (v.configMap && !configMaps.has(v.configMap.name)) problems.push(`${id}: volume ${v.name} mounts ConfigMap ${v.configMap.name}, which does not exist`);
      for (const source of v.projected?.sources ?? []) {
        if (source.configMap && !configMaps.has(source.configMap.name)) problems.push(`${id}: volume ${v.name} projects ConfigMap ${source.configMap.name}, which does not exist`);
      }
    }
    for (const c of pod.containers as Json[]) {
      const sc = c.securityContext ?? {};
      const cid = `${id} container ${c.name}`;
      if (sc.allowPrivilegeEscalation !== false) problems.push(`${cid}: allowPrivilegeEscalation must be false`);
      if (sc.readOnlyRootFilesystem !== true) problems.push(`${cid}: readOnlyRootFilesystem must be true`);
      if (!(sc.capabilities?.drop ?? []).includes("ALL")) problems.push(`${cid}: capabilities must drop ALL`);
      const open = new Set<unknown>((c.ports ?? []).flatMap((p: Json) => [p.containerPort, p.name]));
      for (const [which, probe] of [["readinessProbe", c.readinessProbe], ["livenessProbe", c.livenessProbe]] as const) {
        const port = probe?.grpc?.port ?? probe?.httpGet?.port ?? probe?.tcpSocket?.port;
        if (port !== undefined && !open.has(port)) problems.push(`${cid}: ${which} probes port ${port}, which the container does not open`);
      }
      for (const env of c.env ?? []) {
        const m = /^SWITCHYARD_([A-Z]+)_URL$/.exec(env.name);
        if (!m) continue;
        const target = m[1]!.toLowerCase() as (typeof SERVICE_NAMES)[number];
        const expected = SERVICE_PORTS[target] ? `http://${target}:${SERVICE_PORTS[target].grpc}` : undefined;
        if (env.value !== expected) problems.push(`${cid}: ${env.name}=${env.value}, the ${target} service listens on ${expected ?? "no such service"}`);
      }
    }
  }

  for (const s of services) {
    if (s.spec.type === "ExternalName") continue;
    const selected = workloads.filter((w) => matches(s.spec.selector ?? {}, w.spec.template.metadata?.labels ?? {}));
    if (selected.length === 0) {
      problems.push(`Service/${s.metadata.name}: selector ${JSON.stringify(s.spec.selector)} matches no pod`);
      continue;
    }
    const named = new Set(selected.flatMap((w) => (w.spec.template.spec.containers as Json[]).flatMap((c) => (c.ports ?? []).flatMap((p: Json) => [p.name, p.containerPort]))));
    for (const p of s.spec.ports as Json[]) {
      if (!named.has(p.targetPort ?? p.port)) problems.push(`Service/${s.metadata.name}: targetPort ${p.targetPort ?? p.port} is not a port of the pods it selects`);
    }
  }
  return problems;
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels[k] === v);
}

function sortKeys(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
}
