import type { Config } from "@switchyard/config";
import { invalidRequest } from "../errors.js";
import { AUTO_MODEL, parseModel } from "../model-name.js";
import type { CompletionRequest, Sampling } from "../orchestrator.js";

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
 * cost_weight, max_output_usd_per_mtok, cache: "use" | "bypass"}` or the `x-switchyard-cache` header.
 */
export function parseChatRequest(body: unknown, config: Config, cacheHeader: string | undefined): ChatRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw invalidRequest("the request body must be a JSON object");
  const b = body as Record<string, unknown>;
  if (b.model !== undefined && typeof b.model !== "string") throw invalidRequest("'model' must be a string", "model");
  const requestedModel = (b.model as string | undefined) ?? AUTO_MODEL;
  const choice = parseModel(requestedModel, config);

  if (!Array.isArray(b.messages)) throw invalidRequest("'messages' is required and must be an array", "messages");
  if (b.messages.length === 0) throw invalidRequest("'messages' must not be empty", "messages");
  if (b.messages.length > config.limits.max_messages) throw invalidRequest(`'messages' has more than ${config.limits.max_messages} entries`, "messages");
  const messages = b.messages.map((m: unknown, i: number) => parseMessage(m, i));

  const n = b.n;
  if (n !== undefined && n !== null && n !== 1) throw invalidRequest("only n = 1 is supported", "n", "unsupported_parameter");
  for (const unsupported of ["tools", "functions", "tool_choice", "function_call"] as const) {
    if (b[unsupported] !== undefined && b[unsupported] !== null && !(Array.isArray(b[unsupported]) && (b[unsupported] as unknown[]).length === 0)) {
      throw invalidRequest(`'${unsupported}' is not supported by this gateway yet`, unsupported, "unsupported_parameter");
    }
  }
  const sampling: Sampling = { stop: parseStop(b.stop) };
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

  const ext = b.switchyard;
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
    stream,
    includeUsage,
    completion: {
      requestedModel,
      choice,
      messages,
      sampling,
      ...(qualityTarget === undefined ? {} : { qualityTarget }),
      ...(costWeight === undefined ? {} : { costWeight }),
      maxOutputMicroUsdPerMtok: maxPrice === undefined ? 0n : BigInt(Math.round(maxPrice * 1_000_000)),
      cacheMode: (cacheOption as CompletionRequest["cacheMode"] | undefined) ?? "default",
    },
  };
}

function parseMessage(m: unknown, i: number): { role: string; content: string; name?: string } {
  const param = `messages[${i}]`;
  if (typeof m !== "object" || m === null || Array.isArray(m)) throw invalidRequest(`${param} must be an object`, param);
  const msg = m as Record<string, unknown>;
  if (typeof msg.role !== "string" || !ROLES.has(msg.role)) {
    throw invalidRequest(`${param}.role must be one of ${[...ROLES].join(", ")}`, `${param}.role`);
  }
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
  const role = msg.role === "developer" ? "system" : msg.role;
  if (msg.name !== undefined && typeof msg.name !== "string") throw invalidRequest(`${param}.name must be a string`, `${param}.name`);
  return msg.name ? { role, content, name: msg.name as string } : { role, content };
}

function parseStop(stop: unknown): string[] {
  if (stop === undefined || stop === null) return [];
  if (typeof stop === "string") return [stop];
  if (Array.isArray(stop) && stop.length <= 4 && stop.every((s) => typeof s === "string")) return stop as string[];
  throw invalidRequest("'stop' must be a string or an array of at most 4 strings", "stop");
}

function optionalNumber(v: unknown, param: string, min: number, max: number): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) throw invalidRequest(`'${param}' must be a number from ${min} to ${max}`, param);
  return v;
}

function optionalInt(v: unknown, param: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) throw invalidRequest(`'${param}' must be a positive integer`, param);
  return v;
}
