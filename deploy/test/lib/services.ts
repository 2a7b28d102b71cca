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
