import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseDocument } from "yaml";
import type { z } from "zod";
import { configSchema, type Config, type ProviderConfig, type ServiceName } from "./schema.js";

/** A configuration that failed to load; `problems` name each bad key and why. */
export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid configuration in ${source}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/** The configuration shipped with Switchyard: simulator models, three tiers, one tenant, no keys needed. */
export function defaultConfigPath(): string {
  // src/load.ts and dist/load.js are both one level below the package folder.
  return join(dirname(fileURLToPath(import.meta.url)), "..", "switchyard.default.yaml");
}

export interface LoadedConfig {
  config: Config;
  /** The file the configuration came from. */
  source: string;
}

/**
 * Loads and validates the configuration: `SWITCHYARD_CONFIG`, else `switchyard.yaml` in the working
 * folder, else the embedded defaults; then applies environment overrides (ports, endpoints, NATS_URL).
 * @throws ConfigError naming every bad key.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): LoadedConfig {
  let source: string;
  if (env.SWITCHYARD_CONFIG) {
    source = resolve(cwd, env.SWITCHYARD_CONFIG);
    if (!existsSync(source)) throw new ConfigError(source, ["SWITCHYARD_CONFIG names a file that does not exist"]);
  } else if (existsSync(join(cwd, "switchyard.yaml"))) {
    source = join(cwd, "switchyard.yaml");
  } else {
    source = defaultConfigPath();
  }
  return { config: applyEnvOverrides(parseConfig(readFileSync(source, "utf8"), source), env), source };
}

/** Parses and validates YAML text. @throws ConfigError */
export function parseConfig(text: string, source = "switchyard.yaml"): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(source, doc.errors.map((e) => `YAML syntax: ${e.message.split("\n")[0]}`));
  }
  const result = configSchema.safeParse(doc.toJS() ?? {});
  if (!result.success) throw new ConfigError(source, formatIssues(result.error.issues));
  return result.data;
}

function formatIssues(issues: z.core.$ZodIssue[]): string[] {
  const out: string[] = [];
  for (const issue of issues) {
    const at = formatPath(issue.path);
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) out.push(`${at ? `${at}.` : ""}${key}: unknown key`);
    } else {
      out.push(`${at || "(top level)"}: ${issue.message}`);
    }
  }
  return out;
}

function formatPath(path: PropertyKey[]): string {
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : `${i > 0 ? "." : ""}${String(p)}`)).join("");
}

const PORT_ENV: Record<keyof Config["ports"], string> = {
  gateway_http: "SWITCHYARD_GATEWAY_HTTP_PORT",
  gateway_grpc: "SWITCHYARD_GATEWAY_GRPC_PORT",
  classifier: "SWITCHYARD_CLASSIFIER_PORT",
  policy: "SWITCHYARD_POLICY_PORT",
  cache: "SWITCHYARD_CACHE_PORT",
  provider: "SWITCHYARD_PROVIDER_PORT",
  classifier_http: "SWITCHYARD_CLASSIFIER_HTTP_PORT",
  policy_http: "SWITCHYARD_POLICY_HTTP_PORT",
  cache_http: "SWITCHYARD_CACHE_HTTP_PORT",
  provider_http: "SWITCHYARD_PROVIDER_HTTP_PORT",
};

/** Environment variables override the file: ports, service endpoints, listen host and NATS_URL. */
export function applyEnvOverrides(config: Config, env: NodeJS.ProcessEnv): Config {
  const problems: string[] = [];
  const ports = { ...config.ports };
  for (const [key, variable] of Object.entries(PORT_ENV) as [keyof Config["ports"], string][]) {
    const raw = env[variable];
    if (raw === undefined || raw === "") continue;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0 || n > 65535) problems.push(`${variable}: "${raw}" is not a port number`);
    else ports[key] = n;
  }
  const endpoints = { ...config.endpoints };
  for (const svc of ["classifier", "policy", "cache", "provider"] as const) {
    const raw = env[`SWITCHYARD_${svc.toUpperCase()}_URL`];
    if (raw) endpoints[svc] = raw;
  }
  if (problems.length > 0) throw new ConfigError("environment", problems);
  return {
    ...config,
    listen_host: env.SWITCHYARD_LISTEN_HOST || config.listen_host,
    ports,
    endpoints,
    nats: {
      ...config.nats,
      url: env.NATS_URL || config.nats.url,
      enabled: env.SWITCHYARD_NATS_ENABLED ? env.SWITCHYARD_NATS_ENABLED !== "false" : config.nats.enabled,
    },
  };
}

/** Base URL of an internal service as seen by its clients. */
export function endpointFor(config: Config, service: Exclude<ServiceName, "gateway">): string {
  const explicit = config.endpoints[service];
  if (explicit) return explicit;
  const host = config.listen_host === "0.0.0.0" || config.listen_host === "::" ? "127.0.0.1" : config.listen_host;
  return `http://${host.includes(":") ? `[${host}]` : host}:${config.ports[service]}`;
}

/** A provider as it runs: whether it is on, and why not. */
export interface ProviderActivation {
  provider: ProviderConfig;
  active: boolean;
  reason: string;
}

/**
 * Decides which providers are on. Real providers with `enabled: auto` are on when their key
 * variable is set (or they need none); the simulator with `enabled: auto` is on only when no real
 * provider is, so a machine with keys uses real models and one without still answers.
 */
export function activateProviders(config: Config, env: NodeJS.ProcessEnv = process.env): ProviderActivation[] {
  const real = config.providers.map((p): ProviderActivation => {
    if (p.kind === "simulator") return { provider: p, active: false, reason: "pending" };
    if (p.enabled === false) return { provider: p, active: false, reason: "disabled in config" };
    const hasKey = !p.api_key_env || Boolean(env[p.api_key_env]);
    if (p.enabled === true) {
      return hasKey
        ? { provider: p, active: true, reason: "enabled in config" }
        : { provider: p, active: false, reason: `enabled but ${p.api_key_env} is not set` };
    }
    return hasKey
      ? { provider: p, active: true, reason: p.api_key_env ? `${p.api_key_env} is set` : "no key needed" }
      : { provider: p, active: false, reason: `${p.api_key_env} is not set` };
  });
  const anyReal = real.some((a) => a.active);
  return real.map((a) => {
    if (a.provider.kind !== "simulator") return a;
    if (a.provider.enabled === true) return { ...a, active: true, reason: "enabled in config" };
    if (a.provider.enabled === false) return { ...a, active: false, reason: "disabled in config" };
    return anyReal
      ? { ...a, active: false, reason: "a real provider has a key" }
      : { ...a, active: true, reason: "no provider key is set" };
  });
}

/** USD per million tokens (config) to integer micro-dollars per million tokens (wire). */
export function usdPerMtokToMicro(usd: number): bigint {
  return BigInt(Math.round(usd * 1_000_000));
}
