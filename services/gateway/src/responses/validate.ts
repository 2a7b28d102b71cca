import type { Config } from "@switchyard/config";
import { invalidRequest } from "../errors.js";
import { AUTO_MODEL, parseModel } from "../model-name.js";
import type { Sampling } from "../orchestrator.js";
import type { ParsedCompletion } from "../rest/format.js";
import {
  checkMetadata,
  optionalInt,
  optionalNumber,
  parseSwitchyardOptions,
  requestObject,
  toolFields,
  type ConversationTurn,
  type ToolChoiceSpec,
  type ToolSpec,
} from "../openai/validate.js";

/** A validated Responses request, with the request fields a response object repeats. */
export interface ResponsesRequest extends ParsedCompletion {
  echo: ResponseEcho;
}

/** What a `response` object says back of its request. */
export interface ResponseEcho {
  instructions: string | null;
  max_output_tokens: number | null;
  parallel_tool_calls: boolean;
  temperature: number | null;
  top_p: number | null;
  tool_choice: unknown;
  tools: unknown[];
  metadata: Record<string, string>;
  user: string | null;
}

/**
 * Validates an OpenAI `POST /v1/responses` body and maps it onto the internal request: `input` (a
 * string, or message, `function_call` and `function_call_output` items) becomes the conversation,
 * `instructions` its first, system turn; function tools and `tool_choice` as on the chat API.
 * Nothing is stored: `store: true`, `previous_response_id`, `conversation`, `background` and
 * item references are refused with a 400 until Switchyard has somewhere to keep responses (a
 * request that leaves `store` out is answered as `store: false`). Non-function tools, images,
 * files and structured output formats are refused too, naming the field.
 */
