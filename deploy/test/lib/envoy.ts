import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createFileRegistry,
  fromBinary,
  fromJson,
  getOption,
  hasOption,
  type DescExtension,
  type DescField,
  type DescMessage,
  type FileRegistry,
  type JsonValue,
  type Message,
} from "@bufbuild/protobuf";
import { reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { anyUnpack, FileDescriptorSetSchema, type Any } from "@bufbuild/protobuf/wkt";
import { ROOT } from "./services.js";

const DEPS = join(ROOT, "node_modules", "@grpc", "grpc-js-xds", "deps");
const BUF = join(ROOT, "node_modules", ".bin", "buf");

/**
 * The Envoy API version of the protos in @grpc/grpc-js-xds pairs with a protoc-gen-validate that
 * has `ignore_empty` in its rules, but the package vendors an older validate.proto without it. We
 * compile against a copy with the field added (number 99, never on the wire: the options are read
 * back with the same descriptors).
 */
function patchedValidateProto(): string {
  const original = readFileSync(join(DEPS, "protoc-gen-validate", "validate", "validate.proto"), "utf8");
  return original.replace(/\nmessage (\w+Rules) \{/g, (m, name: string) =>
    name === "FieldRules" || original.includes("ignore_empty") ? m : `${m}\n    optional bool ignore_empty = 99;`,
  );
}

/** The .proto file (relative to the envoy-api root) that declares a fully-qualified message name. */
function protoFileOf(typeName: string): string {
  const parts = typeName.split(".");
  const message = parts.pop()!;
  const dir = parts.join("/");
  for (const root of ["envoy-api", "xds"]) {
    const abs = join(DEPS, root, dir);
    if (!existsSync(abs)) continue;
    for (const file of readdirSync(abs).filter((f) => f.endsWith(".proto"))) {
      if (new RegExp(`^message ${message} \\{`, "m").test(readFileSync(join(abs, file), "utf8"))) return `${root}/${dir}/${file}`;
    }
  }
  throw new Error(`no Envoy API .proto declares ${typeName} (is the @type misspelled?)`);
}

/**
 * Compiles the Envoy API protos that declare `typeNames` (and everything they import) with buf,
 * offline, into a registry for strict JSON decoding. About a second.
 */
export function buildEnvoyRegistry(typeNames: Iterable<string>): FileRegistry {
  const work = mkdtempSync(join(tmpdir(), "switchyard-envoy-protos-"));
  try {
    for (const root of ["envoy-api", "xds", "googleapis"]) symlinkSync(join(DEPS, root), join(work, root));
    mkdirSync(join(work, "validate", "validate"), { recursive: true });
    writeFileSync(join(work, "validate", "validate", "validate.proto"), patchedValidateProto());
    writeFileSync(
      join(work, "buf.yaml"),
      "version: v2\nmodules:\n  - path: envoy-api\n  - path: xds\n  - path: googleapis\n  - path: validate\n",
    );
    const files = new Set([...typeNames].map(protoFileOf));
    const out = join(work, "envoy.binpb");
    const result = spawnSync(BUF, ["build", "-o", out, ...[...files].flatMap((f) => ["--path", f])], { cwd: work, encoding: "utf8" });
    if (result.status !== 0) throw new Error(`buf build failed: ${result.stderr || result.error?.message}`);
    return createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(out)));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Every `@type` named in a JSON value, without the type.googleapis.com/ prefix. */
export function typeUrlsIn(value: unknown, found = new Set<string>()): Set<string> {
  if (Array.isArray(value)) value.forEach((v) => typeUrlsIn(v, found));
  else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      if (k === "@type" && typeof v === "string") found.add(v.slice(v.lastIndexOf("/") + 1));
      else typeUrlsIn(v, found);
    }
  }
  return found;
}

/**
 * Decodes JSON into `typeName` strictly: unknown keys, wrong types, unknown enum names and unknown
 * `@type`s fail, as they would when Envoy loads the file. Then applies the protoc-gen-validate rules
 * Envoy enforces at load (required fields, minimum lengths, ranges). Returns the problems found.
 */
