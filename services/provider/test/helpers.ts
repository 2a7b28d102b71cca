import { expect } from "vitest";
import { ProviderFailure, type GenerateInput, type ProviderAdapter, type ProviderEvent } from "../src/adapters/types.js";

/** A plain chat input with the given overrides. */
export function chatInput(overrides: Partial<GenerateInput> = {}): GenerateInput {
  return {
    model: "test-model",
    messages: [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Say hello." },
    ],
    stop: [],
    tools: [],
    ...overrides,
  };
}

/** Everything an adapter streams for one input. */
export async function collect(adapter: ProviderAdapter, input: GenerateInput, signal = AbortSignal.timeout(10_000)): Promise<ProviderEvent[]> {
  const events: ProviderEvent[] = [];
  for await (const e of adapter.stream(input, signal)) events.push(e);
  return events;
}

/** The events an adapter streamed before it failed, and the failure (which must be a ProviderFailure). */
export async function collectFailure(
  adapter: ProviderAdapter,
  input: GenerateInput,
  signal = AbortSignal.timeout(10_000),
): Promise<{ events: ProviderEvent[]; failure: ProviderFailure }> {
  const events: ProviderEvent[] = [];
  try {
    for await (const e of adapter.stream(input, signal)) events.push(e);
  } catch (err) {
    expect(err).toBeInstanceOf(ProviderFailure);
    return { events, failure: err as ProviderFailure };
  }
  throw new Error(`expected a failure, got ${JSON.stringify(events)}`);
}

/** The concatenated text deltas. */
export function textOf(events: readonly ProviderEvent[]): string {
  return events.map((e) => (e.type === "delta" ? e.text : "")).join("");
}

/** The finish event (exactly one, last). */
export function finishOf(events: readonly ProviderEvent[]): Extract<ProviderEvent, { type: "finish" }> {
  const finishes = events.filter((e) => e.type === "finish");
  expect(finishes).toHaveLength(1);
  expect(events[events.length - 1]?.type).toBe("finish");
  return finishes[0] as Extract<ProviderEvent, { type: "finish" }>;
}

/** Tool calls reassembled from their fragments: id, name and full arguments per index. */
export function toolCallsOf(events: readonly ProviderEvent[]): { id: string; name: string; arguments: string }[] {
  const calls: { id: string; name: string; arguments: string }[] = [];
  for (const e of events) {
    if (e.type !== "tool_call") continue;
    const call = (calls[e.index] ??= { id: "", name: "", arguments: "" });
    if (e.id) call.id = e.id;
    if (e.name) call.name = e.name;
    call.arguments += e.arguments;
  }
  return calls;
}
