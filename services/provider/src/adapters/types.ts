import { provider as pb } from "@switchyard/proto";

export const ErrorKind = pb.ErrorKind;
export type ErrorKind = pb.ErrorKind;

/** A complete tool call the model made, as carried in conversation history. */
export interface ToolCallTurn {
  id: string;
  name: string;
  /** The arguments object as JSON text. */
  argumentsJson: string;
}

/** One turn of the conversation as adapters see it. */
export interface ChatTurn {
  /** "system", "user", "assistant" or "tool" ("developer" reads as "system" where the API has none). */
  role: string;
  content: string;
  name?: string;
  /** On assistant turns: the calls the model made. */
  toolCalls?: ToolCallTurn[];
  /** On tool turns: the call this result answers. */
  toolCallId?: string;
}

/** A function the model may call. */
export interface ToolSpec {
  name: string;
  description: string;
  /** JSON Schema of the arguments object; undefined = no arguments. */
  parameters?: Record<string, unknown>;
}

/** How the model may use the tools; absent = the provider default. */
export type ToolChoice = { mode: "auto" } | { mode: "none" } | { mode: "required" } | { mode: "tool"; name: string };

/** What an adapter is asked to generate. */
export interface GenerateInput {
  model: string;
  messages: ChatTurn[];
  temperature?: number;
  topP?: number;
  maxTokens?: number;
  stop: string[];
  seed?: bigint;
  tools: ToolSpec[];
  toolChoice?: ToolChoice;
}

/** Token usage as the provider reported it (or as we counted it, then `estimated`). */
export interface TokenUsage {
  /** Every input token, cached or not. */
  inputTokens: number;
  /** Every output token, reasoning included. */
  outputTokens: number;
  /** Input tokens read from the provider's prompt cache (subset of inputTokens). */
  cachedInputTokens: number;
  /** Input tokens written to the provider's prompt cache (subset of inputTokens; Anthropic). */
  cacheWriteInputTokens: number;
  /** Reasoning ("thinking") tokens (subset of outputTokens) where the provider reports them. */
  reasoningTokens: number;
  estimated: boolean;
}

/** OpenAI's finish reasons, which every adapter maps its provider's reasons onto. */
export type FinishReason = "stop" | "length" | "content_filter" | "tool_calls";

/**
 * The common chunk stream every adapter produces: text deltas and tool-call fragments in the
 * order the upstream sent them, then exactly one finish. A tool call's first fragment carries its
 * id and name; `arguments` fragments of the same `index` concatenate to the arguments JSON.
 */
export type ProviderEvent =
  | { type: "delta"; text: string }
  | { type: "tool_call"; index: number; id: string; name: string; arguments: string }
  | { type: "finish"; finishReason: FinishReason; usage: TokenUsage; responseModel: string };

/** Adapter for one provider kind. Implementations throw ProviderFailure, nothing else. */
export interface ProviderAdapter {
  stream(input: GenerateInput, signal: AbortSignal): AsyncIterable<ProviderEvent>;
  /** Opens connections ahead of traffic, where the adapter has any. */
  warm?(): Promise<void>;
  close?(): void;
}

/** Whether trying another route makes sense after this kind of failure. */
export function isRetryable(kind: ErrorKind): boolean {
  return kind !== ErrorKind.BAD_REQUEST;
}

/**
 * A typed upstream failure. `message` is already safe to show a client: no key, no upstream URL,
 * no raw body beyond a short sanitised excerpt.
 */
export class ProviderFailure extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly upstreamStatus = 0,
    readonly retryAfterMs = 0,
  ) {
    super(message);
    this.name = "ProviderFailure";
  }
}

const SECRETISH = [
  /\b(sk|pk|rk)-[A-Za-z0-9_-]{8,}/g, // OpenAI-style keys
  /\bsk-ant-[A-Za-z0-9_-]{8,}/g,
  /\bAIza[0-9A-Za-z_-]{20,}/g, // Google API keys
  /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi,
  /\b[A-Za-z0-9_-]{32,}\b/g, // long opaque tokens
  /https?:\/\/[^\s"'<>]+/g, // upstream URLs (may carry keys in query strings)
];

/**
 * Makes upstream error text safe for a client: strips anything that looks like a credential or a
 * URL, removes the given secrets verbatim, collapses whitespace, truncates.
 */
export function sanitiseUpstreamText(text: string, secrets: readonly string[] = [], max = 200): string {
  let out = text;
  for (const s of secrets) if (s.length >= 4) out = out.split(s).join("[redacted]");
  for (const re of SECRETISH) out = out.replace(re, "[redacted]");
  out = out.replace(/\s+/g, " ").trim();
  return out.length > max ? `${out.slice(0, max)}…` : out;
}