export function decodeStrict(registry: FileRegistry, typeName: string, json: unknown): { message?: Message; problems: string[] } {
  const desc = registry.getMessage(typeName);
  if (!desc) return { problems: [`${typeName} is not in the registry`] };
  let message: Message;
  try {
    message = fromJson(desc, json as JsonValue, { registry, ignoreUnknownFields: false });
  } catch (err) {
    return { problems: [(err as Error).message] };
  }
  return { message, problems: validateRules(registry, reflect(desc, message), typeName) };
}

interface Rules {
  message?: { required?: boolean; skip?: boolean };
  type?: { case: string | undefined; value?: Record<string, unknown> };
}

/**
 * A subset of protoc-gen-validate, the rules Envoy checks when it loads a config: required
 * message fields and oneofs, string lengths, repeated and map sizes, numeric and duration ranges.
 * Recurses into set messages, lists, maps and `Any` payloads.
 */
function validateRules(registry: FileRegistry, msg: ReflectMessage, path: string): string[] {
  const rulesExt = registry.getExtension("validate.rules") as DescExtension;
  const requiredOneofExt = registry.getExtension("validate.required") as DescExtension;
  const problems: string[] = [];

  if (msg.desc.typeName === "google.protobuf.Any") {
    const inner = anyUnpack(msg.message as Any, registry);
    if (inner) problems.push(...validateRules(registry, reflect(registry.getMessage(inner.$typeName)!, inner), path));
    return problems;
  }
  for (const oneof of msg.oneofs) {
    if (hasOption(oneof, requiredOneofExt) && getOption(oneof, requiredOneofExt) === true && !msg.oneofCase(oneof)) {
      problems.push(`${path}: one of ${oneof.fields.map((f) => f.name).join(", ")} is required`);
    }
  }
  for (const field of msg.fields) {
    const at = `${path}.${field.name}`;
    const rules = fieldRules(registry, field, rulesExt);
    const set = msg.isSet(field);
    if (rules) problems.push(...checkField(msg, field, rules, set, at));
    if (!set) continue;
    if (field.fieldKind === "message") {
      problems.push(...validateRules(registry, msg.get(field) as ReflectMessage, at));
    } else if (field.fieldKind === "list" && field.listKind === "message") {
      let i = 0;
      for (const item of msg.get(field) as Iterable<ReflectMessage>) problems.push(...validateRules(registry, item, `${at}[${i++}]`));
    } else if (field.fieldKind === "map" && field.mapKind === "message") {
      for (const [key, item] of msg.get(field) as Iterable<[unknown, ReflectMessage]>) {
        problems.push(...validateRules(registry, item, `${at}[${String(key)}]`));
      }
    }
  }
  return problems;
}

const rulesCache = new WeakMap<DescField, Rules | null>();

/** The field's (validate.rules) as plain objects holding only the rules that are set (proto2 defaults are not rules). */
function fieldRules(registry: FileRegistry, field: DescField, ext: DescExtension): Rules | undefined {
  let rules = rulesCache.get(field);
  if (rules === undefined) {
    rules = hasOption(field, ext) ? (setFieldsOf(registry, getOption(field, ext) as Message) as Rules) : null;
    rulesCache.set(field, rules);
  }
  return rules ?? undefined;
}

function setFieldsOf(registry: FileRegistry, message: Message): Record<string, unknown> {
  const r = reflect(registry.getMessage(message.$typeName)!, message);
  const out: Record<string, unknown> = {};
  for (const field of r.fields) {
    if (!r.isSet(field)) continue;
    const value = field.fieldKind === "message" ? (r.get(field) as ReflectMessage).message : r.get(field);
    const plain = field.fieldKind === "message" && !field.message.typeName.startsWith("google.protobuf.") ? setFieldsOf(registry, value as Message) : value;
    if (field.oneof) out[field.oneof.localName] = { case: field.localName, value: plain };
    else out[field.localName] = plain;
  }
  return out;
}

