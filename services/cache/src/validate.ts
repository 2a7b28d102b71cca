import { Code, ConnectError } from "@connectrpc/connect";
import type { cache as pb } from "@switchyard/proto";

/** Finish reasons of a complete answer worth replaying; anything else is refused. */
const STORABLE_FINISH = new Set(["stop", "length"]);
const MAX_TENANT_CHARS = 256;
const MAX_MESSAGES = 10_000;

/** Checks a cache key; throws InvalidArgument naming the bad field. */
export function validateKey(key: pb.CacheKey | undefined): pb.CacheKey {
  if (!key) throw invalid("key is required");
  if (!key.tenant) throw invalid("key.tenant is required");
  if (key.tenant.length > MAX_TENANT_CHARS) throw invalid(`key.tenant is longer than ${MAX_TENANT_CHARS} characters`);
  if (key.messages.length === 0) throw invalid("key.messages must not be empty");
  if (key.messages.length > MAX_MESSAGES) throw invalid(`key.messages has more than ${MAX_MESSAGES} messages`);
  key.messages.forEach((m, i) => {
    if (!m.role.trim()) throw invalid(`key.messages[${i}].role is required`);
  });
  const s = key.sampling;
  if (s) {
    if (s.temperature !== undefined && !(Number.isFinite(s.temperature) && s.temperature >= 0)) throw invalid("key.sampling.temperature must be a finite number >= 0");
    if (s.topP !== undefined && !(Number.isFinite(s.topP) && s.topP >= 0 && s.topP <= 1)) throw invalid("key.sampling.top_p must be a number in [0, 1]");
    if (s.maxTokens !== undefined && s.maxTokens <= 0) throw invalid("key.sampling.max_tokens must be positive");
  }
  return key;
}

/**
 * Checks that a completion is a complete, successful answer: who answered, the text, usage, a
 * non-negative cost and a finish reason of `stop` or `length`. An interrupted stream, a content
 * filter stop, a tool call or an error has none of these and is refused, so it can never be
 * replayed to anyone.
 */
export function validateCompletion(c: pb.CachedCompletion | undefined): pb.CachedCompletion {
  if (!c) throw invalid("completion is required");
  if (!c.provider) throw invalid("completion.provider is required");
  if (!c.model) throw invalid("completion.model is required");
  if (!STORABLE_FINISH.has(c.finishReason)) {
    throw invalid(`completion.finish_reason must be "stop" or "length" (a complete answer), got ${JSON.stringify(c.finishReason)}`);
  }
  if (!c.content) throw invalid("completion.content must not be empty");
  if (!c.usage) throw invalid("completion.usage is required (an answer without usage did not finish)");
  if (c.usage.outputTokens <= 0n) throw invalid("completion.usage.output_tokens must be positive");
  if (c.costMicroUsd < 0n) throw invalid("completion.cost_micro_usd must not be negative");
  return c;
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}
