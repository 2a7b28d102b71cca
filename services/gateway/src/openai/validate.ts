import type { Config } from "@switchyard/config";
import { invalidRequest } from "../errors.js";
import { AUTO_MODEL, parseModel } from "../model-name.js";
import type { CompletionRequest, Sampling } from "../orchestrator.js";
import { parseOpenRouterRouting, stricterCap } from "./openrouter.js";

const ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);

/** A validated OpenAI chat completion request. */
export interface ChatRequest {
  completion: Omit<CompletionRequest, "requestId" | "tenant" | "receivedAt">;
  stream: boolean;
  includeUsage: boolean;
}

/**
 * Validates an OpenAI `POST /v1/chat/completions` body. Every problem becomes a 400 naming the
 * parameter, as OpenAI does. Switchyard's own options travel in `switchyard: {quality_target,
 * cost_weight, max_output_usd_per_mtok, cache: "use" | "bypass"}` or the `x-switchyard-cache` header;
 * OpenRouter's routing fields (`models`, `provider`) are read too (see `parseOpenRouterRouting`),
 * and of two price caps on the same price, the stricter wins.
 */
export function parseChatRequest(body: unknown, config: Config, cacheHeader: string | undefined): ChatRequest {
  const limits = config.limits;
  const b = requestObject(body, limits.max_json_depth);
  checkUser(b.user, limits.max_user_chars);
  checkMetadata(b.metadata, limits);
  if (b.model !== undefined && typeof b.model !== "string") throw invalidRequest("'model' must be a string", "model");
  const requestedModel = (b.model as string | undefined) ?? AUTO_MODEL;
  const choice = parseModel(requestedModel, config);

  if (!Array.isArray(b.messages)) throw invalidRequest("'messages' is required and must be an array", "messages");
  if (b.messages.length === 0) throw invalidRequest("'messages' must not be empty", "messages");
  if (b.messages.length > limits.max_messages) throw invalidRequest(`'messages' has more than ${limits.max_messages} entries`, "messages", "array_above_max_length");
  const turns = b.messages.map((m: unknown, i: number) => parseMessage(m, i));
  const messages = turns.map(({ role, content, name }) => (name ? { role, content, name } : { role, content }));

  const n = b.n;
  if (n !== undefined && n !== null && n !== 1) throw invalidRequest("only n = 1 is supported", "n", "unsupported_parameter");
  for (const legacy of ["functions", "function_call"] as const) {
    if (b[legacy] !== undefined && b[legacy] !== null) {
      throw invalidRequest(`'${legacy}' is deprecated by OpenAI and not supported; use 'tools' and 'tool_choice'`, legacy, "unsupported_parameter");
    }
  }
  const tools = parseTools(b.tools, limits.max_tools);
  const toolChoice = parseToolChoice(b.tool_choice, tools);
  const sampling: Sampling = { stop: parseStop(b.stop, limits.max_stop_sequences) };
  const temperature = optionalNumber(b.temperature, "temperature", 0, 2);
  if (temperature !== undefined) sampling.temperature = temperature;
  const topP = optionalNumber(b.top_p, "top_p", 0, 1);
  if (topP !== undefined) sampling.topP = topP;
  const maxTokens = optionalInt(b.max_completion_tokens, "max_completion_tokens") ?? optionalInt(b.max_tokens, "max_tokens");
  if (maxTokens !== undefined) sampling.maxTokens = maxTokens;
  if (b.seed !== undefined && b.seed !== null) {
    if (typeof b.seed !== "number" || !Number.isSafeInteger(b.seed)) throw invalidRequest("'seed' must be an integer", "seed");
    sampling.seed = BigInt(b.seed);
  }
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== "boolean") throw invalidRequest("'stream' must be a boolean", "stream");
  const stream = b.stream === true;
  const so = b.stream_options;
  if (so !== undefined && so !== null && (typeof so !== "object" || Array.isArray(so))) throw invalidRequest("'stream_options' must be an object", "stream_options");
  const includeUsage = Boolean(so && (so as Record<string, unknown>).include_usage === true);

  const options = parseSwitchyardOptions(b.switchyard, cacheHeader);
  const routing = parseOpenRouterRouting(b, b.model, config);
  return {
    stream,
    includeUsage,
    completion: {
      requestedModel,
      choice: routing.choice ?? choice,
      messages,
      sampling,
      ...options,
      maxOutputMicroUsdPerMtok: stricterCap(options.maxOutputMicroUsdPerMtok, routing.maxOutputMicroUsdPerMtok),
      ...(routing.maxInputMicroUsdPerMtok > 0n ? { maxInputMicroUsdPerMtok: routing.maxInputMicroUsdPerMtok } : {}),
      ...(routing.providers ? { providers: routing.providers } : {}),
      ...toolFields(turns, tools, toolChoice),
    },
  };
}

