import type { Config } from "@switchyard/config";
import { invalidRequest } from "../errors.js";
import { AUTO_MODEL, parseModel } from "../model-name.js";
import type { Sampling } from "../orchestrator.js";
import type { ParsedCompletion } from "../rest/format.js";
import {
  optionalInt,
  optionalNumber,
  parseStop,
  parseSwitchyardOptions,
  requestObject,
  toolFields,
  type ConversationTurn,
  type ToolChoiceSpec,
  type ToolSpec,
} from "../openai/validate.js";

/** A validated Anthropic Messages request. */
export type MessagesRequest = ParsedCompletion;

/**
 * Validates an Anthropic `POST /v1/messages` body and maps it onto the internal request: `system`
 * becomes the first turn, `tool_use` blocks the assistant's tool calls, `tool_result` blocks tool
 * turns (before the user's text of the same message, as the calls they answer come first), and
 * `tool_choice` `any` the internal `required`. `max_tokens` is required, as Anthropic requires it.
 * Switchyard's own options travel in `switchyard: {...}` or the `x-switchyard-cache` header, as
 * on the chat API. Images, documents, server tools and extended thinking are refused with a 400
 * naming the field: every provider behind Switchyard must be able to answer the request.
 */
export function parseMessagesRequest(body: unknown, config: Config, cacheHeader: string | undefined): MessagesRequest {
  const limits = config.limits;
  const b = requestObject(body, limits.max_json_depth);
  if (b.model !== undefined && typeof b.model !== "string") throw invalidRequest("model: must be a string", "model");
  const requestedModel = (b.model as string | undefined) ?? AUTO_MODEL;
  const choice = parseModel(requestedModel, config);

  const maxTokens = optionalInt(b.max_tokens, "max_tokens");
  if (maxTokens === undefined) throw invalidRequest("max_tokens: Field required (a positive integer)", "max_tokens");
  if (!Array.isArray(b.messages)) throw invalidRequest("messages: Field required (an array of {role, content})", "messages");
  if (b.messages.length === 0) throw invalidRequest("messages: at least one message is required", "messages");
  if (b.messages.length > limits.max_messages) throw invalidRequest(`messages: more than ${limits.max_messages} entries`, "messages", "array_above_max_length");

  const turns: ConversationTurn[] = [];
  const system = systemPrompt(b.system);
  if (system) turns.push({ role: "system", content: system, toolCalls: [], toolCallId: "" });
  b.messages.forEach((m: unknown, i: number) => turns.push(...messageTurns(m, i)));

  const tools = parseTools(b.tools, limits.max_tools);
  const toolChoice = parseToolChoice(b.tool_choice, tools);
  if (b.thinking !== undefined && b.thinking !== null) {
    const t = b.thinking as { type?: unknown };
    if (typeof t !== "object" || t.type !== "disabled") {
      throw invalidRequest("thinking: extended thinking is not supported (Switchyard routes to models that may not think); remove 'thinking' or set {\"type\": \"disabled\"}", "thinking", "unsupported_parameter");
    }
  }
  for (const field of ["mcp_servers", "container"] as const) {
    if (b[field] !== undefined && b[field] !== null) throw invalidRequest(`${field}: not supported by Switchyard`, field, "unsupported_parameter");
  }
  if (b.metadata !== undefined && b.metadata !== null && (typeof b.metadata !== "object" || Array.isArray(b.metadata))) {
    throw invalidRequest("metadata: must be an object", "metadata");
  }
  // top_k is Anthropic's own sampling knob: accepted (a client may always send it) and not
  // passed on, since most providers have no such parameter.
  if (b.top_k !== undefined && b.top_k !== null && (typeof b.top_k !== "number" || !Number.isSafeInteger(b.top_k) || b.top_k < 0)) {
    throw invalidRequest("top_k: must be a non-negative integer", "top_k");
  }

  const sampling: Sampling = { stop: parseStop(b.stop_sequences, limits.max_stop_sequences), maxTokens };
  const temperature = optionalNumber(b.temperature, "temperature", 0, 1);
  if (temperature !== undefined) sampling.temperature = temperature;
  const topP = optionalNumber(b.top_p, "top_p", 0, 1);
  if (topP !== undefined) sampling.topP = topP;
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== "boolean") throw invalidRequest("stream: must be a boolean", "stream");

  return {
    stream: b.stream === true,
    completion: {
      requestedModel,
      choice,
      messages: turns.map(({ role, content }) => ({ role, content })),
      sampling,
      ...parseSwitchyardOptions(b.switchyard, cacheHeader),
      ...toolFields(turns, tools, toolChoice),
    },
  };
}

/** `system`: a string or an array of text blocks (their `cache_control` is a hint we may ignore). */
function systemPrompt(v: unknown): string {
  if (v === undefined || v === null) return "";
  if (typeof v === "string") return v;
  if (Array.isArray(v)) return v.map((block: unknown, j: number) => textOf(block, `system[${j}]`)).join("\n");
  throw invalidRequest("system: must be a string or an array of text blocks", "system");
}

function textOf(block: unknown, at: string): string {
  const b = block as { type?: unknown; text?: unknown } | null;
  if (!b || b.type !== "text" || typeof b.text !== "string") throw invalidRequest(`${at}: only text blocks are supported here`, at, "unsupported_content");
  return b.text;
}

