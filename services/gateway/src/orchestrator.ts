import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { trace } from "@opentelemetry/api";
import type { Config } from "@switchyard/config";
import { cache as cachePb, classifier as classifierPb, common, ledger as ledgerPb, policy as policyPb, provider as providerPb } from "@switchyard/proto";
import type { Logger } from "@switchyard/telemetry";
import { costMicroUsd, type MicroPrice } from "@switchyard/usage/cost";
import { fromProviderError, GatewayError, providerErrorOf } from "./errors.js";
import type { GatewayMetrics } from "./metrics.js";
import { namesModel, type ModelChoice } from "./model-name.js";
import { Batcher } from "./batch.js";
import { PlanCache } from "./plan-cache.js";
import { routeRequestFor } from "./explain.js";
import type { ProviderPreferences } from "./openai/openrouter.js";
import type { ConversationTurn, ToolChoiceSpec, ToolSpec } from "./openai/validate.js";

/** The internal services the gateway calls. */
export interface MeshClients {
  classifier: Client<typeof classifierPb.ClassifierService>;
  policy: Client<typeof policyPb.PolicyService>;
  cache: Client<typeof cachePb.CacheService>;
  provider: Client<typeof providerPb.ProviderService>;
  /** The books (usage records, keys); absent in a mesh without a ledger. */
  ledger?: Client<typeof ledgerPb.LedgerService>;
}

/** Sampling parameters as the client set them. */
export interface Sampling {
  temperature?: number;
  topP?: number;
  maxTokens?: number;
  stop: string[];
  seed?: bigint;
}

/** One completion request, whichever API it came in on. */
export interface CompletionRequest {
  requestId: string;
  tenant: string;
  /** `model` exactly as the client sent it (part of the cache key). */
  requestedModel: string;
  choice: ModelChoice;
  messages: { role: string; content: string; name?: string }[];
  sampling: Sampling;
  qualityTarget?: number;
  costWeight?: number;
  maxOutputMicroUsdPerMtok: bigint;
  /** Highest acceptable input price, micro-dollars per million tokens; unset or 0 = none. */
  maxInputMicroUsdPerMtok?: bigint;
  /** Which providers may serve, in what order (OpenRouter's `provider`; chat API only). */
  providers?: ProviderPreferences;
  cacheMode: "default" | "use" | "bypass";
  /** Functions the model may call (OpenAI API only). */
  tools?: ToolSpec[];
  toolChoice?: ToolChoiceSpec;
  /** The conversation with tool calls and results, when it has any. */
  conversation?: ConversationTurn[];
  /** When the request arrived (performance.now()), for overhead metrics. */
  receivedAt: number;
}

/** Where an answer came from and why. */
export interface RouteTaken {
  provider: string;
  model: string;
  /** "provider/model". */
  id: string;
  tier: string;
  taskType: string;
  reason: string;
  cache: "hit" | "miss" | "bypass";
  /** On a hit: which cache answered. */
  cacheKind?: "exact" | "semantic";
  fallbacks: number;
  /** The price the route was chosen at (what an interrupted answer is charged at). */
  price?: MicroPrice;
}

export interface FinalUsage {
  inputTokens: number;
  outputTokens: number;
  cachedInputTokens: number;
  reasoningTokens: number;
  estimated: boolean;
}

/** The stream of one completion: routed (once, before the first delta), deltas, done. */
export type CompletionEvent =
  | { type: "routed"; route: RouteTaken }
  | { type: "delta"; text: string }
  | { type: "tool_call"; index: number; id: string; name: string; arguments: string }
  | {
      type: "done";
      route: RouteTaken;
      finishReason: string;
      usage: FinalUsage;
      costMicroUsd: bigint;
      /** What a cache hit saved: the stored answer's cost. */
      savedMicroUsd: bigint;
      /** What the same tokens cost on the tenant's baseline model (set by the request's account). */
      baseline?: { model: string; microUsd: bigint };
    };

/** The answer broke after it started streaming: the client must not take it for a whole answer. */
export class StreamInterrupted extends Error {
  constructor(override readonly cause: GatewayError) {
    super(cause.message);
    this.name = "StreamInterrupted";
  }
}

/**
 * Runs one completion across the mesh: cache lookup and classification in parallel, a route plan
 * from the policy, then the provider stream, relayed delta by delta as it arrives. Before the first
 * token a failed route falls back to the next one in the plan; after it, a failure ends the stream
 * as an error. Every internal dependency degrades: a slow or failed cache is a miss, a failed
 * classifier means the middle tier, a failed policy means the last plan it gave for that tier.
 */
