import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { trace } from "@opentelemetry/api";
import { classifier as pb } from "@switchyard/proto";
import { extractFeatures, normalisePrompt, tierFor, type RouterModel, type Tier } from "@switchyard/router";

/** Counters the handler reports to; the composition root binds them to metrics. */
export interface ClassifierCounters {
  decision(cached: boolean): void;
  tier(tier: string, taskType: string): void;
}

/**
 * `switchyard.classifier.v1.ClassifierService`: the learned router in process, no network on the
 * hot path. Frequent prompts skip feature extraction through a routing-decision cache keyed by the
 * tenant and the normalised prompt: an answer says whether it came from the cache
 * (`decisionCached`), so a cache shared by tenants would tell one tenant which prompts another
 * sent. Each tenant sees only its own entries (one LRU bound over all of them).
 */
export class ClassifierHandler implements ServiceImpl<typeof pb.ClassifierService> {
  private readonly decisions = new Map<string, pb.ClassifyResponse>();

  constructor(
    private readonly router: RouterModel,
    private readonly tiers: readonly Tier[],
    private readonly decisionCacheEntries: number,
    private readonly counters: ClassifierCounters,
    /** Model names whose predicted quality is returned; undefined = every model the router knows. */
    private readonly routable?: ReadonlySet<string>,
  ) {}

  classifyBatch(req: pb.ClassifyBatchRequest): pb.ClassifyBatchResponse {
    return create(pb.ClassifyBatchResponseSchema, {
      results: req.requests.map((r) => {
        try {
          return { response: this.classify(r) };
        } catch (err) {
          return { error: err instanceof ConnectError ? err.rawMessage : "the request could not be classified" };
        }
      }),
    });
  }

  classify(req: pb.ClassifyRequest): pb.ClassifyResponse {
    const response = this.decide(req);
    if (!req.includeFeatures) return response;
    // Only explanations ask: the readable summary of the same extraction the router ran (one more
    // pass over the text, off the completion path).
    const f = extractFeatures(req.messages).summary;
    const features = create(pb.PromptFeaturesSchema, {
      chars: f.chars,
      words: f.words,
      lines: f.lines,
      paragraphs: f.paragraphs,
      turns: f.turns,
      hasSystemPrompt: f.hasSystemPrompt,
      language: f.language,
      digits: f.digits,
      mathOperators: f.mathOperators,
      multipleChoiceOptions: f.multipleChoiceOptions,
      codeMarkers: f.codeMarkers,
      questionWords: f.questionWords,
      reasoningCues: f.reasoningCues,
      hardCues: f.hardCues,
    });
    return create(pb.ClassifyResponseSchema, { ...response, features });
  }

  private decide(req: pb.ClassifyRequest): pb.ClassifyResponse {
    if (req.messages.length === 0) throw new ConnectError("messages must not be empty", Code.InvalidArgument);
    const messages = req.messages.map((m) => ({ role: m.role, content: m.content }));
    const key = this.decisionCacheEntries > 0 ? decisionKey(req.tenant, normalisePrompt(messages)) : "";
    const cached = key ? this.decisions.get(key) : undefined;
    if (cached) {
      // Re-insert: the Map's first key stays the least recently used.
      this.decisions.delete(key);
      this.decisions.set(key, cached);
      this.counters.decision(true);
      this.counters.tier(cached.tier, cached.taskType);
      annotate(cached, true);
      return create(pb.ClassifyResponseSchema, { ...cached, decisionCached: true });
    }
    const p = this.router.predict(messages);
    const response = create(pb.ClassifyResponseSchema, {
      tier: tierFor(p.difficulty, this.tiers),
      difficulty: p.difficulty,
      taskType: p.taskType,
      predictedQuality: this.routable ? pick(p.predicted, this.routable) : p.predicted,
      estimatedInputTokens: BigInt(Math.round(p.estimatedInputTokens)),
      routerVersion: this.router.version,
    });
    if (key) {
      this.decisions.set(key, response);
      if (this.decisions.size > this.decisionCacheEntries) this.decisions.delete(this.decisions.keys().next().value!);
    }
    this.counters.decision(false);
    this.counters.tier(response.tier, response.taskType);
    annotate(response, false);
    return response;
  }
}

/** The cache key of a prompt for a tenant; the length prefix keeps any tenant name from running into the prompt. */
function decisionKey(tenant: string, prompt: string): string {
  return `${tenant.length}:${tenant}\n${prompt}`;
}

function pick(predicted: Record<string, number>, names: ReadonlySet<string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, q] of Object.entries(predicted)) if (names.has(name)) out[name] = q;
  return out;
}

function annotate(r: pb.ClassifyResponse, cached: boolean): void {
  trace.getActiveSpan()?.setAttributes({
    "switchyard.tier": r.tier,
    "switchyard.difficulty": r.difficulty,
    "switchyard.task_type": r.taskType,
    "switchyard.decision_cached": cached,
    "switchyard.router_version": r.routerVersion,
  });
}
