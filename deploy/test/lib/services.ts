import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseConfig, SERVICE_NAMES, type ServiceName } from "@switchyard/config";

/** The repository root (deploy/test/lib is three levels below it). */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/** Reads a file relative to the repository root. */
export function readRepoFile(path: string): string {
  return readFileSync(join(ROOT, path), "utf8");
}

/** The ports one service listens on: `grpc` is HTTP/2 cleartext, `http` the HTTP/1.1 side port. */
export interface ServicePorts {
  grpc: number;
  http: number;
}

const defaults = parseConfig(readRepoFile("libs/config/switchyard.default.yaml"), "libs/config/switchyard.default.yaml");

/**
 * Every service's ports as the services themselves default to them (libs/config/switchyard.default.yaml):
 * the deployment files must agree with these.
 */
export const SERVICE_PORTS: Record<ServiceName, ServicePorts> = {
  gateway: { grpc: defaults.ports.gateway_grpc, http: defaults.ports.gateway_http },
  classifier: { grpc: defaults.ports.classifier, http: defaults.ports.classifier_http },
  policy: { grpc: defaults.ports.policy, http: defaults.ports.policy_http },
  cache: { grpc: defaults.ports.cache, http: defaults.ports.cache_http },
  provider: { grpc: defaults.ports.provider, http: defaults.ports.provider_http },
  ledger: { grpc: defaults.ports.ledger, http: defaults.ports.ledger_http },
};

export { SERVICE_NAMES, type ServiceName };

/** The command that starts a service in the image (built by `tsc -b` from services/<name>/src/main.ts). */
export function serviceCommand(name: ServiceName): string[] {
  return ["node", `services/${name}/dist/main.js`];
}

/** Ports of the infrastructure the deployments run next to the services. */
export const INFRA_PORTS = {
  natsClient: 4222,
  natsMonitor: 8222,
  redis: 6379,
  otlpGrpc: 4317,
  otlpHttp: 4318,
  jaegerUi: 16686,
} as const;

/** Envoy's listeners and admin port, as set in deploy/envoy/envoy.yaml (checked there). */
export const ENVOY_PORTS = { ingress: 10000, metrics: 9902, admin: 9901 } as const;

/**
 * Keys a deployment's switchyard.yaml may set differently from the embedded defaults: where things
 * run (listen address, URLs, the cache's and the quotas' Redis, the ledger's PGlite folder on its
 * volume), who may call (tenants and their keys, the gateway's edge), mesh TLS and NATS credentials.
 */
const DEPLOYMENT_KEYS = [
  ["listen_host"], ["endpoints"], ["nats", "url"], ["nats", "tls"], ["nats", "user"], ["nats", "password_env"], ["nats", "creds_file"],
  ["cache", "backend"], ["cache", "redis_url"], ["quotas", "backend"], ["quotas", "redis_url"], ["ledger", "data_dir"], ["tenants"], ["gateway"], ["mesh"],
];

/**
 * Checks a deployment's switchyard.yaml with the services' own validator, then that it says what
 * the embedded defaults say apart from where things run (listen address, URLs, cache backend):
 * a price or tier changed in libs/config/switchyard.default.yaml must change in the deployments too.
 */
export function checkDeploymentConfig(text: string, source: string): string[] {
  let config: Record<string, any>;
  try {
    config = parseConfig(text, source) as Record<string, any>;
  } catch (err) {
    return [(err as Error).message];
  }
  const strip = (c: Record<string, any>) => {
    const copy = structuredClone(c);
    for (const path of DEPLOYMENT_KEYS) {
      const parent = path.slice(0, -1).reduce((o, k) => o?.[k], copy);
      if (parent) delete parent[path.at(-1)!];
    }
    return copy;
  };
  const a = strip(config), b = strip(defaults as Record<string, any>);
  const diffs: string[] = [];
  const walk = (x: unknown, y: unknown, at: string) => {
    if (JSON.stringify(x) === JSON.stringify(y)) return;
    if (x && y && typeof x === "object" && typeof y === "object" && !Array.isArray(x) && !Array.isArray(y)) {
      for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) walk((x as any)[k], (y as any)[k], at ? `${at}.${k}` : k);
    } else diffs.push(`${source}: ${at} differs from libs/config/switchyard.default.yaml (${JSON.stringify(x)} vs ${JSON.stringify(y)})`);
  };
  walk(a, b, "");
  return diffs;
}

/**
 * The services that connect to NATS (their main.ts starts the bus): the gateway and the policy
 * watch prices and hear health, the provider publishes health, the gateway publishes usage
 * records and the ledger consumes them. NATS admits only these.
 */
export const NATS_CLIENTS: readonly ServiceName[] = ["gateway", "policy", "provider", "ledger"];

/** Where the ledger keeps PGlite's folder in a pod or container: a volume mounted at its parent (the root filesystem is read-only). */
export const LEDGER_DATA_DIR = "/var/lib/switchyard/ledger";
