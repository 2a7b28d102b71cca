import { exposureProblems, parseConfig, type Config } from "@switchyard/config";
import type { KubeObject } from "./kube.js";
import { NATS_CLIENTS, SERVICE_NAMES, type ServiceName } from "./services.js";

type Json = Record<string, any>;

const WORKLOADS = new Set(["Deployment", "StatefulSet", "DaemonSet"]);
const SPIFFE = "spiffe://switchyard/";

/** Where a file in a pod comes from: a key of a Secret or a ConfigMap. */
export interface FileSource {
  kind: "Secret" | "ConfigMap";
  name: string;
  key: string;
}

/** The workloads of a render, by name. */
function workloads(objects: KubeObject[]): KubeObject[] {
  return objects.filter((o) => WORKLOADS.has(o.kind));
}

/**
 * Every file a container sees under its Secret, ConfigMap and projected volumes: path → source.
 * (What `mountPath` + `items[].path` make of the volumes, as the kubelet lays them out.)
 */
export function containerFiles(workload: KubeObject, container: Json, objects: KubeObject[]): Map<string, FileSource> {
  const files = new Map<string, FileSource>();
  const volumes = new Map<string, Json>((workload.spec.template.spec.volumes ?? []).map((v: Json) => [v.name, v]));
  const keysOf = (kind: "Secret" | "ConfigMap", name: string): string[] => {
    const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
    return o ? Object.keys({ ...(o.data ?? {}), ...(o.stringData ?? {}) }) : [];
  };
  const add = (dir: string, kind: "Secret" | "ConfigMap", name: string, items: Json[] | undefined) => {
    const list = items ?? keysOf(kind, name).map((key) => ({ key, path: key }));
    for (const item of list) files.set(`${dir.replace(/\/$/, "")}/${item.path}`, { kind, name, key: item.key });
  };
  for (const mount of container.volumeMounts ?? []) {
    const v = volumes.get(mount.name);
    if (!v) continue;
    if (v.secret) add(mount.mountPath, "Secret", v.secret.secretName, v.secret.items);
    if (v.configMap) add(mount.mountPath, "ConfigMap", v.configMap.name, v.configMap.items);
    for (const source of v.projected?.sources ?? []) {
      if (source.secret) add(mount.mountPath, "Secret", source.secret.name, source.secret.items);
      if (source.configMap) add(mount.mountPath, "ConfigMap", source.configMap.name, source.configMap.items);
    }
  }
  return files;
}

/** The text of one key of a Secret (base64 `data` or `stringData`) or ConfigMap; undefined when missing. */
export function readKey(objects: KubeObject[], source: FileSource): string | undefined {
  const o = objects.find((x) => x.kind === source.kind && x.metadata.name === source.name);
  if (!o) return undefined;
  if (o.stringData?.[source.key] !== undefined) return String(o.stringData[source.key]);
  const data = o.data?.[source.key];
  if (data === undefined) return undefined;
  return source.kind === "Secret" ? Buffer.from(String(data), "base64").toString("utf8") : String(data);
}

/** One Switchyard service as deployed: its container, the files it sees and the configuration it loads. */
export interface DeployedService {
  name: ServiceName;
  workload: KubeObject;
  container: Json;
  files: Map<string, FileSource>;
  configText: string;
  config: Config;
  env: Record<string, string>;
}

/**
 * Each Switchyard service of a render, with the switchyard.yaml it loads (SWITCHYARD_CONFIG
 * resolved through its volumes) parsed by the services' own validator. Problems when a config
 * cannot be found or is refused.
 */
