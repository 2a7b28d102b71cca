/**
 * A streamed completion through Switchyard's gRPC / Connect API: the text is printed as it
 * arrives, then which model answered, why, and what it cost.
 *
 *   npm run build
 *   node libs/client/dist/examples/stream.js "Explain routing in one line."
 *
 * Environment: SWITCHYARD_URL (default http://127.0.0.1:8081, the gateway's HTTP/2 port),
 * SWITCHYARD_API_KEY (when the gateway has keys), SWITCHYARD_PROTOCOL (`connect` or `grpc`).
 */
import { pathToFileURL } from "node:url";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { CompleteRequestSchema, createSwitchyardClient, type Completion, type SwitchyardClient } from "@switchyard/client";

/** A whole streamed answer. */
export interface StreamedAnswer {
  text: string;
  /** The last message's summary: route (model, tier, reason, cache), usage and cost. */
  completion: Completion;
  /** The gateway's id for the request (response header `x-switchyard-request-id`). */
  requestId: string;
  /** How many text deltas arrived. */
  deltas: number;
}

/**
 * Streams the answer to `prompt`, handing each text delta to `onText` as it arrives.
 * @throws ConnectError as the gateway answered (UNAUTHENTICATED for a wrong key, NOT_FOUND for an unknown model, ...)
 */
export async function streamAnswer(client: SwitchyardClient, prompt: string, onText: (delta: string) => void = () => {}, signal?: AbortSignal): Promise<StreamedAnswer> {
  const request = create(CompleteRequestSchema, {
    model: "switchyard/auto",
    messages: [{ role: "user", content: prompt }],
    maxTokens: 256,
  });
  let requestId = "";
  let text = "";
  let deltas = 0;
  let completion: Completion | undefined;
  const stream = client.streamComplete(request, {
    ...(signal ? { signal } : {}),
    onHeader: (headers) => (requestId = headers.get("x-switchyard-request-id") ?? ""),
  });
  for await (const message of stream) {
    if (message.text) {
      text += message.text;
      deltas++;
      onText(message.text);
    }
    // Set on the last message only: the route taken, usage and cost.
    if (message.completion) completion = message.completion;
  }
  if (!completion) throw new ConnectError("the stream ended without its last message", Code.DataLoss);
  return { text, completion, requestId, deltas };
}

/** Integer micro-dollars as dollars. */
export function usd(micro: bigint): string {
  return `$${(Number(micro) / 1e6).toFixed(6)}`;
}

async function main(): Promise<number> {
  const prompt = process.argv.slice(2).join(" ") || "Explain routing in one line.";
  const client = createSwitchyardClient({
    baseUrl: process.env.SWITCHYARD_URL ?? "http://127.0.0.1:8081",
    ...(process.env.SWITCHYARD_API_KEY ? { apiKey: process.env.SWITCHYARD_API_KEY } : {}),
    protocol: process.env.SWITCHYARD_PROTOCOL === "grpc" ? "grpc" : "connect",
    timeoutMs: 60_000,
  });
  try {
    const answer = await streamAnswer(client, prompt, (delta) => process.stdout.write(delta));
    const { route, usage, costMicroUsd } = answer.completion;
    process.stdout.write(`\n\nanswered by ${route?.model} (tier ${route?.tier}, cache ${route?.cache}): ${route?.reason}\n`);
    process.stdout.write(`${usage?.inputTokens} input + ${usage?.outputTokens} output tokens, ${usd(costMicroUsd)}; request ${answer.requestId}\n`);
    return 0;
  } catch (err) {
    const e = ConnectError.from(err);
    process.stderr.write(`stream failed: ${Code[e.code]}: ${e.rawMessage}\n`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) process.exitCode = await main();