/** The internal turns of one message: tool results first (each its own turn), then the text. */
function messageTurns(m: unknown, i: number): ConversationTurn[] {
  const at = `messages[${i}]`;
  if (typeof m !== "object" || m === null || Array.isArray(m)) throw invalidRequest(`${at}: must be an object`, at);
  const msg = m as Record<string, unknown>;
  if (msg.role !== "user" && msg.role !== "assistant") throw invalidRequest(`${at}.role: must be "user" or "assistant" (system prompts go in 'system')`, `${at}.role`);
  const role = msg.role;
  if (typeof msg.content === "string") return [{ role, content: msg.content, toolCalls: [], toolCallId: "" }];
  if (!Array.isArray(msg.content)) throw invalidRequest(`${at}.content: must be a string or an array of content blocks`, `${at}.content`);
  const results: ConversationTurn[] = [];
  const calls: ConversationTurn["toolCalls"] = [];
  let text = "";
  msg.content.forEach((block: unknown, j: number) => {
    const bat = `${at}.content[${j}]`;
    const b = block as Record<string, unknown> | null;
    if (!b || typeof b !== "object" || typeof b.type !== "string") throw invalidRequest(`${bat}: must be a content block with a 'type'`, bat);
    switch (b.type) {
      case "text":
        if (typeof b.text !== "string") throw invalidRequest(`${bat}.text: must be a string`, `${bat}.text`);
        text += b.text;
        return;
      case "tool_use": {
        if (role !== "assistant") throw invalidRequest(`${bat}: tool_use blocks belong to assistant messages`, bat);
        if (typeof b.id !== "string" || b.id === "" || typeof b.name !== "string" || b.name === "") throw invalidRequest(`${bat}: a tool_use block needs 'id' and 'name'`, bat);
        if (b.input !== undefined && (typeof b.input !== "object" || b.input === null || Array.isArray(b.input))) throw invalidRequest(`${bat}.input: must be an object`, `${bat}.input`);
        calls.push({ id: b.id, name: b.name, argumentsJson: JSON.stringify(b.input ?? {}) });
        return;
      }
      case "tool_result": {
        if (role !== "user") throw invalidRequest(`${bat}: tool_result blocks belong to user messages`, bat);
        if (typeof b.tool_use_id !== "string" || b.tool_use_id === "") throw invalidRequest(`${bat}.tool_use_id: required`, `${bat}.tool_use_id`);
        const content =
          b.content === undefined || b.content === null
            ? ""
            : typeof b.content === "string"
              ? b.content
              : Array.isArray(b.content)
                ? b.content.map((c: unknown, k: number) => textOf(c, `${bat}.content[${k}]`)).join("")
                : (() => {
                    throw invalidRequest(`${bat}.content: must be a string or an array of text blocks`, `${bat}.content`);
                  })();
        results.push({ role: "tool", content, toolCalls: [], toolCallId: b.tool_use_id });
        return;
      }
      case "thinking":
      case "redacted_thinking":
        // An earlier answer's reasoning, sent back as history: not part of the conversation for
        // a model that did not write it.
        if (role === "assistant") return;
        throw invalidRequest(`${bat}: ${b.type} blocks belong to assistant messages`, bat);
      default:
        throw invalidRequest(`${bat}: content blocks of type "${String(b.type).slice(0, 40)}" are not supported (text, tool_use and tool_result are)`, bat, "unsupported_content");
    }
  });
  if (role === "assistant") return [{ role, content: text, toolCalls: calls, toolCallId: "" }];
  return text === "" && results.length > 0 ? results : [...results, { role, content: text, toolCalls: [], toolCallId: "" }];
}

function parseTools(v: unknown, max: number): ToolSpec[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalidRequest("tools: must be an array", "tools");
  if (v.length > max) throw invalidRequest(`tools: at most ${max} tools`, "tools", "array_above_max_length");
  return v.map((t: unknown, i: number) => {
    const at = `tools[${i}]`;
    const tool = t as { type?: unknown; name?: unknown; description?: unknown; input_schema?: unknown } | null;
    if (!tool || typeof tool !== "object") throw invalidRequest(`${at}: must be an object`, at);
    if (tool.type !== undefined && tool.type !== null && tool.type !== "custom") {
      throw invalidRequest(`${at}: server tools (type "${String(tool.type).slice(0, 40)}") are not supported; define client tools with name, description and input_schema`, at, "unsupported_parameter");
    }
    if (typeof tool.name !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(tool.name)) throw invalidRequest(`${at}.name: must be 1-64 letters, digits, '_' or '-'`, `${at}.name`);
    const schema = tool.input_schema;
    if (typeof schema !== "object" || schema === null || Array.isArray(schema)) throw invalidRequest(`${at}.input_schema: Field required (a JSON Schema object)`, `${at}.input_schema`);
    return { name: tool.name, description: typeof tool.description === "string" ? tool.description : "", parametersJson: JSON.stringify(schema) };
  });
}

function parseToolChoice(v: unknown, tools: ToolSpec[]): ToolChoiceSpec | undefined {
  if (v === undefined || v === null) return undefined;
  const c = v as { type?: unknown; name?: unknown };
  if (typeof v !== "object" || Array.isArray(v)) throw invalidRequest('tool_choice: must be {"type": "auto" | "any" | "tool" | "none"}', "tool_choice");
  switch (c.type) {
    case "auto":
    case "none":
      return { mode: c.type };
    case "any":
      if (tools.length === 0) throw invalidRequest("tool_choice: \"any\" needs 'tools'", "tool_choice");
      return { mode: "required" };
    case "tool":
      if (typeof c.name !== "string" || !tools.some((t) => t.name === c.name)) throw invalidRequest(`tool_choice: names "${String(c.name).slice(0, 64)}", which is not in 'tools'`, "tool_choice");
      return { mode: "tool", name: c.name };
    default:
      throw invalidRequest('tool_choice: type must be "auto", "any", "tool" or "none"', "tool_choice");
  }
}