/** Switchyard's own options of a request, whatever API it came in on. */
export type SwitchyardOptions = Pick<CompletionRequest, "qualityTarget" | "costWeight" | "maxOutputMicroUsdPerMtok" | "cacheMode">;

/**
 * Reads Switchyard's own options, the same on every REST API: the body's `switchyard: {quality_target,
 * cost_weight, max_output_usd_per_mtok, cache: "use" | "bypass" | "default"}`, or the cache mode
 * from the `x-switchyard-cache` header.
 */
export function parseSwitchyardOptions(ext: unknown, cacheHeader: string | undefined): SwitchyardOptions {
  if (ext !== undefined && (typeof ext !== "object" || ext === null || Array.isArray(ext))) throw invalidRequest("'switchyard' must be an object", "switchyard");
  const x = (ext ?? {}) as Record<string, unknown>;
  const qualityTarget = optionalNumber(x.quality_target, "switchyard.quality_target", 0, 1);
  const costWeight = optionalNumber(x.cost_weight, "switchyard.cost_weight", 0, 1);
  const maxPrice = optionalNumber(x.max_output_usd_per_mtok, "switchyard.max_output_usd_per_mtok", 0, 10_000);
  const cacheOption = x.cache ?? cacheHeader;
  if (cacheOption !== undefined && cacheOption !== "use" && cacheOption !== "bypass" && cacheOption !== "default") {
    throw invalidRequest("cache option must be \"use\", \"bypass\" or \"default\"", "switchyard.cache");
  }
  return {
    ...(qualityTarget === undefined ? {} : { qualityTarget }),
    ...(costWeight === undefined ? {} : { costWeight }),
    maxOutputMicroUsdPerMtok: maxPrice === undefined ? 0n : BigInt(Math.round(maxPrice * 1_000_000)),
    cacheMode: (cacheOption as CompletionRequest["cacheMode"] | undefined) ?? "default",
  };
}

/**
 * Refuses the fields that other gateways honour to send the upstream call elsewhere or with other
 * credentials (see REDIRECTING_FIELDS), naming the field.
 */
/**
 * What every API's body check starts with: a JSON object, no deeper than `maxDepth` (first, before
 * anything walks the body recursively: JSON.stringify of tool parameters would overflow the
 * stack on a body nested 100,000 deep), with no field that would send the request elsewhere.
 */
export function requestObject(body: unknown, maxDepth: number): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw invalidRequest("the request body must be a JSON object");
  checkDepth(body, maxDepth);
  const b = body as Record<string, unknown>;
  refuseRedirecting(b);
  return b;
}

export function refuseRedirecting(b: Record<string, unknown>): void {
  for (const field of REDIRECTING_FIELDS) {
    if (Object.hasOwn(b, field) && b[field] !== null && b[field] !== undefined) {
      throw invalidRequest(
        `'${field}' is not supported: Switchyard chooses the upstream and holds its credentials, so a request cannot redirect or re-authenticate the call; remove '${field}'`,
        field,
        "unsupported_parameter",
      );
    }
  }
}

function parseMessage(m: unknown, i: number): ConversationTurn {
  const param = `messages[${i}]`;
  if (typeof m !== "object" || m === null || Array.isArray(m)) throw invalidRequest(`${param} must be an object`, param);
  const msg = m as Record<string, unknown>;
  if (typeof msg.role !== "string" || !ROLES.has(msg.role)) {
    throw invalidRequest(`${param}.role must be one of ${[...ROLES].join(", ")}`, `${param}.role`);
  }
  const toolCalls = msg.role === "assistant" ? parseToolCalls(msg.tool_calls, param) : [];
  let content: string;
  if (typeof msg.content === "string") content = msg.content;
  else if (Array.isArray(msg.content)) {
    content = msg.content
      .map((part: unknown, j: number) => {
        const p = part as Record<string, unknown> | null;
        if (!p || p.type !== "text" || typeof p.text !== "string") {
          throw invalidRequest(`${param}.content[${j}]: only text parts are supported`, `${param}.content`, "unsupported_content");
        }
        return p.text;
      })
      .join("");
  } else if ((msg.content === null || msg.content === undefined) && msg.role === "assistant") content = "";
  else throw invalidRequest(`${param}.content must be a string or an array of text parts`, `${param}.content`);
  if (msg.role === "assistant" && content === "" && toolCalls.length === 0 && msg.content === undefined) {
    throw invalidRequest(`${param}: an assistant message needs content or tool_calls`, `${param}.content`);
  }
  let toolCallId = "";
  if (msg.role === "tool") {
    if (typeof msg.tool_call_id !== "string" || msg.tool_call_id === "") throw invalidRequest(`${param}.tool_call_id is required on a tool message`, `${param}.tool_call_id`);
    toolCallId = msg.tool_call_id;
  }
  const role = msg.role === "developer" ? "system" : msg.role;
  if (msg.name !== undefined && typeof msg.name !== "string") throw invalidRequest(`${param}.name must be a string`, `${param}.name`);
  const turn: ConversationTurn = { role, content, toolCalls, toolCallId };
  if (msg.name) turn.name = msg.name as string;
  return turn;
}