export class Orchestrator {
  /** The policy's last plan per (tenant, tier, preferences), for when the policy is down. */
  private readonly lastPlans = new Map<string, policyPb.RoutePlan>();
  /**
   * Lookups and classifications of one moment, each sent as one batch call. A request whose
   * trace is sampled calls alone instead, inside its own span, so its trace shows every hop.
   */
  private readonly lookups: Batcher<cachePb.LookupRequest, cachePb.LookupResponse>;
  private readonly classifications: Batcher<classifierPb.ClassifyRequest, classifierPb.ClassifyBatchResult>;
  /** Answers to store in the cache, sent together (see `store`). */
  private readonly pendingStores: cachePb.StoreRequest[] = [];

  constructor(
    private readonly clients: MeshClients,
    private readonly config: Config,
    private readonly metrics: GatewayMetrics,
    private readonly logger: Logger,
    /** The policy's reusable plans (see PlanCache); drop them when prices or health change. */
    readonly plans: PlanCache = new PlanCache(),
  ) {
    this.lookups = new Batcher(async (requests, timeoutMs) => (await clients.cache.lookupBatch({ requests }, { timeoutMs })).responses, config.cache.lookup_budget_ms);
    this.classifications = new Batcher(async (requests, timeoutMs) => (await clients.classifier.classifyBatch({ requests }, { timeoutMs })).results, 1_000);
  }

  async *complete(req: CompletionRequest, signal: AbortSignal): AsyncGenerator<CompletionEvent> {
    const messages = req.messages.map((m) => create(common.ChatMessageSchema, m));
    const sampling = create(common.SamplingParamsSchema, {
      ...(req.sampling.temperature === undefined ? {} : { temperature: req.sampling.temperature }),
      ...(req.sampling.topP === undefined ? {} : { topP: req.sampling.topP }),
      ...(req.sampling.maxTokens === undefined ? {} : { maxTokens: req.sampling.maxTokens }),
      ...(req.sampling.seed === undefined ? {} : { seed: req.sampling.seed }),
      stop: req.sampling.stop,
    });
    // Answers that may call tools depend on the caller's functions and state: never cached.
    const usesTools = (req.tools?.length ?? 0) > 0 || req.conversation !== undefined;
    const cacheable = !usesTools && this.config.cache.enabled && (req.cacheMode === "use" || (req.cacheMode === "default" && req.sampling.temperature === 0));
    // An answer stored for other model or provider constraints must not be replayed for these.
    const constraints = req.choice.kind === "list" || req.providers ? JSON.stringify([req.choice.kind === "list" ? req.choice.ids : [], req.providers ?? null]) : "";
    const cacheKey = create(cachePb.CacheKeySchema, { tenant: req.tenant, requestedModel: constraints ? `${req.requestedModel} ${constraints}` : req.requestedModel, messages, sampling });

    const [hit, classification] = await Promise.all([
      cacheable ? this.lookup(cacheKey, signal) : Promise.resolve(undefined),
      namesModel(req.choice) ? Promise.resolve(undefined) : this.classify(messages, req.tenant, signal),
    ]);
    if (hit) {
      yield* this.replay(hit);
      return;
    }

    const forcedTier = req.choice.kind === "tier" ? req.choice.tier : undefined;
    const tier = forcedTier ?? classification?.tier ?? this.middleTier();
    const taskType = classification?.taskType ?? "";
    const plan = await this.plan(req, tier, classification, signal);
    const classifyNote = req.choice.kind === "auto" && !classification ? "classifier unavailable, middle tier; " : "";

    let fallbacks = 0;
    let lastError: GatewayError | undefined;
    for (const route of plan.routes) {
      const routeTaken: RouteTaken = {
        provider: route.provider,
        model: route.model,
        id: `${route.provider}/${route.model}`,
        tier: plan.tier,
        taskType,
        reason: classifyNote + plan.reason + (fallbacks > 0 ? `; fell back ${fallbacks} time(s): ${lastError?.message ?? ""}` : ""),
        cache: cacheable ? "miss" : "bypass",
        fallbacks,
        ...(route.price ? { price: route.price } : {}),
      };
      this.metrics.overhead.observe((performance.now() - req.receivedAt) / 1000);
      const stream = this.clients.provider.streamGenerate(
        { provider: route.provider, model: route.model, messages, sampling, requestId: req.requestId, ...toolFields(req) },
        { signal },
      );
      const it = stream[Symbol.asyncIterator]();
      let first: IteratorResult<providerPb.StreamGenerateResponse>;
      try {
        first = await it.next();
        if (first.done) throw new ConnectError("the provider stream ended before any answer", Code.Aborted);
      } catch (err) {
        if (signal.aborted) throw err;
        lastError = fromProviderError(err);
        const detail = err instanceof ConnectError ? providerErrorOf(err) : undefined;
        this.logger.warn("route failed before the first token", { request_id: req.requestId, model: routeTaken.id, error: lastError.message });
        this.metrics.fallbacks.inc({ model: routeTaken.id, code: lastError.code });
        if (detail && !detail.retryable) throw lastError;
        fallbacks++;
        continue;
      }
      yield { type: "routed", route: routeTaken };
      yield* this.relay(first.value, it, route, routeTaken, req, cacheable ? cacheKey : undefined);
      return;
    }
    throw lastError ?? new GatewayError(503, "api_error", "no_route", "no route could serve this request");
  }

