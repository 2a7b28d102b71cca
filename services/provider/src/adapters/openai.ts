import { countChatTokens, countTokens } from "@switchyard/usage";
import { parseSse } from "./sse.js";
import {
  ErrorKind,
  ProviderFailure,
  sanitiseUpstreamText,
  type GenerateInput,
  type ProviderAdapter,
  type ProviderEvent,
  type TokenUsage,
} from "./types.js";
import { kindForStatus, readLimited, retryAfterMs, Upstream } from "./upstream.js";

export interface OpenAiAdapterOptions {
  /** Provider name as configured, for messages. */
  name: string;
  baseUrl: string;
  apiKey: string | undefined;
  maxSockets: number;
}

interface ChatChunk {
  model?: string;
  choices?: { delta?: { content?: string | null }; finish_reason?: string | null }[];
  usage?: {
    prompt_tokens?: number;
    completion_tokens?: number;
    prompt_tokens_details?: { cached_tokens?: number } | null;
    completion_tokens_details?: { reasoning_tokens?: number } | null;
  } | null;
  error?: { message?: string; type?: string; code?: string | number };
}

/**
 * Chat Completions over any OpenAI-compatible base URL (OpenAI, Together, Fireworks, Groq,
 * DeepInfra, OpenRouter, vLLM, Ollama). Always streams upstream, asking for usage in the final
 * chunk; servers that ignore `stream_options` get their usage counted by our tokenizer.
 */
export class OpenAiAdapter implements ProviderAdapter {
  private readonly upstream: Upstream;

  constructor(private readonly options: OpenAiAdapterOptions) {
    this.upstream = new Upstream({ baseUrl: options.baseUrl, maxSockets: options.maxSockets, label: options.name });
  }

  warm(): Promise<void> {
    return this.upstream.warm(Math.min(4, this.options.maxSockets));
  }

  close(): void {
    this.upstream.close();
  }

  async *stream(input: GenerateInput, signal: AbortSignal): AsyncGenerator<ProviderEvent> {
    const body: Record<string, unknown> = {
      model: input.model,
      messages: input.messages.map((m) => (m.name ? { role: m.role, content: m.content, name: m.name } : { role: m.role, content: m.content })),
      stream: true,
      stream_options: { include_usage: true },
    };
    if (input.temperature !== undefined) body.temperature = input.temperature;
    if (input.topP !== undefined) body.top_p = input.topP;
    if (input.maxTokens !== undefined) body.max_tokens = input.maxTokens;
    if (input.stop.length > 0) body.stop = input.stop;
    if (input.seed !== undefined) body.seed = Number(input.seed);
    const headers: Record<string, string> = { "content-type": "application/json", accept: "text/event-stream" };
    if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`;

    const res = await this.upstream.request("chat/completions", { method: "POST", headers, body: JSON.stringify(body), signal });
    const name = this.options.name;
    const contentType = String(res.headers["content-type"] ?? "");
    if (res.status < 200 || res.status >= 300) {
      const text = await readLimited(res.body).catch(() => "");
      throw this.httpFailure(res.status, text, contentType, retryAfterMs(res.headers));
    }
    if (!contentType.includes("text/event-stream")) {
      const text = await readLimited(res.body).catch(() => "");
      throw this.bodyFailure(text, contentType);
    }

    let text = "";
    let finishReason = "";
    let responseModel = input.model;
    let usage: TokenUsage | undefined;
    let done = false;
    const events = parseSse(res.body);
    try {
      for (;;) {
        const next = await events.next();
        if (next.done) break;
        const data = next.value.data;
        if (data === "[DONE]") {
          done = true;
          break;
        }
        let chunk: ChatChunk;
        try {
          chunk = JSON.parse(data) as ChatChunk;
        } catch {
          throw new ProviderFailure(ErrorKind.MALFORMED, `${name}: the provider sent a stream event that is not JSON`);
        }
        if (chunk.error) {
          throw new ProviderFailure(
            ErrorKind.STREAM_BROKEN,
            `${name}: the provider reported an error mid-stream: ${sanitiseUpstreamText(chunk.error.message ?? "unknown error", this.secrets())}`,
          );
        }
        if (chunk.model) responseModel = chunk.model;
        if (chunk.usage) usage = toUsage(chunk.usage);
        for (const choice of chunk.choices ?? []) {
          const piece = choice.delta?.content;
          if (piece) {
            text += piece;
            yield { type: "delta", text: piece };
          }
          if (choice.finish_reason) finishReason = choice.finish_reason;
        }
      }
    } catch (err) {
      if (err instanceof ProviderFailure) throw err;
      if (signal.aborted && signal.reason instanceof ProviderFailure) throw signal.reason;
      throw new ProviderFailure(ErrorKind.STREAM_BROKEN, `${name}: the connection broke mid-stream`);
    }
    if (!done) {
      throw new ProviderFailure(ErrorKind.STREAM_BROKEN, `${name}: the stream ended without its [DONE] terminator`);
    }
    yield {
      type: "finish",
      finishReason: finishReason || "stop",
      responseModel,
      usage: usage ?? {
        inputTokens: countChatTokens(input.messages),
        outputTokens: countTokens(text),
        cachedInputTokens: 0,
        reasoningTokens: 0,
        estimated: true,
      },
    };
  }

  private secrets(): string[] {
    return this.options.apiKey ? [this.options.apiKey] : [];
  }

  private httpFailure(status: number, body: string, contentType: string, retryAfter: number): ProviderFailure {
    const kind = kindForStatus(status);
    const name = this.options.name;
    // An auth failure's body may quote the key back; say nothing of it.
    if (kind === ErrorKind.AUTH) return new ProviderFailure(kind, `${name}: the provider rejected our credentials (HTTP ${status})`, status);
    const detail = contentType.includes("json") ? errorMessageOf(body) : "";
    const suffix = detail ? `: ${sanitiseUpstreamText(detail, this.secrets())}` : "";
    return new ProviderFailure(kind, `${name}: HTTP ${status}${suffix}`, status, retryAfter);
  }

  private bodyFailure(body: string, contentType: string): ProviderFailure {
    const name = this.options.name;
    if (contentType.includes("json")) {
      const detail = errorMessageOf(body);
      if (detail) return new ProviderFailure(ErrorKind.OVERLOADED, `${name}: HTTP 200 carrying an error: ${sanitiseUpstreamText(detail, this.secrets())}`, 200);
    }
    const what = contentType.includes("html") ? "an HTML page" : `"${contentType || "no content type"}"`;
    return new ProviderFailure(ErrorKind.MALFORMED, `${name}: expected an event stream, got ${what}`, 200);
  }
}

function toUsage(u: NonNullable<ChatChunk["usage"]>): TokenUsage {
  return {
    inputTokens: u.prompt_tokens ?? 0,
    outputTokens: u.completion_tokens ?? 0,
    cachedInputTokens: u.prompt_tokens_details?.cached_tokens ?? 0,
    reasoningTokens: u.completion_tokens_details?.reasoning_tokens ?? 0,
    estimated: false,
  };
}

function errorMessageOf(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: { message?: string } | string; message?: string };
    if (typeof parsed.error === "string") return parsed.error;
    return parsed.error?.message ?? parsed.message ?? "";
  } catch {
    return "";
  }
}
