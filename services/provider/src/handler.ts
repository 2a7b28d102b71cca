import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { context, SpanKind, SpanStatusCode, trace, type Span } from "@opentelemetry/api";
import { provider as pb } from "@switchyard/proto";
import { tracer, type Logger } from "@switchyard/telemetry";
import { ErrorKind, ProviderFailure, type GenerateInput, type ProviderAdapter, type ProviderEvent } from "./adapters/types.js";
import { asFailure, toConnectError } from "./errors.js";
import type { HealthTracker } from "./health.js";
import type { ConcurrencyLimiter, RateLimiter } from "./limiter.js";
import { generateInput } from "./request.js";
import type { RetryAfter } from "./retry-after.js";

/** A configured, active provider as the handler uses it. */
export interface RunningProvider {
  name: string;
  /** `gen_ai.system` for spans: "openai", "anthropic", "gcp.gemini", "switchyard.simulator". */
  system: string;
  adapter: ProviderAdapter;
  limiter: ConcurrencyLimiter;
  /** Token bucket from `requests_per_second`; none = no rate limit. */
  rateLimiter?: RateLimiter;
  models: ReadonlySet<string>;
  firstTokenTimeoutMs: number;
  /** Waits the upstream asked for with retry-after; none = not tracked. */
  retryAfter?: RetryAfter;
}

/** `switchyard.provider.v1.ProviderService`: streams completions from upstream models. */
export class ProviderHandler implements ServiceImpl<typeof pb.ProviderService> {
  constructor(
    private readonly providers: ReadonlyMap<string, RunningProvider>,
    private readonly health: HealthTracker,
    private readonly logger: Logger,
  ) {}

  async *streamGenerate(req: pb.StreamGenerateRequest, ctx: HandlerContext): AsyncGenerator<pb.StreamGenerateResponse> {
    const running = this.providers.get(req.provider);
    const label = `${req.provider}/${req.model}`;
    if (!running) throw toConnectError(new ProviderFailure(ErrorKind.UNKNOWN_MODEL, `no active provider "${req.provider}"`));
    if (!running.models.has(req.model)) throw toConnectError(new ProviderFailure(ErrorKind.UNKNOWN_MODEL, `provider "${req.provider}" has no model "${req.model}"`));
    let input: GenerateInput;
    try {
      input = generateInput(req);
    } catch (err) {
      throw toConnectError(asFailure(err, label));
    }
    // The upstream said when to come back: until then, fail at once so the gateway falls back.
    const wait = running.retryAfter?.remaining(req.model) ?? 0;
    if (wait > 0) throw toConnectError(running.retryAfter!.refusal(label, wait));

    const controller = new AbortController();
    const onClientGone = () => controller.abort(new ProviderFailure(ErrorKind.TIMEOUT, `${label}: the caller went away`));
    ctx.signal.addEventListener("abort", onClientGone, { once: true });
    const started = performance.now();
    let ttftMs: number | undefined;
    /** Set when the finish event went out: the answer is complete whatever the caller does next. */
    let completedMs: number | undefined;
    let release: (() => void) | undefined;
    let failure: ProviderFailure | undefined;
    const timeoutMs = req.firstTokenTimeoutMs > 0 ? req.firstTokenTimeoutMs : running.firstTokenTimeoutMs;
    // The wait for capacity counts against the first-token deadline, and so does the caller's own.
    const callerMs = ctx.timeoutMs();
    const deadlineAt = started + Math.min(timeoutMs, callerMs ?? Number.POSITIVE_INFINITY);
    const firstTokenTimer = setTimeout(
      () => controller.abort(new ProviderFailure(ErrorKind.TIMEOUT, `${label}: no token within ${timeoutMs} ms`)),
      timeoutMs,
    );
    // No span when the caller's trace is not sampled: it would be dropped, and entering its
    // context for every streamed event costs more than the rest of the relay.
    const span = trace.getActiveSpan()?.isRecording() === false ? undefined : upstreamSpan(running, input);
    const spanContext = span ? trace.setSpan(context.active(), span) : undefined;
    let settled = false;
    // Ends the call's bookkeeping once: the slot, the span, the health sample. Runs as soon as the
    // answer is complete, not when the caller finally closes the stream: over an in-process
    // transport a caller that stops reading never resumes this generator, and the slot would leak.
    const settle = () => {
      if (settled) return;
      settled = true;
      span?.end();
      clearTimeout(firstTokenTimer);
      ctx.signal.removeEventListener("abort", onClientGone);
      if (release) {
        release();
        // The gateway stops reading once it has the finish event: that is a complete answer, not a caller gone.
        const clientGone = ctx.signal.aborted && completedMs === undefined;
        this.health.finished(running.name, req.model, {
          ok: completedMs !== undefined && failure === undefined,
          ttftMs,
          totalMs: completedMs ?? performance.now() - started,
          countsAgainstProvider: failure !== undefined && !clientGone && failure.kind !== ErrorKind.BAD_REQUEST,
        });
      }
    };
    try {
      await running.rateLimiter?.acquire(controller.signal, deadlineAt);
      release = await running.limiter.acquire(controller.signal);
      this.health.started(running.name, req.model);
      const events = spanContext
        ? context.with(spanContext, () => running.adapter.stream(input, controller.signal)[Symbol.asyncIterator]())
        : running.adapter.stream(input, controller.signal)[Symbol.asyncIterator]();
      for (;;) {
        const next = spanContext ? await context.with(spanContext, () => events.next()) : await events.next();
        if (next.done) break;
        const event = next.value;
        if (ttftMs === undefined) {
          ttftMs = performance.now() - started;
          clearTimeout(firstTokenTimer);
          span?.setAttribute("switchyard.time_to_first_token_ms", Math.round(ttftMs));
        }
        if (event.type === "finish") {
          completedMs = performance.now() - started;
          if (span) annotateFinish(span, event);
          settle();
        }
        yield toResponse(event);
      }
    } catch (err) {
      const reason = controller.signal.aborted ? (controller.signal.reason as unknown) : undefined;
      failure = err instanceof ProviderFailure ? err : reason instanceof ProviderFailure ? reason : asFailure(err, label);
      running.retryAfter?.note(req.model, failure);
      if (failure.kind === ErrorKind.UNSPECIFIED) this.logger.error("adapter failed unexpectedly", { model: label, err });
      span?.setStatus({ code: SpanStatusCode.ERROR, message: failure.message });
      span?.setAttribute("error.type", ErrorKind[failure.kind] ?? "UNSPECIFIED");
      throw toConnectError(failure);
    } finally {
      settle();
    }
  }

