/** Routing-outcome rows (the JSONL format of `shared/data/routing/README.md`), prices, and their parsing. */
import { readFile } from "node:fs/promises";
import { normalisePrompt, type ChatMessage } from "./features.js";

/** How one model did on one prompt. */
export interface Outcome {
  /** Quality in [0, 1] (1 = correct). */
  score: number;
  /** The real dollar cost of the call, where known. */
  cost_usd?: number;
  /** Length of the model's answer, for estimating output tokens. */
  output_chars?: number;
}

/** One prompt with the outcomes of the models that answered it. */
export interface RoutingRow {
  id: string;
  source?: string;
  /** Where the prompt came from; never a feature (it is not known at inference). */
  task?: string;
  messages: ChatMessage[];
  outcomes: Record<string, Outcome>;
}

/** Per-million-token prices of one model. */
export interface ModelPrice {
  input_per_mtok: number;
  output_per_mtok: number;
}

/** Prices by model name (keys starting with `_` are comments). */
export type PriceTable = Record<string, ModelPrice>;

/** An input problem a user can fix: a missing file, a bad line, a bad flag. Its message names the problem. */
export class RouterInputError extends Error {
  override readonly name = "RouterInputError";
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new RouterInputError(`${what} not found: ${path}`);
    if (code === "EISDIR") throw new RouterInputError(`${what} is a directory, not a file: ${path}`);
    throw new RouterInputError(`cannot read ${what} ${path}: ${(error as Error).message}`);
  }
}

/**
 * Parses routing-outcome JSONL. Blank lines are skipped; any other line that is not a valid row
 * is an error naming the file and line number.
 */
export function parseRows(text: string, fileName = "<input>"): RoutingRow[] {
  const rows: RoutingRow[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (line === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw new RouterInputError(`${fileName}: bad JSON on line ${i + 1}: ${(error as Error).message}`);
    }
    const problem = rowProblem(value);
    if (problem) throw new RouterInputError(`${fileName}: line ${i + 1}: ${problem}`);
    rows.push(value as RoutingRow);
  }
  return rows;
}

function rowProblem(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "expected a JSON object";
  const row = value as Record<string, unknown>;
  if (!Array.isArray(row["messages"])) return 'missing "messages" array';
  for (const m of row["messages"] as unknown[]) {
    const message = m as Record<string, unknown> | null;
    if (typeof message !== "object" || message === null || typeof message["role"] !== "string" || typeof message["content"] !== "string") {
      return 'every message needs string "role" and "content"';
    }
  }
  if (row["outcomes"] !== undefined) {
    if (typeof row["outcomes"] !== "object" || row["outcomes"] === null || Array.isArray(row["outcomes"])) return '"outcomes" must be an object';
    for (const [model, outcome] of Object.entries(row["outcomes"] as Record<string, unknown>)) {
      if (outcome === null) continue;
      const score = (outcome as Record<string, unknown>)["score"];
      if (score !== undefined && score !== null && (typeof score !== "number" || !(score >= 0 && score <= 1))) {
        return `outcome of "${model}": score must be a number in [0, 1]`;
      }
    }
  } else {
    row["outcomes"] = {};
  }
  if (row["id"] === undefined) row["id"] = null;
  return undefined;
}

/** Reads and parses one JSONL file of routing outcomes. */
export async function readRows(path: string): Promise<RoutingRow[]> {
  return parseRows(await readText(path, "data file"), path);
}

/** Reads a JSON file (a router, a price table), naming the file when it is missing or malformed. */
export async function readJson(path: string, what: string): Promise<unknown> {
  const text = await readText(path, what);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new RouterInputError(`${what} ${path} is not valid JSON: ${(error as Error).message}`);
  }
}

