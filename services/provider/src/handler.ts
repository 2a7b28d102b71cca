import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { provider as pb } from "@switchyard/proto";
import type { Logger } from "@switchyard/telemetry";
import { ErrorKind, ProviderFailure, type GenerateInput, type ProviderAdapter } from "./adapters/types.js";
import { asFailure, toConnectError } from "./errors.js";
import type { HealthTracker } from "./health.js";
import type { ConcurrencyLimiter } from "./limiter.js";

/** A configured, active provider as the handler uses it. */
export interface RunningProvider {
  name: string;
  adapter: ProviderAdapter;
  limiter: ConcurrencyLimiter;
  models: ReadonlySet<string>;
  firstTokenTimeoutMs: number;
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

    const controller = new AbortController();
    const onClientGone = () => controller.abort(new ProviderFailure(ErrorKind.TIMEOUT, `${label}: the caller went away`));
    ctx.signal.addEventListener("abort", onClientGone, { once: true });
    const started = performance.now();
    let ttftMs: number | undefined;
    let release: (() => void) | undefined;
    let failure: ProviderFailure | undefined;
    const timeoutMs = req.firstTokenTimeoutMs > 0 ? req.firstTokenTimeoutMs : running.firstTokenTimeoutMs;
    const firstTokenTimer = setTimeout(
      () => controller.abort(new ProviderFailure(ErrorKind.TIMEOUT, `${label}: no token within ${timeoutMs} ms`)),
      timeoutMs,
    );
    try {
      release = await running.limiter.acquire(controller.signal);
      this.health.started(running.name, req.model);
      for await (const event of running.adapter.stream(toInput(req), controller.signal)) {
        if (ttftMs === undefined) {
          ttftMs = performance.now() - started;
          clearTimeout(firstTokenTimer);
        }
        if (event.type === "delta") {
          yield create(pb.StreamGenerateResponseSchema, { event: { case: "delta", value: { text: event.text } } });
        } else {
          const u = event.usage;
          yield create(pb.StreamGenerateResponseSchema, {
            event: {
              case: "finish",
              value: {
                finishReason: event.finishReason,
                responseModel: event.responseModel,
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
    } catch (err) {
      const reason = controller.signal.aborted ? (controller.signal.reason as unknown) : undefined;
      failure = reason instanceof ProviderFailure ? reason : asFailure(err, label);
      if (failure.kind === ErrorKind.UNSPECIFIED) this.logger.error("adapter failed unexpectedly", { model: label, err });
      throw toConnectError(failure);
    } finally {
      clearTimeout(firstTokenTimer);
      ctx.signal.removeEventListener("abort", onClientGone);
      if (release) {
        release();
        const clientGone = ctx.signal.aborted;
        this.health.finished(running.name, req.model, {
          ok: failure === undefined && !clientGone,
          ttftMs,
          totalMs: performance.now() - started,
          countsAgainstProvider: failure !== undefined && !clientGone && failure.kind !== ErrorKind.BAD_REQUEST,
        });
      }
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

function toInput(req: pb.StreamGenerateRequest): GenerateInput {
  const s = req.sampling;
  const input: GenerateInput = {
    model: req.model,
    messages: req.messages.map((m) => (m.name ? { role: m.role, content: m.content, name: m.name } : { role: m.role, content: m.content })),
    stop: s?.stop ?? [],
  };
  if (s?.temperature !== undefined) input.temperature = s.temperature;
  if (s?.topP !== undefined) input.topP = s.topP;
  if (s?.maxTokens !== undefined) input.maxTokens = s.maxTokens;
  if (s?.seed !== undefined) input.seed = s.seed;
  return input;
}
