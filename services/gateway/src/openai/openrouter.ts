import type { Config } from "@switchyard/config";
import { GatewayError, invalidRequest } from "../errors.js";
import { AUTO_MODEL, type ModelChoice } from "../model-name.js";

/**
 * Which providers may serve a request and in what order (OpenRouter's `provider`), as the policy
 * applies them: they narrow and order the candidates, never lower the quality target nor lift a
 * tenant's limits.
 */
export interface ProviderPreferences {
  order: string[];
  only: string[];
  ignore: string[];
  /** False: only the providers in `order` (without `order`: only the primary route). */
  allowFallbacks: boolean;
  sort?: "price" | "throughput" | "latency";
}

/** What OpenRouter's routing fields of a chat request ask for. */
export interface OpenRouterRouting {
  /** The model list, when `models` is given (replaces the choice `model` made). */
  choice?: Extract<ModelChoice, { kind: "list" }>;
  providers?: ProviderPreferences;
  /** From `provider.max_price`, micro-dollars per million tokens (0 = none). */
  maxInputMicroUsdPerMtok: bigint;
  maxOutputMicroUsdPerMtok: bigint;
}

const MAX_MODELS = 32;
const SORTS = new Set(["price", "throughput", "latency"]);
const PROVIDER_FIELDS = new Set(["order", "only", "ignore", "allow_fallbacks", "sort", "max_price", "require_parameters", "data_collection", "zdr", "quantizations"]);

/**
 * Reads OpenRouter's routing fields of a chat request:
 * - `models`: "provider/model" ids in order; the first that can serve answers, the rest are
 *   fallbacks. A concrete `model` goes first; `switchyard/auto` (or no model) adds nothing; a tier
 *   alias cannot be combined with a list.
 * - `provider`: `order`, `only`, `ignore` (configured provider names), `allow_fallbacks`, `sort`
 *   (`price`, `throughput`, `latency`), `max_price` (`prompt`, `completion`, dollars per million
 *   tokens). Guarantees Switchyard cannot give (`data_collection: "deny"`, `zdr`,
 *   `require_parameters`, `quantizations`, other prices) are refused rather than ignored.
 * - `route: "fallback"`, OpenRouter's older spelling of the list's meaning, is accepted.
 */
export function parseOpenRouterRouting(b: Record<string, unknown>, model: unknown, config: Config): OpenRouterRouting {
  const routing: OpenRouterRouting = { maxInputMicroUsdPerMtok: 0n, maxOutputMicroUsdPerMtok: 0n };
  if (b.route !== undefined && b.route !== null && b.route !== "fallback") throw invalidRequest("'route' must be \"fallback\" (the meaning of 'models' here)", "route");
  if (b.models !== undefined && b.models !== null) routing.choice = parseModels(b.models, model);
  if (b.provider !== undefined && b.provider !== null) {
    if (typeof b.provider !== "object" || Array.isArray(b.provider)) throw invalidRequest("'provider' must be an object", "provider");
    const p = b.provider as Record<string, unknown>;
    for (const key of Object.keys(p)) {
      if (!PROVIDER_FIELDS.has(key)) throw invalidRequest(`'provider.${key.slice(0, 40)}' is not a provider preference Switchyard knows (${[...PROVIDER_FIELDS].slice(0, 6).join(", ")})`, `provider.${key.slice(0, 40)}`, "unsupported_parameter");
    }
    refuseGuarantee(p.require_parameters === true, "require_parameters", "'provider.require_parameters: true' is not supported: Switchyard does not track which parameters each provider honours");
    refuseGuarantee(p.data_collection !== undefined && p.data_collection !== null && p.data_collection !== "allow", "data_collection", "'provider.data_collection' other than \"allow\" is not supported: Switchyard does not track providers' data policies; restrict providers with 'provider.only'");
    refuseGuarantee(p.zdr === true, "zdr", "'provider.zdr: true' is not supported: Switchyard does not track providers' data retention; restrict providers with 'provider.only'");
    refuseGuarantee(Array.isArray(p.quantizations) && p.quantizations.length > 0, "quantizations", "'provider.quantizations' is not supported: Switchyard's models are configured, not chosen by quantization");
    const names = new Set(config.providers.map((x) => x.name));
    const list = (key: "order" | "only" | "ignore") => providerList(p[key], `provider.${key}`, names);
    if (p.allow_fallbacks !== undefined && p.allow_fallbacks !== null && typeof p.allow_fallbacks !== "boolean") throw invalidRequest("'provider.allow_fallbacks' must be a boolean", "provider.allow_fallbacks");
    if (p.sort !== undefined && p.sort !== null && (typeof p.sort !== "string" || !SORTS.has(p.sort))) throw invalidRequest("'provider.sort' must be \"price\", \"throughput\" or \"latency\"", "provider.sort");
    routing.providers = {
      order: list("order"),
      only: list("only"),
      ignore: list("ignore"),
      allowFallbacks: p.allow_fallbacks !== false,
      ...(typeof p.sort === "string" ? { sort: p.sort as NonNullable<ProviderPreferences["sort"]> } : {}),
    };
    const both = routing.providers.only.filter((n) => routing.providers!.ignore.includes(n));
    if (both.length > 0) throw invalidRequest(`provider "${both[0]}" is both in 'provider.only' and in 'provider.ignore'`, "provider.ignore");
    if (p.max_price !== undefined && p.max_price !== null) Object.assign(routing, maxPrice(p.max_price));
  }
  return routing;
}