  private async *relay(
    first: providerPb.StreamGenerateResponse,
    rest: AsyncIterator<providerPb.StreamGenerateResponse>,
    route: policyPb.Route,
    taken: RouteTaken,
    req: CompletionRequest,
    cacheKey: cachePb.CacheKey | undefined,
  ): AsyncGenerator<CompletionEvent> {
    let text = "";
    let finished = false;
    let event: providerPb.StreamGenerateResponse | undefined = first;
    try {
      while (event) {
        if (event.event.case === "delta") {
          text += event.event.value.text;
          yield { type: "delta", text: event.event.value.text };
        } else if (event.event.case === "toolCall") {
          const call = event.event.value;
          yield { type: "tool_call", index: call.index, id: call.id, name: call.name, arguments: call.arguments };
        } else if (event.event.case === "finish") {
          finished = true;
          const finish = event.event.value;
          const u = finish.usage;
          // No usage at all from the provider: the counts are not known, so say estimated.
          const usage = finalUsage(u, true);
          const price = route.price;
          const cost = costMicroUsd(
            { inputTokens: u?.inputTokens ?? 0n, outputTokens: u?.outputTokens ?? 0n, cachedInputTokens: u?.cachedInputTokens ?? 0n },
            {
              inputMicroUsdPerMtok: price?.inputMicroUsdPerMtok ?? 0n,
              outputMicroUsdPerMtok: price?.outputMicroUsdPerMtok ?? 0n,
              cachedInputMicroUsdPerMtok: price?.cachedInputMicroUsdPerMtok ?? 0n,
            },
          );
          if (cacheKey) this.store(cacheKey, taken, text, finish.finishReason, u, cost);
          yield { type: "done", route: taken, finishReason: finish.finishReason, usage, costMicroUsd: cost, savedMicroUsd: 0n };
          return;
        }
        const next = await rest.next();
        event = next.done ? undefined : next.value;
      }
    } catch (err) {
      throw new StreamInterrupted(fromProviderError(err));
    } finally {
      // Close the provider stream: after its finish event it ends by itself, so read that end
      // (a clean close on every transport); if the client left mid-answer, cancel it. An iterator
      // left open would hold its HTTP/2 stream and never end its span.
      if (finished) void drain(rest);
      else void rest.return?.().catch(() => {});
    }
    throw new StreamInterrupted(new GatewayError(502, "upstream_error", "upstream_stream_broken", "the provider stream ended without finishing the answer"));
  }

  private async *replay(found: cachePb.LookupResponse): AsyncGenerator<CompletionEvent> {
    const hit = found.completion!;
    const semantic = found.kind === cachePb.HitKind.SEMANTIC;
    const route: RouteTaken = {
      provider: hit.provider,
      model: hit.model,
      id: `${hit.provider}/${hit.model}`,
      tier: hit.tier,
      taskType: "",
      reason: semantic ? `served from the semantic cache (similarity ${found.similarity.toFixed(3)})` : "served from the exact cache",
      cache: "hit",
      cacheKind: semantic ? "semantic" : "exact",
      fallbacks: 0,
    };
    yield { type: "routed", route };
    for (const piece of hit.content.match(/\S+\s*|\s+/g) ?? []) yield { type: "delta", text: piece };
    const u = hit.usage;
    yield {
      type: "done",
      route,
      finishReason: hit.finishReason,
      usage: finalUsage(u, false),
      costMicroUsd: 0n,
      savedMicroUsd: hit.costMicroUsd,
    };
  }

