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
 * Which file `switchyard start` reads: `SWITCHYARD_CONFIG`, else `switchyard.yaml` in the working
 * folder, else the embedded defaults. @throws ConfigError when SWITCHYARD_CONFIG names no file.
 */
export function configSourceFor(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string {
  if (env.SWITCHYARD_CONFIG) {
    const source = resolve(cwd, env.SWITCHYARD_CONFIG);
    if (!existsSync(source)) throw new ConfigError(source, ["SWITCHYARD_CONFIG names a file that does not exist"]);
    return source;
  }
  if (existsSync(join(cwd, "switchyard.yaml"))) return join(cwd, "switchyard.yaml");
  return defaultConfigPath();
}

/**
 * Loads and validates the configuration: `SWITCHYARD_CONFIG`, else `switchyard.yaml` in the working
 * folder, else the embedded defaults; merged onto the embedded defaults; then environment overrides
 * (ports, endpoints, listen host, NATS_URL); then the exposure rule (`exposureProblems`).
 * @throws ConfigError naming every bad key.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): LoadedConfig {
  const source = configSourceFor(env, cwd);
  return { config: loadConfigFile(source, env), source };
}

/**
 * Reads one file as `switchyard start` would: merged onto the embedded defaults, validated,
 * environment overrides applied, and refused when it would expose an unauthenticated gateway.
 * What `switchyard config check` runs. @throws ConfigError naming every bad key.
 */
export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(path, [code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a folder, not a file" : `cannot read the file (${code ?? "error"})`]);
  }
  const config = applyEnvOverrides(parseConfig(text, path), env);
  const exposure = exposureProblems(config, env);
  if (exposure.length > 0) throw new ConfigError(path, exposure);
  return config;
}

/**
 * Parses YAML text, merges it onto the embedded defaults (`mergeConfig`) and validates the result.
 * A file with only `providers:` is a whole configuration. @throws ConfigError
 */
export function parseConfig(text: string, source = "switchyard.yaml"): Config {
  const overrides = readYaml(text, source);
  const result = configSchema.safeParse(mergeConfig(embeddedDefaults(), overrides));
  if (!result.success) throw new ConfigError(source, formatIssues(result.error.issues));
  return result.data;
}

function readYaml(text: string, source: string): Record<string, unknown> {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(source, doc.errors.map((e) => `YAML syntax: ${e.message.split("\n")[0]}`));
  }
  const value: unknown = doc.toJS() ?? {};
  if (!isPlainObject(value)) throw new ConfigError(source, ["(top level): expected keys and values (a YAML mapping)"]);
  return value;
}

let defaultsCache: Record<string, unknown> | undefined;

/** The embedded defaults as written (before validation), read once. */
function embeddedDefaults(): Record<string, unknown> {
  defaultsCache ??= readYaml(readFileSync(defaultConfigPath(), "utf8"), defaultConfigPath());
  return structuredClone(defaultsCache);
}

/**
 * A configuration file over the defaults: objects merge key by key, arrays and scalars replace,
 * and a key left empty (`null`) keeps the default. Keys are copied as own properties, so a
 * `__proto__` key is reported as unknown rather than changing any prototype.
 */
export function mergeConfig(base: unknown, override: unknown): unknown {
  if (override === null || override === undefined) return base;
  if (!isPlainObject(base) || !isPlainObject(override)) return override;
  const out: Record<string, unknown> = {};
  for (const key of new Set([...Object.keys(base), ...Object.keys(override)])) {
    const value = Object.hasOwn(override, key) ? mergeConfig(base[key], override[key]) : base[key];
    Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Whether a listen address reaches only this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Whether the gateway authenticates its callers: some tenant has an API key, or keys are required. */
export function hasTenantKeys(config: Config): boolean {
  return config.gateway.require_api_key || config.tenants.some((t) => t.api_key_sha256.length > 0);
}

/**
 * The exposure rule: a gateway that listens beyond loopback with no tenant API keys would let
 * anyone who reaches it spend on the operator's providers, so it needs keys or an explicit
 * `gateway.allow_unauthenticated: true`. Checked after environment overrides, since
 * SWITCHYARD_LISTEN_HOST can move the listener.
 */
export function exposureProblems(config: Config, env: NodeJS.ProcessEnv = {}): string[] {
  if (isLoopbackHost(config.listen_host) || hasTenantKeys(config) || config.gateway.allow_unauthenticated) return [];
  const from = env.SWITCHYARD_LISTEN_HOST ? ` (from SWITCHYARD_LISTEN_HOST)` : "";
  return [
    `listen_host: "${config.listen_host}"${from} is not loopback and no tenant has an API key (tenants[].api_key_sha256): ` +
      "anyone who reaches the gateway could run completions on your providers. Add API keys, listen on 127.0.0.1, " +
      "or set gateway.allow_unauthenticated: true to run open on purpose",
  ];
}

const REDACTED = "[redacted]";
/** Names whose value is a secret when written inline (not when it names an environment variable). */
const SECRET_NAME = /(^|_)(api_?key|key|secret|token|password|passwd|credentials?)$/i;
const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;

/**
 * A copy of a configuration safe to print: tenants' key hashes, credentials inside URLs
 * (`user:pass@`) and any value under a secret-sounding name (`*key`, `*secret`, `*token`,
 * `*password`) that is not the name of an environment variable are replaced with "[redacted]".
 */
export function redactConfig(config: Config): Record<string, unknown> {
  const walk = (value: unknown, name: string): unknown => {
    if (Array.isArray(value)) return value.map((v) => walk(v, name));
    if (isPlainObject(value)) {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = walk(v, k);
      return out;
    }
    if (typeof value !== "string") return value;
    if (name === "api_key_sha256") return REDACTED;
    if (SECRET_NAME.test(name) && !ENV_NAME.test(value)) return REDACTED;
    return redactUrlCredentials(value);
  };
  return walk(config, "") as Record<string, unknown>;
}

/** `scheme://user:pass@host/...` to `scheme://[redacted]@host/...`; anything else unchanged. */
function redactUrlCredentials(value: string): string {
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/i, `$1${REDACTED}@`);
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
  ledger: "SWITCHYARD_LEDGER_PORT",
  classifier_http: "SWITCHYARD_CLASSIFIER_HTTP_PORT",
  policy_http: "SWITCHYARD_POLICY_HTTP_PORT",
  cache_http: "SWITCHYARD_CACHE_HTTP_PORT",
  provider_http: "SWITCHYARD_PROVIDER_HTTP_PORT",
  ledger_http: "SWITCHYARD_LEDGER_HTTP_PORT",
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
  for (const svc of ["classifier", "policy", "cache", "provider", "ledger"] as const) {
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