function refuseGuarantee(refused: boolean, key: string, message: string): void {
  if (refused) throw invalidRequest(message, `provider.${key}`, "unsupported_parameter");
}

function parseModels(v: unknown, model: unknown): Extract<ModelChoice, { kind: "list" }> {
  if (!Array.isArray(v) || v.length === 0 || v.some((m) => typeof m !== "string")) throw invalidRequest("'models' must be a non-empty array of \"provider/model\" ids", "models");
  if (v.length > MAX_MODELS) throw invalidRequest(`'models' takes at most ${MAX_MODELS} models`, "models", "array_above_max_length");
  for (const id of v as string[]) {
    const slash = id.indexOf("/");
    if (id === AUTO_MODEL || id.startsWith(`${AUTO_MODEL}:`) || slash <= 0 || slash === id.length - 1) {
      throw new GatewayError(400, "invalid_request_error", "invalid_model_list", `'models' lists concrete "provider/model" ids; "${id.slice(0, 80)}" is not one (to route, send 'model' alone)`, "models");
    }
  }
  if (typeof model === "string" && model.startsWith(`${AUTO_MODEL}:`)) {
    throw invalidRequest(`'model' "${model}" routes within a tier and 'models' lists the models to try: send one or the other`, "models");
  }
  const first = typeof model === "string" && model !== "" && model !== AUTO_MODEL ? [model] : [];
  return { kind: "list", ids: [...new Set([...first, ...(v as string[])])] };
}

function providerList(v: unknown, param: string, known: ReadonlySet<string>): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((n) => typeof n !== "string")) throw invalidRequest(`'${param}' must be an array of provider names`, param);
  for (const name of v as string[]) {
    if (!known.has(name)) throw invalidRequest(`'${param}' names "${name.slice(0, 64)}", which is not a configured provider (providers: ${[...known].join(", ")})`, param);
  }
  return [...new Set(v as string[])];
}

/** `max_price`: dollars per million tokens of prompt and completion; the other prices Switchyard does not charge. */
function maxPrice(v: unknown): Pick<OpenRouterRouting, "maxInputMicroUsdPerMtok" | "maxOutputMicroUsdPerMtok"> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw invalidRequest("'provider.max_price' must be an object", "provider.max_price");
  const m = v as Record<string, unknown>;
  for (const key of Object.keys(m)) {
    if (key !== "prompt" && key !== "completion") throw invalidRequest(`'provider.max_price.${key.slice(0, 40)}' is not supported: only prompt and completion prices are`, `provider.max_price.${key.slice(0, 40)}`, "unsupported_parameter");
  }
  const usd = (x: unknown, param: string): bigint => {
    if (x === undefined || x === null) return 0n;
    if (typeof x !== "number" || !Number.isFinite(x) || x <= 0 || x > 10_000) throw invalidRequest(`'${param}' must be a price in dollars per million tokens, above 0 and at most 10000`, param);
    return BigInt(Math.round(x * 1_000_000));
  };
  return { maxInputMicroUsdPerMtok: usd(m.prompt, "provider.max_price.prompt"), maxOutputMicroUsdPerMtok: usd(m.completion, "provider.max_price.completion") };
}

/** The stricter of two price caps (0 = none). */
export function stricterCap(a: bigint, b: bigint): bigint {
  if (a === 0n) return b;
  if (b === 0n) return a;
  return a < b ? a : b;
}