function checkField(msg: ReflectMessage, field: DescField, rules: Rules, set: boolean, at: string): string[] {
  const problems: string[] = [];
  // Rules on a oneof member apply only when that member is the one chosen.
  if (field.oneof && !set) return problems;
  if (rules.message?.required && !set) problems.push(`${at}: is required`);
  const kind = rules.type?.case;
  const r = rules.type?.value ?? {};
  if (!kind || !set) {
    if (kind === "repeated" && r.minItems !== undefined && Number(r.minItems) > 0) problems.push(`${at}: needs at least ${r.minItems} item(s)`);
    if (kind === "string" && !set && Number(r.minLen ?? r.minBytes ?? 0) > 0 && !r.ignoreEmpty) problems.push(`${at}: must not be empty`);
    return problems;
  }
  const value: unknown = msg.get(field);
  if (kind === "string" && typeof value === "string") {
    if (r.minLen !== undefined && [...value].length < Number(r.minLen)) problems.push(`${at}: at least ${r.minLen} character(s)`);
    if (r.minBytes !== undefined && Buffer.byteLength(value) < Number(r.minBytes)) problems.push(`${at}: at least ${r.minBytes} byte(s)`);
    if (r.maxBytes !== undefined && Buffer.byteLength(value) > Number(r.maxBytes)) problems.push(`${at}: at most ${r.maxBytes} byte(s)`);
  } else if (kind === "repeated" && field.fieldKind === "list") {
    const size = (value as { size: number }).size;
    if (r.minItems !== undefined && size < Number(r.minItems)) problems.push(`${at}: needs at least ${r.minItems} item(s)`);
  } else if (kind === "map" && field.fieldKind === "map") {
    const size = (value as { size: number }).size;
    if (r.minPairs !== undefined && size < Number(r.minPairs)) problems.push(`${at}: needs at least ${r.minPairs} entr(ies)`);
  } else if (["uint32", "int32", "uint64", "int64", "double", "float"].includes(kind)) {
    const n = numberOf(value);
    if (n !== undefined) problems.push(...range(at, n, r, (x) => String(x)));
  } else if (kind === "duration" && field.fieldKind === "message") {
    const seconds = durationSeconds((value as ReflectMessage).message);
    const bound = (d: unknown) => (d ? durationSeconds(d as Message) : undefined);
    problems.push(...range(at, seconds, { gt: bound(r.gt), gte: bound(r.gte), lt: bound(r.lt), lte: bound(r.lte) }, (x) => `${x}s`));
  }
  return problems;
}

function numberOf(value: unknown): number | undefined {
  if (typeof value === "number" || typeof value === "bigint") return Number(value);
  // Wrapper types (google.protobuf.UInt32Value, ...): the rule applies to the wrapped value.
  const wrapped = (value as ReflectMessage | undefined)?.message as { value?: unknown } | undefined;
  return wrapped && (typeof wrapped.value === "number" || typeof wrapped.value === "bigint") ? Number(wrapped.value) : undefined;
}

function durationSeconds(d: Message): number {
  const { seconds, nanos } = d as unknown as { seconds?: bigint; nanos?: number };
  return Number(seconds ?? 0n) + (nanos ?? 0) / 1e9;
}

function range(at: string, n: number, r: Record<string, unknown>, show: (x: number) => string): string[] {
  const b = (k: string) => (r[k] === undefined ? undefined : Number(r[k]));
  const gt = b("gt"), gte = b("gte"), lt = b("lt"), lte = b("lte");
  const out: string[] = [];
  if (gt !== undefined && !(n > gt)) out.push(`${at}: ${show(n)} must be greater than ${show(gt)}`);
  if (gte !== undefined && !(n >= gte)) out.push(`${at}: ${show(n)} must be at least ${show(gte)}`);
  if (lt !== undefined && !(n < lt)) out.push(`${at}: ${show(n)} must be less than ${show(lt)}`);
  if (lte !== undefined && !(n <= lte)) out.push(`${at}: ${show(n)} must be at most ${show(lte)}`);
  return out;
}

