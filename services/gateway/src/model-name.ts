import type { Config } from "@switchyard/config";
import { GatewayError } from "./errors.js";

/** What the client's `model` asks for. */
export type ModelChoice =
  | { kind: "auto" }
  | { kind: "tier"; tier: string }
  | { kind: "pinned"; id: string }
  /** OpenRouter's `models`: "provider/model" ids, the first that can serve answers, the rest are fallbacks. */
  | { kind: "list"; ids: string[] };

/** Whether the client named the model (pinned or a list): no classification, no routing in a tier. */
export function namesModel(choice: ModelChoice): choice is Extract<ModelChoice, { kind: "pinned" | "list" }> {
  return choice.kind === "pinned" || choice.kind === "list";
}

export const AUTO_MODEL = "switchyard/auto";

/**
 * Reads `model`: empty or `switchyard/auto` routes, `switchyard/auto:<tier>` forces a configured
 * tier, anything else must be `provider/model` (checked against the route table by the policy).
 */
export function parseModel(model: string, config: Config): ModelChoice {
  if (model === "" || model === AUTO_MODEL) return { kind: "auto" };
  if (model.startsWith(`${AUTO_MODEL}:`)) {
    const tier = model.slice(AUTO_MODEL.length + 1);
    if (!config.tiers.some((t) => t.name === tier)) {
      throw new GatewayError(404, "not_found_error", "model_not_found", `unknown tier "${tier}" in model "${model}" (tiers: ${config.tiers.map((t) => t.name).join(", ")})`, "model");
    }
    return { kind: "tier", tier };
  }
  const slash = model.indexOf("/");
  if (slash <= 0 || slash === model.length - 1) {
    throw new GatewayError(404, "not_found_error", "model_not_found", `model "${model}" is not "switchyard/auto", "switchyard/auto:<tier>" or "<provider>/<model>"`, "model");
  }
  return { kind: "pinned", id: model };
}