  private async lookup(key: cachePb.CacheKey, signal: AbortSignal): Promise<cachePb.LookupResponse | undefined> {
    try {
      const budget = this.config.cache.lookup_budget_ms;
      const res = traced() ? await this.clients.cache.lookup({ key }, { signal, timeoutMs: budget }) : await this.lookups.call(create(cachePb.LookupRequestSchema, { key }), signal, budget);
      return res.hit && res.completion ? res : undefined;
    } catch (err) {
      this.metrics.dependencyFailures.inc({ dependency: "cache" });
      this.logger.debug("cache lookup failed; treating as a miss", { err });
      return undefined;
    }
  }

  private store(key: cachePb.CacheKey, route: RouteTaken, content: string, finishReason: string, usage: common.Usage | undefined, cost: bigint): void {
    this.pendingStores.push(
      create(cachePb.StoreRequestSchema, {
        key,
        completion: { provider: route.provider, model: route.model, tier: route.tier, content, finishReason, usage, costMicroUsd: cost, createdAtUnixMs: BigInt(Date.now()) },
      }),
    );
    // Stores are off every request's path: those of one moment leave together, in one call.
    if (this.pendingStores.length >= 64) this.flushStores();
    else if (this.pendingStores.length === 1) setImmediate(() => this.flushStores());
  }

  private flushStores(): void {
    const entries = this.pendingStores.splice(0);
    if (entries.length === 0) return;
    this.clients.cache.storeBatch({ entries }, { timeoutMs: 1_000 }).catch((err: unknown) => {
      this.metrics.dependencyFailures.inc({ dependency: "cache" });
      this.logger.debug("cache store failed", { err, entries: entries.length });
    });
  }

  private async classify(messages: common.ChatMessage[], tenant: string, signal: AbortSignal): Promise<classifierPb.ClassifyResponse | undefined> {
    try {
      if (traced()) return await this.clients.classifier.classify({ messages, tenant }, { signal, timeoutMs: 1_000 });
      const result = await this.classifications.call(create(classifierPb.ClassifyRequestSchema, { messages, tenant }), signal);
      if (!result.response) throw new ConnectError(result.error || "the classifier gave no answer", Code.InvalidArgument);
      return result.response;
    } catch (err) {
      if (signal.aborted) throw err;
      this.metrics.dependencyFailures.inc({ dependency: "classifier" });
      this.logger.warn("classifier unavailable; using the middle tier", { err });
      return undefined;
    }
  }

  private async plan(req: CompletionRequest, tier: string, c: classifierPb.ClassifyResponse | undefined, signal: AbortSignal): Promise<policyPb.RoutePlan> {
    // A model the client named (pinned or listed) is planned afresh every time, never reused.
    const pinned = namesModel(req.choice);
    // A plan answers one tenant and one set of preferences: reuse it only for the same.
    const planKey = JSON.stringify([
      req.tenant,
      tier,
      req.qualityTarget ?? null,
      req.costWeight ?? null,
      String(req.maxOutputMicroUsdPerMtok),
      String(req.maxInputMicroUsdPerMtok ?? 0n),
      req.providers ?? null,
    ]);
    const predicted = c?.predictedQuality ?? {};
    const inputTokens = Number(c?.estimatedInputTokens ?? 0n);
    // Expected cost orders the candidates: plans are reused across requests of about the same
    // size (input tokens in steps of about 19 %) and the same max_tokens.
    const reuseKey = pinned ? "" : `${planKey}|${inputTokens > 0 ? Math.round(Math.log2(inputTokens) * 4) : 0}|${req.sampling.maxTokens ?? 0}`;
    if (!pinned) {
      const known = this.plans.get(reuseKey, predicted);
      if (known) {
        this.metrics.planReuse.inc({ outcome: "hit" });
        return known;
      }
      // Requests alike that miss together (at start, after the tables changed) share one policy
      // call instead of each making their own; a plan that may not be reused (a capped tenant's)
      // sends each waiter to the policy after all.
      const flight = this.plans.inFlight(reuseKey, predicted);
      if (flight) {
        const shared = await flight.catch(() => undefined);
        if (shared?.reusable) {
          this.metrics.planReuse.inc({ outcome: "shared" });
          return shared;
        }
      }
      this.metrics.planReuse.inc({ outcome: "miss" });
      const call = this.askPolicy(req, tier, c, signal, pinned, planKey, reuseKey, predicted);
      this.plans.fly(reuseKey, predicted, call);
      return call;
    }
    return this.askPolicy(req, tier, c, signal, pinned, planKey, reuseKey, predicted);
  }

