import type { FileRegistry } from "@bufbuild/protobuf";
import { parse } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { admin, gateway } from "@switchyard/proto";
import { buildEnvoyRegistry, checkGrpcRoutes, checkTopology, decodeStrict, typeUrlsIn, type Upstream } from "./lib/envoy.js";
import { ENVOY_PORTS, INFRA_PORTS, readRepoFile, SERVICE_PORTS } from "./lib/services.js";

const ENVOY_YAML = "deploy/envoy/envoy.yaml";
const BOOTSTRAP = "envoy.config.bootstrap.v3.Bootstrap";

/** Where Envoy may send traffic, from the services' own default ports. */
const UPSTREAMS: Upstream[] = [
  { address: `gateway-headless:${SERVICE_PORTS.gateway.http}`, protocol: "http1", healthCheck: { http: "/readyz" }, what: "the gateway's HTTP/1.1 port" },
  { address: `gateway-headless:${SERVICE_PORTS.gateway.grpc}`, protocol: "http2", healthCheck: { grpc: true }, what: "the gateway's h2c port" },
  { address: `jaeger:${INFRA_PORTS.otlpGrpc}`, protocol: "http2", what: "the OTLP/gRPC collector" },
  { address: `127.0.0.1:${ENVOY_PORTS.admin}`, protocol: "http1", what: "Envoy's admin API" },
];

/** The gRPC services the gateway serves on its public h2c port: clients reach each one through Envoy. */
const PUBLIC_GRPC = [gateway.GatewayService, admin.AdminService];

/** YAML as Envoy reads it (aliases resolved), as plain JSON. */
function load(text: string): Record<string, any> {
  return parse(text, { maxAliasCount: 100 }) as Record<string, any>;
}

/** Everything one would check before shipping an envoy.yaml: strict decoding, then the topology. */
function checkEnvoy(registry: FileRegistry, text: string): string[] {
  const json = load(text);
  const { problems } = decodeStrict(registry, BOOTSTRAP, json);
  return [...problems, ...checkTopology(json, UPSTREAMS), ...checkGrpcRoutes(json, PUBLIC_GRPC, `gateway-headless:${SERVICE_PORTS.gateway.grpc}`)];
}

/** A copy of the real config with one edit, for the tests that prove the checks catch typos. */
function broken(edit: (json: Record<string, any>) => void): string {
  const json = load(readRepoFile(ENVOY_YAML));
  edit(json);
  return JSON.stringify(json);
}

const tlsSocket = load(readRepoFile("deploy/envoy/tls.yaml"));

let registry: FileRegistry;
beforeAll(() => {
  const types = new Set([BOOTSTRAP, ...typeUrlsIn(load(readRepoFile(ENVOY_YAML))), ...typeUrlsIn(tlsSocket)]);
  registry = buildEnvoyRegistry(types);
});

describe("deploy/envoy/envoy.yaml", () => {
  it("decodes strictly into envoy.config.bootstrap.v3.Bootstrap and agrees with the services' ports", () => {
    expect(checkEnvoy(registry, readRepoFile(ENVOY_YAML))).toEqual([]);
  });

  it("listens where the deployments expect it", () => {
    const json = load(readRepoFile(ENVOY_YAML));
    expect(json.admin.address.socket_address).toEqual({ address: "127.0.0.1", port_value: ENVOY_PORTS.admin });
    const ports = Object.fromEntries(json.static_resources.listeners.map((l: any) => [l.name, l.address.socket_address.port_value]));
    expect(ports).toEqual({ ingress: ENVOY_PORTS.ingress, admin: ENVOY_PORTS.metrics });
  });

  it("routes every method of GatewayService and AdminService (switchyard usage, switchyard keys) to the gateway's gRPC port", () => {
    const json = load(readRepoFile(ENVOY_YAML));
    expect(PUBLIC_GRPC.flatMap((s) => s.methods).length).toBeGreaterThanOrEqual(7);
    expect(checkGrpcRoutes(json, PUBLIC_GRPC, `gateway-headless:${SERVICE_PORTS.gateway.grpc}`)).toEqual([]);
    const admin = routes(json).find((r: any) => r.match.prefix === "/switchyard.gateway.v1.AdminService/");
    expect(admin.route).toMatchObject({ cluster: "gateway-grpc", timeout: "30s" });
  });

  it("is the same file as the Helm chart's copy", () => {
    expect(readRepoFile("deploy/helm/switchyard/files/envoy.yaml")).toBe(readRepoFile(ENVOY_YAML));
  });

  it("takes the optional TLS transport socket, alone and inside the ingress listener", () => {
    expect(decodeStrict(registry, "envoy.config.core.v3.TransportSocket", tlsSocket).problems).toEqual([]);
    const json = load(readRepoFile(ENVOY_YAML));
    json.static_resources.listeners[0].filter_chains[0].transport_socket = tlsSocket;
    expect(decodeStrict(registry, BOOTSTRAP, json).problems).toEqual([]);
  });
});