  getHealth(): pb.GetHealthResponse {
    return create(pb.GetHealthResponseSchema, {
      models: this.health.snapshot().map((o) => ({
        provider: o.provider,
        model: o.model,
        ewmaTtftMs: o.ewmaTtftMs,
        ewmaTotalMs: o.ewmaTotalMs,
        errorRate: o.errorRate,
        inFlight: o.inFlight,
        consecutiveFailures: o.consecutiveFailures,
        requests: BigInt(o.requests),
        observedAtUnixMs: BigInt(o.observedAtMs),
      })),
    });
  }
}

/**
 * The upstream call as an OpenTelemetry GenAI client span ("chat <model>"). No prompt or answer
 * text goes on it.
 */
function upstreamSpan(running: RunningProvider, input: GenerateInput): Span {
  const attributes: Record<string, string | number> = {
    "gen_ai.operation.name": "chat",
    "gen_ai.system": running.system,
    "gen_ai.request.model": input.model,
    "switchyard.provider": running.name,
  };
  if (input.temperature !== undefined) attributes["gen_ai.request.temperature"] = input.temperature;
  if (input.topP !== undefined) attributes["gen_ai.request.top_p"] = input.topP;
  if (input.maxTokens !== undefined) attributes["gen_ai.request.max_tokens"] = input.maxTokens;
  return tracer().startSpan(`chat ${input.model}`, { kind: SpanKind.CLIENT, attributes });
}

function annotateFinish(span: Span, event: Extract<ProviderEvent, { type: "finish" }>): void {
  span.setAttributes({
    "gen_ai.response.model": event.responseModel,
    "gen_ai.response.finish_reasons": [event.finishReason],
    "gen_ai.usage.input_tokens": event.usage.inputTokens,
    "gen_ai.usage.output_tokens": event.usage.outputTokens,
    "switchyard.usage.cached_input_tokens": event.usage.cachedInputTokens,
    "switchyard.usage.reasoning_tokens": event.usage.reasoningTokens,
    "switchyard.usage.estimated": event.usage.estimated,
  });
}

function toResponse(event: ProviderEvent): pb.StreamGenerateResponse {
  switch (event.type) {
    case "delta":
      return create(pb.StreamGenerateResponseSchema, { event: { case: "delta", value: { text: event.text } } });
    case "tool_call":
      return create(pb.StreamGenerateResponseSchema, {
        event: { case: "toolCall", value: { index: event.index, id: event.id, name: event.name, arguments: event.arguments } },
      });
    case "finish": {
      const u = event.usage;
      return create(pb.StreamGenerateResponseSchema, {
        event: {
          case: "finish",
          value: {
            finishReason: event.finishReason,
            responseModel: event.responseModel,
            cacheWriteInputTokens: BigInt(u.cacheWriteInputTokens),
            usage: {
              inputTokens: BigInt(u.inputTokens),
              outputTokens: BigInt(u.outputTokens),
              cachedInputTokens: BigInt(u.cachedInputTokens),
              reasoningTokens: BigInt(u.reasoningTokens),
              estimated: u.estimated,
            },
          },
        },
      });
    }
  }
}