/** A turn that may carry tool calls (assistant) or a tool result (tool). */
export interface ConversationTurn {
  role: string;
  content: string;
  name?: string;
  toolCalls: { id: string; name: string; argumentsJson: string }[];
  toolCallId: string;
}

function parseToolCalls(v: unknown, param: string): ConversationTurn["toolCalls"] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalidRequest(`${param}.tool_calls must be an array`, `${param}.tool_calls`);
  return v.map((c: unknown, j: number) => {
    const call = c as { id?: unknown; type?: unknown; function?: { name?: unknown; arguments?: unknown } } | null;
    const at = `${param}.tool_calls[${j}]`;
    if (!call || typeof call.id !== "string" || (call.type !== undefined && call.type !== "function") || typeof call.function?.name !== "string") {
      throw invalidRequest(`${at} must be {id, type: "function", function: {name, arguments}}`, at);
    }
    const args = call.function.arguments ?? "{}";
    if (typeof args !== "string") throw invalidRequest(`${at}.function.arguments must be a JSON string`, `${at}.function.arguments`);
    return { id: call.id, name: call.function.name, argumentsJson: args };
  });
}

/** A function the model may call. */
export interface ToolSpec {
  name: string;
  description: string;
  parametersJson: string;
}

function parseTools(v: unknown, max: number): ToolSpec[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalidRequest("'tools' must be an array", "tools");
  if (v.length > max) throw invalidRequest(`'tools' takes at most ${max} functions`, "tools", "array_above_max_length");
  return v.map((t: unknown, i: number) => {
    const tool = t as { type?: unknown; function?: { name?: unknown; description?: unknown; parameters?: unknown } } | null;
    const at = `tools[${i}]`;
    if (!tool || tool.type !== "function" || typeof tool.function !== "object" || tool.function === null) {
      throw invalidRequest(`${at} must be {type: "function", function: {...}}`, at);
    }
    const name = tool.function.name;
    if (typeof name !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(name)) throw invalidRequest(`${at}.function.name must be 1-64 letters, digits, '_' or '-'`, `${at}.function.name`);
    const params = tool.function.parameters;
    if (params !== undefined && (typeof params !== "object" || params === null || Array.isArray(params))) {
      throw invalidRequest(`${at}.function.parameters must be a JSON Schema object`, `${at}.function.parameters`);
    }
    return {
      name,
      description: typeof tool.function.description === "string" ? tool.function.description : "",
      parametersJson: params === undefined ? "" : JSON.stringify(params),
    };
  });
}

/** How the model may use the tools. */
export type ToolChoiceSpec = { mode: "auto" | "none" | "required" } | { mode: "tool"; name: string };

/**
 * The tool side of the internal request, whichever API it came in on: the functions, the tool
 * choice, and the tool-aware conversation when tools are in play (a call or a result in the
 * turns, or functions offered); plain messages carry the rest.
 */
export function toolFields(turns: ConversationTurn[], tools: ToolSpec[], toolChoice: ToolChoiceSpec | undefined): Pick<CompletionRequest, "tools" | "toolChoice" | "conversation"> {
  const usesTools = tools.length > 0 || turns.some((t) => t.toolCalls.length > 0 || t.toolCallId !== "");
  return { tools, ...(toolChoice ? { toolChoice } : {}), ...(usesTools ? { conversation: turns } : {}) };
}

function parseToolChoice(v: unknown, tools: ToolSpec[]): ToolChoiceSpec | undefined {
  if (v === undefined || v === null) return undefined;
  if (v === "auto" || v === "none" || v === "required") {
    if (v === "required" && tools.length === 0) throw invalidRequest("tool_choice 'required' needs 'tools'", "tool_choice");
    return { mode: v };
  }
  const c = v as { type?: unknown; function?: { name?: unknown } };
  if (typeof v === "object" && c.type === "function" && typeof c.function?.name === "string") {
    if (!tools.some((t) => t.name === c.function!.name)) throw invalidRequest(`tool_choice names "${String(c.function.name)}", which is not in 'tools'`, "tool_choice");
    return { mode: "tool", name: c.function.name };
  }
  throw invalidRequest('\'tool_choice\' must be "auto", "none", "required" or {type: "function", function: {name}}', "tool_choice");
}