/** Everything the topology check needs to know about where Envoy may send traffic. */
export interface Upstream {
  /** `host:port` as written in a cluster's endpoint. */
  address: string;
  /** The protocol that port speaks. */
  protocol: "http1" | "http2";
  /** How Envoy must health-check it, when it must. */
  healthCheck?: { http: string } | { grpc: true };
  what: string;
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/**
 * Cross-references the bootstrap (as JSON, aliases resolved): every route names a cluster that
 * exists; every cluster endpoint is a known upstream port spoken with its protocol and
 * health-checked as the service expects; streaming routes have no overall timeout but an idle
 * timeout; routes that may carry a POST retry only on failures that prove the request never
 * reached the gateway.
 */
export function checkTopology(bootstrap: Json, upstreams: Upstream[]): string[] {
  const problems: string[] = [];
  const clusters = new Map<string, Json>();
  for (const c of bootstrap.static_resources?.clusters ?? []) {
    if (clusters.has(c.name)) problems.push(`cluster "${c.name}" is defined twice`);
    clusters.set(c.name, c);
  }
  const used = new Set<string>();
  const useCluster = (name: string | undefined, where: string) => {
    if (!name) return;
    used.add(name);
    if (!clusters.has(name)) problems.push(`${where} names cluster "${name}", which does not exist (clusters: ${[...clusters.keys()].join(", ")})`);
  };

  for (const listener of bootstrap.static_resources?.listeners ?? []) {
    for (const chain of listener.filter_chains ?? []) {
      for (const filter of chain.filters ?? []) {
        const hcm = filter.typed_config;
        if (!hcm?.["@type"]?.endsWith(".HttpConnectionManager")) continue;
        const grpcService = hcm.tracing?.provider?.typed_config?.grpc_service;
        useCluster(grpcService?.envoy_grpc?.cluster_name, `listener ${listener.name}: tracing`);
        for (const f of hcm.http_filters ?? []) {
          for (const name of Object.keys(f.typed_config?.cluster_min_healthy_percentages ?? {})) useCluster(name, `listener ${listener.name}: ${f.name}`);
        }
        for (const vh of hcm.route_config?.virtual_hosts ?? []) {
          for (const route of vh.routes ?? []) {
            const where = `listener ${listener.name}: route ${route.name ?? JSON.stringify(route.match)}`;
            if (route.route) {
              useCluster(route.route.cluster, where);
              problems.push(...checkRouteTimeouts(route, where));
            } else if (!route.direct_response && !route.redirect) {
              problems.push(`${where}: has no action (route, direct_response or redirect)`);
            }
          }
        }
      }
    }
  }

  const known = new Map(upstreams.map((u) => [u.address, u]));
  for (const [name, c] of clusters) {
    if (!used.has(name)) problems.push(`cluster "${name}" is not used by any route, tracer or health check`);
    const options = c.typed_extension_protocol_options?.["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]?.explicit_http_config ?? {};
    const protocol = "http2_protocol_options" in options ? "http2" : "http1";
    for (const group of c.load_assignment?.endpoints ?? []) {
      for (const lb of group.lb_endpoints ?? []) {
        const sa = lb.endpoint?.address?.socket_address ?? {};
        const address = `${sa.address}:${sa.port_value}`;
        const upstream = known.get(address);
        if (!upstream) {
          problems.push(`cluster "${name}" points at ${address}, which no service listens on (known: ${[...known.keys()].join(", ")})`);
          continue;
        }
        if (upstream.protocol !== protocol) {
          problems.push(`cluster "${name}" speaks ${protocol} to ${address}, but ${upstream.what} speaks ${upstream.protocol}`);
        }
        const hc = upstream.healthCheck;
        const checks: Json[] = c.health_checks ?? [];
        if (hc && "http" in hc && !checks.some((h) => h.http_health_check?.path === hc.http)) {
          problems.push(`cluster "${name}" must health-check ${upstream.what} with HTTP GET ${hc.http}`);
        }
        if (hc && "grpc" in hc && !checks.some((h) => h.grpc_health_check)) {
          problems.push(`cluster "${name}" must health-check ${upstream.what} with grpc.health.v1`);
        }
      }
    }
  }
  return problems;
}

/** Retry conditions that can repeat a request the gateway already received (and paid a provider for). */
const UNSAFE_RETRY_ON = ["5xx", "gateway-error", "reset", "retriable-4xx", "unavailable", "cancelled", "deadline-exceeded", "internal", "resource-exhausted"];

function checkRouteTimeouts(route: Json, where: string): string[] {
  const problems: string[] = [];
  const r = route.route;
  const getOnly = (route.match?.headers ?? []).some(
    (h: Json) => h.name === ":method" && (h.string_match?.exact === "GET" || h.exact_match === "GET"),
  );
  const retryOn: string[] = String(r.retry_policy?.retry_on ?? "").split(",").filter(Boolean);
  if (!getOnly) {
    const unsafe = retryOn.filter((c) => UNSAFE_RETRY_ON.includes(c));
    if (unsafe.length > 0) problems.push(`${where}: retries on ${unsafe.join(", ")}, which may repeat a POST the gateway already received`);
  }
  const streaming = /chat\/completions|StreamComplete|^\/v1\/$/.test(String(route.match?.path ?? route.match?.prefix ?? "")) && !getOnly;
  if (streaming) {
    if (r.timeout !== "0s") problems.push(`${where}: a streaming route needs timeout: 0s (found ${r.timeout ?? "the 15 s default"})`);
    if (!r.idle_timeout || r.idle_timeout === "0s") problems.push(`${where}: a streaming route needs an idle_timeout`);
  }
  return problems;
}

/** Whether a route's match takes a request with this path and method (path, prefix, safe_regex; `:method` header). */
function routeMatches(route: Json, path: string, method: string): boolean {
  const m = route.match ?? {};
  const pathOk =
    m.path !== undefined ? m.path === path : m.prefix !== undefined ? path.startsWith(m.prefix) : m.safe_regex ? new RegExp(`^(?:${m.safe_regex.regex})$`).test(path) : false;
  if (!pathOk) return false;
  return (m.headers ?? []).every((h: Json) => h.name !== ":method" || (h.string_match?.exact ?? h.exact_match) === method);
}

/**
 * Where Envoy sends each method of the gateway's public gRPC services: the first route of the
 * ingress listener whose match takes `POST /<service>/<method>` must lead to a cluster whose
 * endpoints are `address` (the gateway's h2c port). A service with no route is answered 404 by
 * Envoy, so `switchyard usage` through Envoy would fail while the gateway itself serves it.
 */
export function checkGrpcRoutes(bootstrap: Json, services: { typeName: string; methods: { name: string }[] }[], address: string): string[] {
  const problems: string[] = [];
  const clusters = new Map<string, Json>((bootstrap.static_resources?.clusters ?? []).map((c: Json) => [c.name, c]));
  const ingress = (bootstrap.static_resources?.listeners ?? []).find((l: Json) => l.name === "ingress");
  const hcm = ingress?.filter_chains?.[0]?.filters?.find((f: Json) => f.typed_config?.["@type"]?.endsWith(".HttpConnectionManager"))?.typed_config;
  const routes: Json[] = (hcm?.route_config?.virtual_hosts ?? []).flatMap((vh: Json) => vh.routes ?? []);
  for (const service of services) {
    for (const method of service.methods) {
      const path = `/${service.typeName}/${method.name}`;
      const route = routes.find((r) => routeMatches(r, path, "POST"));
      if (!route?.route) {
        problems.push(`POST ${path}: no route sends it to the gateway (${route ? `route ${route.name} answers it itself` : "Envoy answers 404"})`);
        continue;
      }
      const endpoints = (clusters.get(route.route.cluster)?.load_assignment?.endpoints ?? []).flatMap((g: Json) =>
        (g.lb_endpoints ?? []).map((lb: Json) => `${lb.endpoint?.address?.socket_address?.address}:${lb.endpoint?.address?.socket_address?.port_value}`),
      );
      if (endpoints.length === 0 || endpoints.some((e: string) => e !== address)) {
        problems.push(`POST ${path}: route ${route.name} sends it to ${endpoints.join(", ") || "nowhere"}, not the gateway's gRPC port ${address}`);
      }
    }
  }
  return problems;
}