describe("the Envoy checks catch broken copies", () => {
  const cases: [string, (j: Record<string, any>) => void, RegExp][] = [
    ["a misspelled key", (j) => { j.static_resources.clusters[0].conect_timeout = j.static_resources.clusters[0].connect_timeout; }, /conect_timeout/],
    ["a misspelled key inside a typed_config", (j) => { j.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.stat_prefx = "x"; }, /stat_prefx/],
    ["a misspelled enum value", (j) => { j.static_resources.clusters[0].lb_policy = "LEAST_REQUESTS"; }, /LEAST_REQUESTS/],
    ["an unknown @type", (j) => { j.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters.at(-1).typed_config["@type"] = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Routr"; }, /Routr/],
    ["a route to a cluster that does not exist", (j) => { routes(j)[0].route.cluster = "gateway-grcp"; }, /cluster "gateway-grcp", which does not exist/],
    ["a cluster on a port no service listens on", (j) => { endpoint(j, "gateway-grpc").port_value = 8082; }, /gateway-headless:8082, which no service listens on/],
    ["HTTP/1.1 to the gateway's HTTP/2 port", (j) => { endpoint(j, "gateway-http").port_value = SERVICE_PORTS.gateway.grpc; }, /speaks http1 to gateway-headless:8081/],
    ["a streaming route with a timeout", (j) => { routes(j).find((r: any) => r.name === "openai-chat-completions").route.timeout = "60s"; }, /streaming route needs timeout: 0s/],
    ["a POST route that retries on reset", (j) => { routes(j).find((r: any) => r.name === "openai-chat-completions").route.retry_policy = { retry_on: "connect-failure,reset" }; }, /retries on reset/],
    ["a missing required field (protoc-gen-validate)", (j) => { delete filters(j).find((f: any) => f.name === "envoy.filters.http.health_check").typed_config.pass_through_mode; }, /pass_through_mode: is required/],
    ["an out-of-range value (protoc-gen-validate)", (j) => { j.admin.address.socket_address.port_value = 99010; }, /port_value: 99010 must be at most 65535/],
    ["the admin API's route removed", (j) => { const r = routes(j); r.splice(r.findIndex((x: any) => x.name === "grpc-admin-service"), 1); }, /POST \/switchyard\.gateway\.v1\.AdminService\/Usage: no route sends it to the gateway \(Envoy answers 404\)/],
    ["the admin API routed to the gateway's HTTP/1.1 port", (j) => { routes(j).find((r: any) => r.name === "grpc-admin-service").route.cluster = "gateway-http"; }, /AdminService\/CreateKey: route grpc-admin-service sends it to gateway-headless:8080, not the gateway's gRPC port gateway-headless:8081/],
    ["a health check that no longer probes /readyz", (j) => { j.static_resources.clusters[0].health_checks[0].http_health_check.path = "/ready"; }, /must health-check the gateway's HTTP\/1.1 port with HTTP GET \/readyz/],
  ];
  it.each(cases)("%s", (_, edit, expected) => {
    const problems = checkEnvoy(registry, broken(edit));
    expect(problems.join("\n")).toMatch(expected);
  });
});

function hcm(j: Record<string, any>): any {
  return j.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
}
function routes(j: Record<string, any>): any[] {
  return hcm(j).route_config.virtual_hosts[0].routes;
}
function filters(j: Record<string, any>): any[] {
  return hcm(j).http_filters;
}
function endpoint(j: Record<string, any>, cluster: string): any {
  return j.static_resources.clusters.find((c: any) => c.name === cluster).load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
}