export function deployedServices(objects: KubeObject[]): { services: DeployedService[]; problems: string[] } {
  const services: DeployedService[] = [];
  const problems: string[] = [];
  for (const name of SERVICE_NAMES) {
    const workload = workloads(objects).find((w) => w.metadata.name === name);
    const container = workload?.spec.template.spec.containers.find((c: Json) => c.name === name);
    if (!workload || !container) {
      problems.push(`${name}: no workload with a container of that name`);
      continue;
    }
    const env = Object.fromEntries((container.env ?? []).filter((e: Json) => e.value !== undefined).map((e: Json) => [e.name, String(e.value)]));
    const files = containerFiles(workload, container, objects);
    const path = env.SWITCHYARD_CONFIG;
    const source = path ? files.get(path) : undefined;
    const configText = source ? readKey(objects, source) : undefined;
    if (!path || !source || configText === undefined) {
      problems.push(`${name}: SWITCHYARD_CONFIG=${path} is not a file of the pod (files: ${[...files.keys()].join(", ")})`);
      continue;
    }
    try {
      services.push({ name, workload, container, files, configText, config: parseConfig(configText, `${name}: ${path}`), env });
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  return { services, problems };
}

/**
 * The gateway would start: the exposure rule of the services' own config loader
 * (`exposureProblems`: beyond loopback with no tenant key needs gateway.allow_unauthenticated),
 * with the listen address the pod's environment sets.
 */
export function checkExposure(services: DeployedService[]): string[] {
  return services.filter((s) => s.name === "gateway").flatMap((s) => exposureProblems(s.config, s.env).map((p) => `gateway: ${p}`));
}

/**
 * Mutual TLS as deployed: when a service's config says mesh.tls.mode required, the files it names
 * are in the pod, from the Secret <name>-mesh-tls (ca.crt, tls.crt, tls.key); when a Certificate
 * issues that Secret, it carries the identity spiffe://switchyard/<name> (URI SAN) and CN <name>,
 * the Service's name as a DNS name, server and client auth, ECDSA P-256, and an issuer that exists.
 * Internal services are probed on their HTTP side port, never with a grpc probe (kubelet has no
 * client certificate). NATS TLS files, when configured, are in the pod too.
 */
export function checkMeshTls(objects: KubeObject[], services: DeployedService[]): string[] {
  const problems: string[] = [];
  const certificates = objects.filter((o) => o.kind === "Certificate");
  const issuers = objects.filter((o) => o.kind === "Issuer" || o.kind === "ClusterIssuer");
  const modes = new Set(services.map((s) => s.config.mesh.tls.mode));
  if (modes.size > 1) problems.push(`services disagree on mesh.tls.mode: ${[...modes].join(", ")}`);
  for (const s of services) {
    const tls = s.config.mesh.tls;
    const expectFile = (path: string, key: string, secret: string, what: string) => {
      const f = s.files.get(path);
      if (!f) problems.push(`${s.name}: ${what} ${path || "(not set)"} is not a file of the pod`);
      else if (f.kind !== "Secret" || f.name !== secret || f.key !== key) problems.push(`${s.name}: ${what} ${path} is ${f.kind}/${f.name}[${f.key}], expected Secret/${secret}[${key}]`);
    };
    if (tls.mode === "required") {
      const secret = `${s.name}-mesh-tls`;
      expectFile(tls.ca_file, "ca.crt", secret, "mesh.tls.ca_file");
      expectFile(tls.cert_file, "tls.crt", secret, "mesh.tls.cert_file");
      expectFile(tls.key_file, "tls.key", secret, "mesh.tls.key_file");
      if (certificates.length > 0) {
        const cert = certificates.find((c) => c.spec.secretName === secret);
        if (!cert) problems.push(`${s.name}: no Certificate issues Secret ${secret}`);
        else problems.push(...checkCertificate(cert, s.name, issuers));
      }
      if (s.name !== "gateway") {
        for (const [which, probe] of [["readinessProbe", s.container.readinessProbe], ["livenessProbe", s.container.livenessProbe]] as const) {
          if (probe?.grpc) problems.push(`${s.name}: ${which} is a grpc probe on port ${probe.grpc.port}, which answers only mTLS callers: probe the HTTP side port`);
        }
        if (s.container.readinessProbe?.httpGet?.path !== "/readyz") problems.push(`${s.name}: readinessProbe must be httpGet /readyz on the HTTP side port`);
      }
    }
    const natsTls = s.config.nats.tls;
    for (const [what, path] of [["nats.tls.ca_file", natsTls.ca_file], ["nats.tls.cert_file", natsTls.cert_file], ["nats.tls.key_file", natsTls.key_file], ["nats.creds_file", s.config.nats.creds_file]] as const) {
      if (path && !s.files.has(path)) problems.push(`${s.name}: ${what} ${path} is not a file of the pod`);
    }
    if (NATS_CLIENTS.includes(s.name) && s.config.nats.password_env && !(s.container.env ?? []).some((e: Json) => e.name === s.config.nats.password_env && e.valueFrom?.secretKeyRef)) {
      problems.push(`${s.name}: nats.password_env names ${s.config.nats.password_env}, which the container does not take from a Secret`);
    }
  }
  return problems;
}

function checkCertificate(cert: KubeObject, name: string, issuers: KubeObject[]): string[] {
  const problems: string[] = [];
  const id = `Certificate/${cert.metadata.name}`;
  const spec = cert.spec as Json;
  if (!(spec.uris ?? []).includes(`${SPIFFE}${name}`)) problems.push(`${id}: uris must include ${SPIFFE}${name} (the identity the services check)`);
  if (spec.commonName !== name) problems.push(`${id}: commonName is ${spec.commonName}, expected ${name}`);
  if (!(spec.dnsNames ?? []).includes(name)) problems.push(`${id}: dnsNames must include ${name} (clients verify http://${name}:<port>)`);
  for (const usage of ["server auth", "client auth"]) if (!(spec.usages ?? []).includes(usage)) problems.push(`${id}: usages must include "${usage}"`);
  if (spec.privateKey?.algorithm !== "ECDSA" || spec.privateKey?.size !== 256) problems.push(`${id}: privateKey must be ECDSA P-256`);
  const ref = spec.issuerRef ?? {};
  const local = (ref.group ?? "cert-manager.io") === "cert-manager.io";
  if (local && !issuers.some((i) => i.kind === (ref.kind ?? "Issuer") && i.metadata.name === ref.name) && (ref.kind ?? "Issuer") === "Issuer") {
    problems.push(`${id}: issuerRef names Issuer/${ref.name}, which the render does not create`);
  }
  return problems;
}

/** Who may open a connection to one port of one workload: peer descriptions, sorted. */
export type IngressTable = Record<string, Record<number, string[]>>;

/**
 * What the NetworkPolicies admit, as a table: workload → container port → peers ("*" for anyone,
 * "pods:<a>,<b>" for the workloads a podSelector matches, or the JSON of any other peer, such as
 * the metrics namespace). A port no policy selects is "*" when the pod is selected by no policy at all.
 */
export function ingressTable(objects: KubeObject[]): IngressTable {
  const policies = objects.filter((o) => o.kind === "NetworkPolicy");
  const table: IngressTable = {};
  const all = workloads(objects);
  for (const w of all) {
    const labels = (w.spec.template.metadata?.labels ?? {}) as Record<string, string>;
    const ports = (w.spec.template.spec.containers as Json[]).flatMap((c) => (c.ports ?? []) as Json[]);
    const selecting = policies.filter((p) => (p.spec.policyTypes ?? ["Ingress"]).includes("Ingress") && selects(p.spec.podSelector ?? {}, labels));
    const row: Record<number, string[]> = {};
    for (const port of ports) {
      if (selecting.length === 0) {
        row[port.containerPort] = ["*"];
        continue;
      }
      const peers = new Set<string>();
      for (const p of selecting) {
        for (const rule of p.spec.ingress ?? []) {
          const matchesPort = !rule.ports || rule.ports.some((rp: Json) => rp.port === undefined || rp.port === port.containerPort || rp.port === port.name);
          if (!matchesPort) continue;
          if (!rule.from || rule.from.length === 0) peers.add("*");
          for (const peer of rule.from ?? []) peers.add(describePeer(peer, all));
        }
      }
      row[port.containerPort] = [...peers].sort();
    }
    table[w.metadata.name] = row;
  }
  return table;
}

function describePeer(peer: Json, all: KubeObject[]): string {
  if (peer.podSelector && !peer.namespaceSelector && !peer.ipBlock) {
    const names = all.filter((w) => selects(peer.podSelector, w.spec.template.metadata?.labels ?? {})).map((w) => w.metadata.name).sort();
    return `pods:${names.join(",")}`;
  }
  return JSON.stringify(peer);
}

/** A LabelSelector (matchLabels, matchExpressions In/NotIn/Exists/DoesNotExist) against labels. */
export function selects(selector: Json, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of (selector.matchExpressions ?? []) as Json[]) {
    const has = e.key in labels;
    if (e.operator === "In" && !(has && e.values.includes(labels[e.key]))) return false;
    if (e.operator === "NotIn" && has && e.values.includes(labels[e.key])) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
}

/**
 * The table a deployment must produce: every internal service (the ledger included) admits only
 * the gateway on its h2c port and `metrics` on its side port; the gateway only Envoy (and
 * `metrics` on 8080); Envoy anyone; NATS only the services that use it; Redis only the cache, and
 * the gateway when its quotas are there (`redis: "cache+gateway"`); Jaeger only the mesh.
 */
export function expectedIngress(metrics: string, options: { nats?: string[]; redis?: boolean | "cache+gateway"; jaeger?: boolean } = {}): IngressTable {
  const table: IngressTable = {
    gateway: { 8080: ["pods:envoy", metrics].sort(), 8081: ["pods:envoy"] },
    envoy: { 10000: ["*"], 9902: [metrics] },
  };
  const ports: Record<string, [number, number]> = { classifier: [9101, 9111], policy: [9102, 9112], cache: [9103, 9113], provider: [9104, 9114], ledger: [9105, 9115] };
  for (const [name, [grpc, http]] of Object.entries(ports)) table[name] = { [grpc]: ["pods:gateway"], [http]: [metrics] };
  if (options.nats) table.nats = { 4222: [`pods:${[...options.nats].sort().join(",")}`], 8222: [metrics] };
  if (options.redis) table.redis = { 6379: options.redis === "cache+gateway" ? ["pods:cache", "pods:gateway"] : ["pods:cache"] };
  if (options.jaeger) {
    const tracers = `pods:${["cache", "classifier", "envoy", "gateway", "ledger", "policy", "provider"].join(",")}`;
    table.jaeger = { 4317: [tracers], 4318: [tracers], 16686: [], 14269: [] };
  }
  return table;
}

/** Whether a namespace-wide default deny of ingress exists. */
export function hasDefaultDeny(objects: KubeObject[]): boolean {
  return objects.some(
    (o) => o.kind === "NetworkPolicy" && Object.keys(o.spec.podSelector ?? {}).length === 0 && (o.spec.policyTypes ?? []).includes("Ingress") && !(o.spec.ingress ?? []).length,
  );
}
