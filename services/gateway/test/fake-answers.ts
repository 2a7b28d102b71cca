import { Code, ConnectError } from "@connectrpc/connect";
import type { FakeAnswer } from "./http-harness.js";

/** The call the scripted upstream makes when it has tools and no tool result yet. */
export const WEATHER_CALL = { id: "call_wx1", name: "get_weather", arguments: { city: "Paris" } };

/**
 * A scripted upstream, as a provider adapter reports one to the gateway:
 * - with tools and no tool result in the conversation: "Let me check." then a call of
 *   get_weather({"city": "Paris"}) in two argument fragments, finish "tool_calls", 50 in / 12 out (8 cached);
 * - a prompt containing "break": half an answer, then the upstream fails;
 * - a prompt containing "long": "cut sh", finish "length";
 * - anything else: "It is sunny." in three pieces, finish "stop", 31 in / 4 out.
 */
export const SCRIPTED: FakeAnswer = async function* (req) {
  const prompt = req.messages.map((m) => m.content).join("\n");
  const finish = (finishReason: string, inputTokens: bigint, outputTokens: bigint, cachedInputTokens = 0n) => ({
    event: { case: "finish" as const, value: { finishReason, responseModel: req.model, usage: { inputTokens, outputTokens, cachedInputTokens } } },
  });
  if (req.tools.length > 0 && !req.conversation.some((t) => t.role === "tool")) {
    yield { event: { case: "delta" as const, value: { text: "Let me check." } } };
    yield { event: { case: "toolCall" as const, value: { index: 0, id: WEATHER_CALL.id, name: WEATHER_CALL.name, arguments: '{"city":' } } };
    yield { event: { case: "toolCall" as const, value: { index: 0, id: "", name: "", arguments: '"Paris"}' } } };
    yield finish("tool_calls", 50n, 12n, 8n);
    return;
  }
  if (prompt.includes("break")) {
    yield { event: { case: "delta" as const, value: { text: "half an ans" } } };
    throw new ConnectError("the upstream connection dropped", Code.Unavailable);
  }
  if (prompt.includes("long")) {
    yield { event: { case: "delta" as const, value: { text: "cut sh" } } };
    yield finish("length", 20n, 3n);
    return;
  }
  for (const text of ["It is ", "sunny", "."]) yield { event: { case: "delta" as const, value: { text } } };
  yield finish("stop", 31n, 4n);
};

/** Server-sent events of a raw response body: each event's name and parsed data. */
export function sseEvents(text: string): { event: string | undefined; data: any }[] {
  return text
    .split("\n\n")
    .filter((block) => block.trim() !== "")
    .map((block) => {
      const lines = block.split("\n");
      const event = lines.find((l) => l.startsWith("event: "))?.slice(7);
      const data = lines
        .filter((l) => l.startsWith("data: "))
        .map((l) => l.slice(6))
        .join("\n");
      return { event, data: data === "[DONE]" ? data : JSON.parse(data) };
    });
}