export function parseResponsesRequest(body: unknown, config: Config, cacheHeader: string | undefined): ResponsesRequest {
  const limits = config.limits;
  const b = requestObject(body, limits.max_json_depth);
  if (b.store === true) {
    throw invalidRequest("'store: true' is not supported: Switchyard keeps no responses yet; send 'store: false' (or leave it out) and carry the conversation in 'input'", "store", "unsupported_parameter");
  }
  const stateful: [string, string][] = [
    ["previous_response_id", "Switchyard keeps no responses yet to continue from; send the earlier turns in 'input'"],
    ["conversation", "Switchyard keeps no conversations yet; send the earlier turns in 'input'"],
    ["prompt", "Switchyard keeps no stored prompts; send the prompt in 'instructions' and 'input'"],
  ];
  for (const [field, why] of stateful) {
    if (b[field] !== undefined && b[field] !== null) throw invalidRequest(`'${field}' is not supported: ${why}`, field, "unsupported_parameter");
  }
  if (b.background === true) throw invalidRequest("'background: true' is not supported: Switchyard keeps no responses to poll", "background", "unsupported_parameter");
  if (b.model !== undefined && typeof b.model !== "string") throw invalidRequest("'model' must be a string", "model");
  const requestedModel = (b.model as string | undefined) ?? AUTO_MODEL;
  const choice = parseModel(requestedModel, config);

  if (b.instructions !== undefined && b.instructions !== null && typeof b.instructions !== "string") throw invalidRequest("'instructions' must be a string", "instructions");
  const instructions = (b.instructions as string | null | undefined) ?? null;
  const turns: ConversationTurn[] = instructions ? [{ role: "system", content: instructions, toolCalls: [], toolCallId: "" }] : [];
  if (typeof b.input === "string") turns.push({ role: "user", content: b.input, toolCalls: [], toolCallId: "" });
  else if (Array.isArray(b.input)) {
    if (b.input.length === 0) throw invalidRequest("'input' must not be empty", "input");
    if (b.input.length > limits.max_messages) throw invalidRequest(`'input' has more than ${limits.max_messages} items`, "input", "array_above_max_length");
    b.input.forEach((item: unknown, i: number) => addItem(turns, item, i));
  } else throw invalidRequest("'input' is required: a string or an array of input items", "input");
  if (!turns.some((t) => t.role !== "system")) throw invalidRequest("'input' has no message to answer", "input");

  const { tools, echoed } = parseTools(b.tools, limits.max_tools);
  const toolChoice = parseToolChoice(b.tool_choice, tools);
  checkText(b.text);
  checkMetadata(b.metadata, limits);
  if (b.user !== undefined && b.user !== null && typeof b.user !== "string") throw invalidRequest("'user' must be a string", "user");
  if (b.parallel_tool_calls !== undefined && b.parallel_tool_calls !== null && typeof b.parallel_tool_calls !== "boolean") {
    throw invalidRequest("'parallel_tool_calls' must be a boolean", "parallel_tool_calls");
  }

  const sampling: Sampling = { stop: [] };
  const temperature = optionalNumber(b.temperature, "temperature", 0, 2);
  if (temperature !== undefined) sampling.temperature = temperature;
  const topP = optionalNumber(b.top_p, "top_p", 0, 1);
  if (topP !== undefined) sampling.topP = topP;
  const maxTokens = optionalInt(b.max_output_tokens, "max_output_tokens");
  if (maxTokens !== undefined) sampling.maxTokens = maxTokens;
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== "boolean") throw invalidRequest("'stream' must be a boolean", "stream");

  return {
    stream: b.stream === true,
    echo: {
      instructions,
      max_output_tokens: maxTokens ?? null,
      parallel_tool_calls: b.parallel_tool_calls !== false,
      temperature: temperature ?? null,
      top_p: topP ?? null,
      tool_choice: b.tool_choice ?? "auto",
      tools: echoed,
      metadata: (b.metadata as Record<string, string> | null | undefined) ?? {},
      user: (b.user as string | null | undefined) ?? null,
    },
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

const MESSAGE_ROLES = new Set(["user", "assistant", "system", "developer"]);

/** Adds one input item to the conversation; a function call joins the assistant turn before it. */
function addItem(turns: ConversationTurn[], item: unknown, i: number): void {
  const at = `input[${i}]`;
  if (typeof item !== "object" || item === null || Array.isArray(item)) throw invalidRequest(`${at} must be an object`, at);
  const it = item as Record<string, unknown>;
  const type = it.type ?? "message";
  switch (type) {
    case "message": {
      if (typeof it.role !== "string" || !MESSAGE_ROLES.has(it.role)) throw invalidRequest(`${at}.role must be one of ${[...MESSAGE_ROLES].join(", ")}`, `${at}.role`);
      const role = it.role === "developer" ? "system" : it.role;
      turns.push({ role, content: messageText(it.content, at), toolCalls: [], toolCallId: "" });
      return;
    }
    case "function_call": {
      if (typeof it.call_id !== "string" || it.call_id === "" || typeof it.name !== "string" || it.name === "") throw invalidRequest(`${at}: a function_call item needs 'call_id' and 'name'`, at);
      if (typeof it.arguments !== "string") throw invalidRequest(`${at}.arguments must be a JSON string`, `${at}.arguments`);
      const call = { id: it.call_id, name: it.name, argumentsJson: it.arguments };
      const last = turns[turns.length - 1];
      if (last && last.role === "assistant") last.toolCalls.push(call);
      else turns.push({ role: "assistant", content: "", toolCalls: [call], toolCallId: "" });
      return;
    }
    case "function_call_output": {
      if (typeof it.call_id !== "string" || it.call_id === "") throw invalidRequest(`${at}.call_id is required`, `${at}.call_id`);
      turns.push({ role: "tool", content: messageText(it.output, `${at}.output`), toolCalls: [], toolCallId: it.call_id });
      return;
    }
    case "reasoning":
      // An earlier answer's reasoning, sent back as history: not for a model that did not write it.
      return;
    case "item_reference":
      throw invalidRequest(`${at}: item references are not supported: Switchyard keeps no items; send the item itself`, at, "unsupported_parameter");
    default:
      throw invalidRequest(`${at}: items of type "${String(type).slice(0, 40)}" are not supported (message, function_call and function_call_output are)`, `${at}.type`, "unsupported_content");
  }
}

/** A message's text: a string, or text parts (`input_text`, `output_text`). */
function messageText(content: unknown, at: string): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) throw invalidRequest(`${at}.content must be a string or an array of text parts`, `${at}.content`);
  return content
    .map((part: unknown, j: number) => {
      const p = part as { type?: unknown; text?: unknown } | null;
      if (!p || (p.type !== "input_text" && p.type !== "output_text") || typeof p.text !== "string") {
        throw invalidRequest(`${at}.content[${j}]: only input_text and output_text parts are supported`, `${at}.content`, "unsupported_content");
      }
      return p.text;
    })
    .join("");
}