/** `stop` as a string or an array of at most `max` strings. */
export function parseStop(stop: unknown, max: number): string[] {
  if (stop === undefined || stop === null) return [];
  if (typeof stop === "string") return [stop];
  if (Array.isArray(stop) && stop.every((s) => typeof s === "string")) {
    if (stop.length > max) throw invalidRequest(`'stop' takes at most ${max} sequences`, "stop", "array_above_max_length");
    return stop as string[];
  }
  throw invalidRequest(`'stop' must be a string or an array of at most ${max} strings`, "stop");
}

/**
 * Body fields that other gateways (LiteLLM, Azure and OpenAI SDK options sent in the body, and the
 * like) honour to send the upstream call elsewhere or with other credentials. Ignoring them would
 * let a caller believe its request went where it asked; OpenAI answers unknown parameters with a
 * 400, and so do we, naming the field.
 */
export const REDIRECTING_FIELDS = [
  "api_base",
  "base_url",
  "api_key",
  "api_version",
  "api_type",
  "organization",
  "project",
  "headers",
  "extra_headers",
  "extra_body",
  "extra_query",
  "custom_llm_provider",
  "deployment_id",
  "azure_endpoint",
  "azure_deployment",
  "azure_ad_token",
  "aws_access_key_id",
  "aws_secret_access_key",
  "aws_session_token",
  "aws_region_name",
  "vertex_project",
  "vertex_location",
  "vertex_credentials",
  "litellm_params",
] as const;

/**
 * Refuses a body nested deeper than `max` (the body object is level 1), naming the top-level
 * field the deep value sits under. Iterative: a body nested 100,000 deep is parsed fine by
 * JSON.parse and must not overflow the stack here either.
 */
export function checkDepth(body: object, max: number): void {
  const stack: { value: unknown; depth: number; field: string | null }[] = [{ value: body, depth: 1, field: null }];
  while (stack.length > 0) {
    const { value, depth, field } = stack.pop()!;
    if (depth > max) {
      throw invalidRequest(`${field ? `'${field}'` : "the request body"} is nested more than ${max} levels deep`, field, "nesting_too_deep");
    }
    if (Array.isArray(value)) {
      for (const item of value) if (typeof item === "object" && item !== null) stack.push({ value: item, depth: depth + 1, field });
    } else if (typeof value === "object" && value !== null) {
      for (const [key, item] of Object.entries(value)) {
        if (typeof item === "object" && item !== null) stack.push({ value: item, depth: depth + 1, field: field ?? key });
      }
    }
  }
}

function checkUser(user: unknown, max: number): void {
  if (user === undefined || user === null) return;
  if (typeof user !== "string") throw invalidRequest("'user' must be a string", "user");
  if (user.length > max) throw tooLong("user", max, user.length);
}

/** OpenAI's `metadata`: at most 16 string values, keys up to 64 characters, values up to 512 (configurable). */
export function checkMetadata(metadata: unknown, limits: Config["limits"]): void {
  if (metadata === undefined || metadata === null) return;
  if (typeof metadata !== "object" || Array.isArray(metadata)) throw invalidRequest("'metadata' must be an object of string values", "metadata");
  const entries = Object.entries(metadata);
  if (entries.length > limits.max_metadata_keys) {
    throw invalidRequest(`'metadata' has ${entries.length} keys; at most ${limits.max_metadata_keys} are allowed`, "metadata", "object_above_max_properties");
  }
  for (const [key, value] of entries) {
    if (key.length > limits.max_metadata_key_chars) {
      throw invalidRequest(`'metadata' keys are at most ${limits.max_metadata_key_chars} characters; one has ${key.length}`, "metadata", "string_above_max_length");
    }
    if (typeof value !== "string") throw invalidRequest(`'metadata.${key}' must be a string`, `metadata.${key}`);
    if (value.length > limits.max_metadata_value_chars) throw tooLong(`metadata.${key}`, limits.max_metadata_value_chars, value.length);
  }
}

/** OpenAI's wording and code for a string over its limit. */
function tooLong(param: string, max: number, length: number) {
  return invalidRequest(`Invalid '${param}': string too long. Expected a string with maximum length ${max}, but got a string with length ${length} instead.`, param, "string_above_max_length");
}

/** A number in [min, max], or undefined when absent. @throws GatewayError 400 naming `param` */
export function optionalNumber(v: unknown, param: string, min: number, max: number): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) throw invalidRequest(`'${param}' must be a number from ${min} to ${max}`, param);
  return v;
}

/** A positive integer, or undefined when absent. @throws GatewayError 400 naming `param` */
export function optionalInt(v: unknown, param: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) throw invalidRequest(`'${param}' must be a positive integer`, param);
  return v;
}
