import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkCompose, checkDockerfile, loadCompose } from "./lib/docker.js";
import { exposureProblems, parseConfig } from "@switchyard/config";
import { checkDeploymentConfig, LEDGER_DATA_DIR, NATS_CLIENTS, readRepoFile, ROOT, SERVICE_PORTS } from "./lib/services.js";

const COMPOSE_DIR = join(ROOT, "deploy", "docker");
const composeText = readRepoFile("deploy/docker/compose.yaml");
const dockerfile = readRepoFile("deploy/docker/Dockerfile");

describe("deploy/docker (no Docker engine here: these are the checks that need none)", () => {
  it("compose.yaml runs the six services, Envoy, NATS, Redis and Jaeger with the services' names and ports", () => {
    expect(checkCompose(loadCompose(composeText), COMPOSE_DIR)).toEqual([]);
  });

  it("the compose stack's switchyard.yaml is accepted by the services and in step with the defaults", () => {
    expect(checkDeploymentConfig(readRepoFile("deploy/docker/switchyard.yaml"), "deploy/docker/switchyard.yaml")).toEqual([]);
  });

  it("the gateway would start in a container (open on purpose, only the compose names as Host), and its NATS user exists", () => {
    const config = parseConfig(readRepoFile("deploy/docker/switchyard.yaml"));
    expect(exposureProblems(config, { SWITCHYARD_LISTEN_HOST: "0.0.0.0" })).toEqual([]);
    expect(config.gateway.allowed_hosts).toEqual(["gateway", "gateway-headless", "envoy"]);
    expect(config.nats).toMatchObject({ user: "switchyard", password_env: "NATS_PASSWORD" });
    const compose = loadCompose(composeText);
    for (const name of NATS_CLIENTS) expect(compose.services[name].environment.NATS_PASSWORD, name).toBe("${SWITCHYARD_NATS_PASSWORD:-compose-local-only}");
    expect(compose.services.nats.environment.SWITCHYARD_PASSWORD).toBe("${SWITCHYARD_NATS_PASSWORD:-compose-local-only}");
    expect(readRepoFile("deploy/docker/nats.conf")).toMatch(/user: "switchyard"\n\s+password: \$SWITCHYARD_PASSWORD/);
  });

  it("the ledger keeps its books in PGlite on a named volume holding the config's data_dir, and the gateway waits for it and finds it", () => {
    const compose = loadCompose(composeText);
    const config = parseConfig(readRepoFile("deploy/docker/switchyard.yaml"));
    expect(config.ledger.data_dir).toBe(LEDGER_DATA_DIR);
    const ledger = compose.services.ledger;
    const mount = (ledger.volumes as string[]).find((v) => !v.startsWith("."))!;
    const [volume, path] = mount.split(":") as [string, string];
    expect(Object.keys(compose.volumes)).toContain(volume);
    expect(LEDGER_DATA_DIR.startsWith(`${path}/`)).toBe(true);
    expect(ledger.volumes).toContain("./switchyard.yaml:/etc/switchyard/switchyard.yaml:ro");
    expect(ledger.environment.DATABASE_URL).toBeUndefined();
    expect(ledger.deploy?.replicas ?? 1, "PGlite has one writer").toBe(1);
    expect(compose.services.gateway.environment.SWITCHYARD_LEDGER_URL).toBe(`http://ledger:${SERVICE_PORTS.ledger.grpc}`);
    expect(compose.services.gateway.depends_on.ledger).toEqual({ condition: "service_healthy" });
  });

  it("the Dockerfile builds with npm ci + tsc -b and runs production dependencies as non-root", () => {
    expect(checkDockerfile(dockerfile)).toEqual([]);
  });

  it(".dockerignore keeps local builds and secrets out of the build context, and the sources in", () => {
    const ignored = readRepoFile(".dockerignore").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
    expect(ignored).toEqual(expect.arrayContaining(["**/node_modules", "**/dist", ".git", "**/.env"]));
    for (const needed of ["package.json", "package-lock.json", "libs", "services", "tsconfig.json", "tsconfig.base.json"]) expect(ignored).not.toContain(needed);
  });
});

describe("the Docker checks catch broken copies", () => {
  it("a service URL on the wrong port", () => {
    const compose = loadCompose(composeText.replace("http://cache:9103", "http://cache:9113"));
    expect(checkCompose(compose, COMPOSE_DIR)).toContain("services.gateway: SWITCHYARD_CACHE_URL=http://cache:9113, the cache service listens on http://cache:9103");
  });

  it("a misspelled service name", () => {
    const compose = loadCompose(composeText.replace("\n  classifier:\n", "\n  clasifier:\n"));
    const problems = checkCompose(compose, COMPOSE_DIR);
    expect(problems).toContain("services.classifier is missing");
    expect(problems).toContain("services.clasifier is not part of the stack (expected: gateway, classifier, policy, cache, provider, ledger, envoy, nats, redis, jaeger)");
  });

  it("a health check on the wrong port", () => {
    const compose = loadCompose(composeText.replace("127.0.0.1:9112/healthz", "127.0.0.1:9102/healthz"));
    expect(checkCompose(compose, COMPOSE_DIR)).toContain("services.policy.healthcheck probes port 9102, the service's HTTP port is 9112");
  });

  it("a port published on every interface", () => {
    const compose = loadCompose(composeText.replace('"127.0.0.1:8080:10000"', '"8080:10000"'));
    expect(checkCompose(compose, COMPOSE_DIR)).toContain("services.envoy: port 8080:10000 is published on every interface; publish on 127.0.0.1 only");
  });

  it("a Dockerfile on another Node than the one CI tests", () => {
    expect(checkDockerfile(dockerfile.replace("node:24-bookworm-slim", "node:20-bookworm-slim"))).toContain(
      "the base image must be node:24-bookworm-slim (ARG NODE_IMAGE): Node 24 LTS, as CI runs",
    );
  });

  it("a Dockerfile that drops the ledger's migrations, its data folder or its ports", () => {
    const broken = dockerfile
      .replace(/ && for m in services\/\*\/migrations; do .*; done \\\n/, "")
      .replace(/RUN install -d .*\n/, "")
      .replace(" 9105 ", " ");
    const problems = checkDockerfile(broken);
    expect(problems).toContain("the build stage must copy services/*/migrations into /dist (the ledger applies services/ledger/migrations/*.sql from beside its dist/)");
    expect(problems).toContain("the runtime stage must create /var/lib/switchyard owned by the runtime user (PGlite's volume mounts there; a fresh Docker volume takes its owner)");
    expect(problems).toContain("EXPOSE lacks 9105 (ledger)");
  });

  it("a Dockerfile that leaves out the dashboard's page", () => {
    expect(checkDockerfile(dockerfile.replace(" && cp -r --parents services/gateway/dashboard /dist/ \\\n", ""))).toContain(
      "the build stage must copy services/gateway/dashboard into /dist (the gateway serves /dashboard from beside its dist/)",
    );
  });

  it("a Dockerfile that runs as root or ships dev dependencies", () => {
    const broken = dockerfile.replace("USER 1000:1000", "USER root").replace("npm ci --omit=dev", "npm ci");
    const problems = checkDockerfile(broken);
    expect(problems).toContain("the runtime stage must set a numeric non-root USER (found root), so that Kubernetes can verify runAsNonRoot");
    expect(problems).toContain("the prod-deps stage must run `npm ci --omit=dev`");
  });
});