function parseTools(v: unknown, max: number): { tools: ToolSpec[]; echoed: unknown[] } {
  if (v === undefined || v === null) return { tools: [], echoed: [] };
  if (!Array.isArray(v)) throw invalidRequest("'tools' must be an array", "tools");
  if (v.length > max) throw invalidRequest(`'tools' takes at most ${max} tools`, "tools", "array_above_max_length");
  const echoed: unknown[] = [];
  const tools = v.map((t: unknown, i: number) => {
    const at = `tools[${i}]`;
    const tool = t as { type?: unknown; name?: unknown; description?: unknown; parameters?: unknown; strict?: unknown } | null;
    if (!tool || typeof tool !== "object") throw invalidRequest(`${at} must be an object`, at);
    if (tool.type !== "function") {
      throw invalidRequest(`${at}: tools of type "${String(tool.type).slice(0, 40)}" are not supported; only function tools are`, `${at}.type`, "unsupported_parameter");
    }
    if (typeof tool.name !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(tool.name)) throw invalidRequest(`${at}.name must be 1-64 letters, digits, '_' or '-'`, `${at}.name`);
    const params = tool.parameters;
    if (params !== undefined && params !== null && (typeof params !== "object" || Array.isArray(params))) throw invalidRequest(`${at}.parameters must be a JSON Schema object`, `${at}.parameters`);
    const description = typeof tool.description === "string" ? tool.description : "";
    echoed.push({ type: "function", name: tool.name, description: description || null, parameters: params ?? null, strict: tool.strict === true });
    return { name: tool.name, description, parametersJson: params === undefined || params === null ? "" : JSON.stringify(params) };
  });
  return { tools, echoed };
}

function parseToolChoice(v: unknown, tools: ToolSpec[]): ToolChoiceSpec | undefined {
  if (v === undefined || v === null) return undefined;
  if (v === "auto" || v === "none" || v === "required") {
    if (v === "required" && tools.length === 0) throw invalidRequest("tool_choice 'required' needs 'tools'", "tool_choice");
    return { mode: v };
  }
  const c = v as { type?: unknown; name?: unknown };
  if (typeof v === "object" && c.type === "function" && typeof c.name === "string") {
    if (!tools.some((t) => t.name === c.name)) throw invalidRequest(`tool_choice names "${c.name.slice(0, 64)}", which is not in 'tools'`, "tool_choice");
    return { mode: "tool", name: c.name };
  }
  throw invalidRequest('\'tool_choice\' must be "auto", "none", "required" or {type: "function", name}', "tool_choice");
}

/** `text.format`: plain text only (a JSON schema would be promised and not kept by every provider). */
function checkText(v: unknown): void {
  if (v === undefined || v === null) return;
  if (typeof v !== "object" || Array.isArray(v)) throw invalidRequest("'text' must be an object", "text");
  const format = (v as { format?: { type?: unknown } }).format;
  if (format !== undefined && format !== null && format.type !== "text") {
    throw invalidRequest(`'text.format' of type "${String(format.type).slice(0, 40)}" is not supported; only "text" is`, "text.format", "unsupported_parameter");
  }
}
