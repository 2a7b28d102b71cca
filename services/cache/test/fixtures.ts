import { create } from "@bufbuild/protobuf";
import { cache as pb, common } from "@switchyard/proto";

/** A cache key for `tenant`: an optional system prompt, earlier turns and the last user turn. */
export function keyOf(
  tenant: string,
  lastUserTurn: string,
  options: { system?: string; earlier?: [role: string, content: string][]; model?: string; temperature?: number } = {},
): pb.CacheKey {
  const messages = [
    ...(options.system === undefined ? [] : [{ role: "system", content: options.system }]),
    ...(options.earlier ?? []).map(([role, content]) => ({ role, content })),
    { role: "user", content: lastUserTurn },
  ];
  return create(pb.CacheKeySchema, {
    tenant,
    requestedModel: options.model ?? "switchyard/auto",
    messages: messages.map((m) => create(common.ChatMessageSchema, m)),
    sampling: create(common.SamplingParamsSchema, { temperature: options.temperature ?? 0 }),
  });
}

/** A complete, successful answer as the gateway stores it. */
export function answer(content: string, costMicroUsd = 1_234n): pb.CachedCompletion {
  return create(pb.CachedCompletionSchema, {
    provider: "sim",
    model: "sim-small",
    tier: "simple",
    content,
    finishReason: "stop",
    usage: create(common.UsageSchema, { inputTokens: 12n, outputTokens: 34n }),
    costMicroUsd,
    createdAtUnixMs: 1_700_000_000_000n,
  });
}
