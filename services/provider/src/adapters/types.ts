import { provider as pb } from "@switchyard/proto";

export const ErrorKind = pb.ErrorKind;
export type ErrorKind = pb.ErrorKind;

/** One turn of the conversation as adapters see it. */
export interface ChatTurn {
  role: string;
  content: string;
  name?: string;
}

/** What an adapter is asked to generate. */
export interface GenerateInput {
  model: string;
  messages: ChatTurn[];
  temperature?: number;
  topP?: number;
  maxTokens?: number;
  stop: string[];
  seed?: bigint;
}

/** Token usage as the provider reported it (or as we counted it, then `estimated`). */
export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
  cachedInputTokens: number;
  reasoningTokens: number;
  estimated: boolean;
}

/** The common chunk stream every adapter produces: deltas in order, then exactly one finish. */
export type ProviderEvent =
  | { type: "delta"; text: string }
  | { type: "finish"; finishReason: string; usage: TokenUsage; responseModel: string };

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
