import { provider as pb } from "@switchyard/proto";
import { isObject } from "./adapters/common.js";
import { ErrorKind, ProviderFailure, type ChatTurn, type GenerateInput, type ToolChoice, type ToolSpec } from "./adapters/types.js";

/**
 * Reads a StreamGenerateRequest into what adapters take: `conversation` when given (it carries
 * tool calls and results), `messages` otherwise. Throws BAD_REQUEST for tools whose schema is not
 * a JSON object or a tool choice naming no given tool.
 */
export function generateInput(req: pb.StreamGenerateRequest): GenerateInput {
  const s = req.sampling;
  const input: GenerateInput = {
    model: req.model,
    messages: req.conversation.length > 0 ? req.conversation.map(conversationTurn) : req.messages.map((m) => (m.name ? { role: m.role, content: m.content, name: m.name } : { role: m.role, content: m.content })),
    stop: s?.stop ?? [],
    tools: req.tools.map(toolSpec),
  };
  if (s?.temperature !== undefined) input.temperature = s.temperature;
  if (s?.topP !== undefined) input.topP = s.topP;
  if (s?.maxTokens !== undefined) input.maxTokens = s.maxTokens;
  if (s?.seed !== undefined) input.seed = s.seed;
  const choice = toolChoice(req.toolChoice, input.tools);
  if (choice) input.toolChoice = choice;
  return input;
}

function conversationTurn(m: pb.ProviderMessage): ChatTurn {
  const turn: ChatTurn = { role: m.role, content: m.content };
  if (m.name) turn.name = m.name;
  if (m.toolCalls.length > 0) turn.toolCalls = m.toolCalls.map((c) => ({ id: c.id, name: c.name, argumentsJson: c.argumentsJson }));
  if (m.toolCallId) turn.toolCallId = m.toolCallId;
  return turn;
}

function toolSpec(t: pb.Tool): ToolSpec {
  if (!t.name) throw new ProviderFailure(ErrorKind.BAD_REQUEST, "a tool has no name");
  const spec: ToolSpec = { name: t.name, description: t.description };
  if (t.parametersJson.trim() !== "") {
    let parsed: unknown;
    try {
      parsed = JSON.parse(t.parametersJson);
    } catch {
      throw new ProviderFailure(ErrorKind.BAD_REQUEST, `the parameters of tool "${t.name}" are not valid JSON`);
    }
    if (!isObject(parsed)) throw new ProviderFailure(ErrorKind.BAD_REQUEST, `the parameters of tool "${t.name}" are not a JSON Schema object`);
    spec.parameters = parsed;
  }
  return spec;
}

function toolChoice(choice: pb.ToolChoice | undefined, tools: readonly ToolSpec[]): ToolChoice | undefined {
  switch (choice?.mode) {
    case undefined:
    case pb.ToolChoiceMode.UNSPECIFIED:
      return undefined;
    case pb.ToolChoiceMode.AUTO:
      return { mode: "auto" };
    case pb.ToolChoiceMode.NONE:
      return { mode: "none" };
    case pb.ToolChoiceMode.REQUIRED:
      if (tools.length === 0) throw new ProviderFailure(ErrorKind.BAD_REQUEST, "tool choice \"required\" without tools");
      return { mode: "required" };
    case pb.ToolChoiceMode.TOOL:
      if (!tools.some((t) => t.name === choice.toolName)) {
        throw new ProviderFailure(ErrorKind.BAD_REQUEST, `tool choice names "${choice.toolName.slice(0, 64)}", which is not among the tools`);
      }
      return { mode: "tool", name: choice.toolName };
    default:
      throw new ProviderFailure(ErrorKind.BAD_REQUEST, `unknown tool choice mode ${String(choice?.mode)}`);
  }
}
