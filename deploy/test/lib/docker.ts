import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { ENVOY_PORTS, INFRA_PORTS, LEDGER_DATA_DIR, ROOT, SERVICE_NAMES, SERVICE_PORTS, serviceCommand } from "./services.js";

type Json = Record<string, any>;

/** The compose file as Docker Compose reads it: `<<` merge keys and aliases resolved. */
export function loadCompose(text: string): Json {
  return parse(text, { merge: true, uniqueKeys: true, maxAliasCount: 200 }) as Json;
}

/**
 * What Docker Compose cannot tell us without a Docker engine: the five services run the image with
 * their own command and name; the gateway finds each service at <name>:<h2c port> and answers to
 * gateway-headless (Envoy's upstream); health checks probe the port the service opens; the config
 * and the Envoy file mounted exist; NATS runs JetStream, Jaeger accepts OTLP; the containers run as
 * non-root with a read-only root filesystem and no capabilities.
 */
export function checkCompose(compose: Json, composeDir: string): string[] {
  const problems: string[] = [];
  const services = (compose.services ?? {}) as Record<string, Json>;
  const expected = [...SERVICE_NAMES, "envoy", "nats", "redis", "jaeger"];
  for (const name of expected) if (!services[name]) problems.push(`services.${name} is missing`);
  for (const name of Object.keys(services)) if (!expected.includes(name)) problems.push(`services.${name} is not part of the stack (expected: ${expected.join(", ")})`);

  for (const name of SERVICE_NAMES) {
    const s = services[name];
    if (!s) continue;
    const env = (s.environment ?? {}) as Record<string, string>;
    if (JSON.stringify(s.command) !== JSON.stringify(serviceCommand(name))) problems.push(`services.${name}.command: ${JSON.stringify(s.command)}, expected ${JSON.stringify(serviceCommand(name))}`);
    if (env.OTEL_SERVICE_NAME !== name) problems.push(`services.${name}: OTEL_SERVICE_NAME is ${env.OTEL_SERVICE_NAME}, expected ${name}`);
    if (env.SWITCHYARD_LISTEN_HOST !== "0.0.0.0") problems.push(`services.${name}: SWITCHYARD_LISTEN_HOST must be 0.0.0.0 in a container`);
    if (env.NATS_URL !== `nats://nats:${INFRA_PORTS.natsClient}`) problems.push(`services.${name}: NATS_URL is ${env.NATS_URL}`);
    if (env.OTEL_EXPORTER_OTLP_ENDPOINT !== `http://jaeger:${INFRA_PORTS.otlpHttp}`) problems.push(`services.${name}: OTEL_EXPORTER_OTLP_ENDPOINT is ${env.OTEL_EXPORTER_OTLP_ENDPOINT}, the services speak OTLP/HTTP (4318)`);
    for (const [key, value] of Object.entries(env)) {
      const m = /^SWITCHYARD_([A-Z]+)_URL$/.exec(key);
      if (!m) continue;
      const target = m[1]!.toLowerCase() as (typeof SERVICE_NAMES)[number];
      const want = SERVICE_PORTS[target] ? `http://${target}:${SERVICE_PORTS[target].grpc}` : undefined;
      if (value !== want) problems.push(`services.${name}: ${key}=${value}, the ${target} service listens on ${want ?? "no such service"}`);
    }
    const probe = JSON.stringify(s.healthcheck?.test ?? "");
    const port = /127\.0\.0\.1:(\d+)\//.exec(probe)?.[1];
    if (Number(port) !== SERVICE_PORTS[name].http) problems.push(`services.${name}.healthcheck probes port ${port}, the service's HTTP port is ${SERVICE_PORTS[name].http}`);
    if (s.read_only !== true) problems.push(`services.${name}: read_only must be true`);
    if (!(s.cap_drop ?? []).includes("ALL")) problems.push(`services.${name}: cap_drop must include ALL`);
    if (!s.user || /^0(:|$)|^root/.test(String(s.user))) problems.push(`services.${name}: must run as a non-root user`);
    for (const v of s.volumes ?? []) {
      const source = String(v).split(":")[0]!;
      if (source.startsWith(".") && !existsSync(join(composeDir, source))) problems.push(`services.${name}: mounts ${source}, which does not exist`);
    }
  }
  const sources = SERVICE_NAMES.map((n) => services[n]?.build).filter(Boolean);
  if (sources.length !== 1) problems.push(`exactly one service should build the image (found ${sources.length})`);
  else {
    const build = sources[0] as Json;
    if (!existsSync(join(composeDir, build.context, build.dockerfile))) problems.push(`build: ${build.context}/${build.dockerfile} does not exist`);
  }
  const aliases = services.gateway?.networks?.default?.aliases ?? [];
  if (!aliases.includes("gateway-headless")) problems.push("services.gateway: needs the network alias gateway-headless (Envoy's upstream host)");

  const envoy = services.envoy ?? {};
  const envoyMount = (envoy.volumes ?? []).map(String).find((v: string) => v.endsWith(":/etc/envoy/envoy.yaml:ro"));
  if (!envoyMount || !existsSync(join(composeDir, envoyMount.split(":")[0]!))) problems.push("services.envoy: must mount deploy/envoy/envoy.yaml at /etc/envoy/envoy.yaml");
  if (!(envoy.ports ?? []).some((p: string) => String(p).endsWith(`:${ENVOY_PORTS.ingress}`))) problems.push(`services.envoy: no published port maps to Envoy's listener ${ENVOY_PORTS.ingress}`);
  const natsCommand: string[] = services.nats?.command ?? [];
  const natsConf = (services.nats?.volumes ?? []).map(String).find((v: string) => v.endsWith(":/etc/nats/nats.conf:ro"))?.split(":")[0];
  const jetstream = natsCommand.includes("--jetstream") || (natsCommand.includes("--config") && natsConf !== undefined && existsSync(join(composeDir, natsConf)) && /^jetstream \{/m.test(readFileSync(join(composeDir, natsConf), "utf8")));
  if (!jetstream) problems.push("services.nats: JetStream must be on (--jetstream, or a mounted nats.conf with a jetstream block): prices live in a KV bucket");
  if (!natsCommand.includes("--config")) problems.push("services.nats: must run with --config /etc/nats/nats.conf (users and permissions)");
  for (const [name, s] of Object.entries(services)) {
    for (const p of (s.ports ?? []) as unknown[]) {
      if (!String(p).startsWith("127.0.0.1:")) problems.push(`services.${name}: port ${String(p)} is published on every interface; publish on 127.0.0.1 only`);
    }
  }
  if (services.jaeger?.environment?.COLLECTOR_OTLP_ENABLED !== "true") problems.push("services.jaeger: COLLECTOR_OTLP_ENABLED must be \"true\"");
  return problems;
}

/** A Dockerfile as stages: name → instructions (continuation lines joined). */
function stages(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current: string[] = [];
  const lines = text.replace(/\\\n/g, " ").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  for (const line of lines) {
    const from = /^FROM\s+\S+(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) out.set(from[1] ?? `stage${out.size}`, (current = [line]));
    else current.push(line);
  }
  return out;
}

/**
 * The Dockerfile's promises: Node 24 LTS on Debian slim (what .ci/run tests on); a build stage that runs `npm ci` and
 * `tsc -b`; a runtime stage with production dependencies only (`npm ci --omit=dev`), running as a
 * numeric non-root user, copying nothing but the built output and those dependencies; the files the
 * services read at run time exist in the repository; the ledger's SQL migrations ship next to its
 * dist/ (it reads ../migrations/ from there); the folder PGlite's volume mounts on belongs to the
 * runtime user; every service port is exposed.
 */
export function checkDockerfile(text: string): string[] {
  const problems: string[] = [];
  if (!/^ARG NODE_IMAGE=node:24-bookworm-slim$/m.test(text)) problems.push("the base image must be node:24-bookworm-slim (ARG NODE_IMAGE): Node 24 LTS, as CI runs");
  const s = stages(text);
  const build = s.get("build")?.join("\n") ?? "";
  const deps = s.get("prod-deps")?.join("\n") ?? "";
  const runtime = [...s.values()].at(-1) ?? [];
  if (!/npm ci\b/.test(build) || !/npx tsc -b/.test(build)) problems.push("the build stage must run `npm ci` and `npx tsc -b`");
  if (!/npm ci\b.*--omit=dev/.test(deps)) problems.push("the prod-deps stage must run `npm ci --omit=dev`");
  const user = runtime.find((l) => /^USER\s/i.test(l))?.split(/\s+/)[1];
  if (!user || !/^[1-9][0-9]*(:[1-9][0-9]*)?$/.test(user)) problems.push(`the runtime stage must set a numeric non-root USER (found ${user ?? "none"}), so that Kubernetes can verify runAsNonRoot`);
  for (const copy of runtime.filter((l) => /^COPY\s/i.test(l))) {
    const from = /--from=(\S+)/.exec(copy)?.[1];
    if (from !== "prod-deps" && from !== "build") problems.push(`the runtime stage copies from ${from ?? "the build context"}: only prod-deps and build output belong in it (${copy})`);
  }
  for (const file of build.match(/libs\/[\w./-]+\.(json|yaml)/g) ?? []) {
    if (!existsSync(join(ROOT, file))) problems.push(`the image needs ${file}, which does not exist`);
  }
  const migrations = /for (\w+) in services\/\*\/migrations; do if \[ -d "\$\1" \]; then cp -r --parents "\$\1" \/dist\/; fi; done/.test(build);
  if (!migrations) problems.push("the build stage must copy services/*/migrations into /dist (the ledger applies services/ledger/migrations/*.sql from beside its dist/)");
  if (!/ls \/dist\/services\/ledger\/migrations\/\*\.sql/.test(build)) problems.push("the build stage must fail when services/ledger/migrations/*.sql is missing from /dist");
  if (!/cp -r --parents services\/gateway\/dashboard \/dist\//.test(build)) problems.push("the build stage must copy services/gateway/dashboard into /dist (the gateway serves /dashboard from beside its dist/)");
  const dataDir = LEDGER_DATA_DIR.slice(0, LEDGER_DATA_DIR.lastIndexOf("/"));
  if (!runtime.some((l) => new RegExp(`^RUN install -d -o ${user?.split(":")[0] ?? "1000"} -g \\d+ .*${dataDir.replace(/\//g, "\\/")}$`).test(l))) {
    problems.push(`the runtime stage must create ${dataDir} owned by the runtime user (PGlite's volume mounts there; a fresh Docker volume takes its owner)`);
  }
  const exposed = new Set((runtime.find((l) => /^EXPOSE\s/i.test(l)) ?? "").split(/\s+/).slice(1).map(Number));
  for (const name of SERVICE_NAMES) {
    for (const port of [SERVICE_PORTS[name].grpc, SERVICE_PORTS[name].http]) if (!exposed.has(port)) problems.push(`EXPOSE lacks ${port} (${name})`);
  }
  const cmd = /^CMD\s+(\[.*\])$/m.exec(text)?.[1];
  const main = cmd ? (JSON.parse(cmd) as string[])[1] : undefined;
  if (!main || !existsSync(join(ROOT, main.replace("/dist/", "/src/").replace(/\.js$/, ".ts")))) problems.push(`CMD runs ${main}, which no services/<name>/src/main.ts builds`);
  return problems;
}