  private async askPolicy(
    req: CompletionRequest,
    tier: string,
    c: classifierPb.ClassifyResponse | undefined,
    signal: AbortSignal,
    pinned: boolean,
    planKey: string,
    reuseKey: string,
    predicted: Record<string, number>,
  ): Promise<policyPb.RoutePlan> {
    try {
      const res = await this.clients.policy.route(routeRequestFor(req, tier, c), { signal, timeoutMs: 1_000 });
      const plan = res.plan;
      if (!plan || plan.routes.length === 0) throw new GatewayError(503, "api_error", "no_route", "the policy returned no route");
      if (!pinned) {
        this.plans.put(reuseKey, predicted, plan);
        this.lastPlans.delete(planKey);
        this.lastPlans.set(planKey, plan);
        // Bounded: preferences vary per request; the oldest plan goes first.
        if (this.lastPlans.size > 1_000) this.lastPlans.delete(this.lastPlans.keys().next().value!);
      }
      return plan;
    } catch (err) {
      if (err instanceof GatewayError || signal.aborted) throw err;
      const ce = ConnectError.from(err);
      const param = req.choice.kind === "list" ? "models" : "model";
      if (ce.code === Code.NotFound) throw new GatewayError(404, "not_found_error", "model_not_found", ce.rawMessage, param);
      // The request's own model list or provider preferences exclude every model: as asked, it cannot be served.
      if (ce.code === Code.InvalidArgument) throw new GatewayError(400, "invalid_request_error", "unsatisfiable_preferences", ce.rawMessage, req.choice.kind === "list" ? "models" : "provider");
      if (ce.code === Code.FailedPrecondition) throw new GatewayError(503, "api_error", "no_route", ce.rawMessage);
      this.metrics.dependencyFailures.inc({ dependency: "policy" });
      const last = pinned ? undefined : this.lastPlans.get(planKey);
      if (last) {
        this.logger.warn("policy unavailable; using its last plan for this tier", { tier });
        return create(policyPb.RoutePlanSchema, { ...last, reason: `policy unavailable, last known plan: ${last.reason}` });
      }
      throw new GatewayError(503, "api_error", "policy_unavailable", "the routing policy is unavailable and no earlier plan is known for this tier");
    }
  }

  private middleTier(): string {
    return this.config.tiers[Math.floor((this.config.tiers.length - 1) / 2)]!.name;
  }
}

/** Whether the current request's trace is recorded (then its calls are made alone, in its span). */
function traced(): boolean {
  return trace.getActiveSpan()?.isRecording() === true;
}

/** Token counts for the client; `estimatedIfMissing` says what to report when there were none. */
function finalUsage(u: common.Usage | undefined, estimatedIfMissing: boolean): FinalUsage {
  return {
    inputTokens: Number(u?.inputTokens ?? 0n),
    outputTokens: Number(u?.outputTokens ?? 0n),
    cachedInputTokens: Number(u?.cachedInputTokens ?? 0n),
    reasoningTokens: Number(u?.reasoningTokens ?? 0n),
    estimated: u?.estimated ?? estimatedIfMissing,
  };
}

/** Reads a stream to its end (bounded: a stream that does not end within a second is cancelled). */
async function drain(it: AsyncIterator<unknown>): Promise<void> {
  const timer = setTimeout(() => void it.return?.().catch(() => {}), 1_000);
  try {
    while (!(await it.next()).done);
  } catch {
    // the stream failed after the answer was complete: nothing is lost
  } finally {
    clearTimeout(timer);
  }
}

/** Tools, tool choice and the tool-aware conversation in the provider's terms. */
function toolFields(req: CompletionRequest): Pick<MessageInitShape<typeof providerPb.StreamGenerateRequestSchema>, "tools" | "toolChoice" | "conversation"> {
  if (!req.tools?.length && !req.conversation) return {};
  const c = req.toolChoice;
  const mode = {
    auto: providerPb.ToolChoiceMode.AUTO,
    none: providerPb.ToolChoiceMode.NONE,
    required: providerPb.ToolChoiceMode.REQUIRED,
    tool: providerPb.ToolChoiceMode.TOOL,
  };
  return {
    tools: (req.tools ?? []).map((t) => create(providerPb.ToolSchema, t)),
    ...(c ? { toolChoice: create(providerPb.ToolChoiceSchema, { mode: mode[c.mode], toolName: c.mode === "tool" ? c.name : "" }) } : {}),
    conversation: (req.conversation ?? []).map((t) =>
      create(providerPb.ProviderMessageSchema, {
        role: t.role,
        content: t.content,
        name: t.name ?? "",
        toolCallId: t.toolCallId,
        toolCalls: t.toolCalls.map((tc) => ({ id: tc.id, name: tc.name, argumentsJson: tc.argumentsJson })),
      }),
    ),
  };
}