/** Reads a price table (`prices.json`). */
export async function readPrices(path: string): Promise<PriceTable> {
  const value = await readJson(path, "price table");
  if (typeof value !== "object" || value === null) throw new RouterInputError(`price table ${path} must be a JSON object`);
  const prices: PriceTable = {};
  for (const [model, price] of Object.entries(value as Record<string, unknown>)) {
    if (model.startsWith("_")) continue;
    const p = price as Record<string, unknown> | null;
    if (typeof p !== "object" || p === null || typeof p["input_per_mtok"] !== "number" || typeof p["output_per_mtok"] !== "number") {
      throw new RouterInputError(`price table ${path}: "${model}" needs numeric input_per_mtok and output_per_mtok`);
    }
    prices[model] = { input_per_mtok: p["input_per_mtok"], output_per_mtok: p["output_per_mtok"] };
  }
  return prices;
}

/** The score of a model on a row, or undefined when that model has no (valid) outcome there. */
export function scoreOf(row: RoutingRow, model: string): number | undefined {
  const outcome = row.outcomes[model];
  if (!outcome || typeof outcome.score !== "number" || Number.isNaN(outcome.score)) return undefined;
  return outcome.score;
}

/** Every model with at least one outcome, in first-seen order. */
export function modelsOf(rows: readonly RoutingRow[]): string[] {
  const seen = new Set<string>();
  for (const row of rows) for (const model of Object.keys(row.outcomes)) if (scoreOf(row, model) !== undefined) seen.add(model);
  return [...seen];
}

/**
 * The question of a row, for grouping near-duplicates: the last 300 characters of the last user
 * message, lowercased and whitespace-collapsed (few-shot prompts put the actual question last).
 */
export function groupKey(row: RoutingRow): string {
  const users = row.messages.filter((m) => m.role === "user");
  const last = users[users.length - 1] ?? row.messages[row.messages.length - 1];
  const text = last ? normalisePrompt([{ role: "user", content: last.content }]) : "";
  return text.slice(-300);
}

/**
 * Model aliases (`{ FROM: TO }`): the same model under two names. Returns rows whose outcomes under
 * FROM are moved to TO, each outcome (score and the row's own `cost_usd`) unchanged; a row that
 * already has an outcome under TO keeps that one. Rows without an aliased name are returned as is.
 * Throws when an alias target is itself aliased (chains are ambiguous) or a name maps to itself.
 */
export function applyAliases(rows: readonly RoutingRow[], aliases: Readonly<Record<string, string>> | undefined): RoutingRow[] {
  if (!aliases) return rows as RoutingRow[];
  const entries = Object.entries(aliases);
  if (entries.length === 0) return rows as RoutingRow[];
  for (const [from, to] of entries) {
    if (from === to) throw new RouterInputError(`alias ${from}=${to} maps a model to itself`);
    if (aliases[to] !== undefined) throw new RouterInputError(`alias target "${to}" is itself aliased (to "${aliases[to]}"); give the final name`);
  }
  return rows.map((row) => {
    if (!Object.keys(row.outcomes).some((model) => aliases[model] !== undefined)) return row;
    const outcomes: Record<string, Outcome> = {};
    for (const [model, outcome] of Object.entries(row.outcomes)) {
      const to = aliases[model];
      if (to === undefined) outcomes[model] = outcome;
      else if (row.outcomes[to] === undefined) outcomes[to] = outcome;
    }
    return { ...row, outcomes };
  });
}

/** Parses `FROM=TO` alias flags into an alias map. */
export function parseAliases(specs: readonly string[]): Record<string, string> {
  const aliases: Record<string, string> = {};
  for (const spec of specs) {
    const eq = spec.indexOf("=");
    const from = spec.slice(0, eq).trim();
    const to = spec.slice(eq + 1).trim();
    if (eq <= 0 || from === "" || to === "") throw new RouterInputError(`alias "${spec}": expected FROM=TO`);
    if (aliases[from] !== undefined && aliases[from] !== to) throw new RouterInputError(`alias for "${from}" given twice`);
    aliases[from] = to;
  }
  applyAliases([], aliases);
  return aliases;
}
