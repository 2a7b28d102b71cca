import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { create, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  CandidateVerdict,
  CompleteRequestSchema,
  createSwitchyardClient,
  RouteExplainResponseSchema,
  type Message,
  type RouteCandidate,
  type RouteExplainResponse,
} from "@switchyard/client";

const DEFAULT_URL = "http://127.0.0.1:8081";

const USAGE = `usage: switchyard route [PROMPT] [options]
Explains how the gateway would route a request, without answering it: the prompt's features and
tier, every candidate model with its predicted quality, price and expected cost, and why it was or
was not chosen. No provider is called.

The request: PROMPT (one user message), or --file FILE holding the conversation (a JSON array of
{"role", "content"}, an object with "messages", or plain text); with both, PROMPT is added as the
last user message. Standard input is read as the file when there is no PROMPT nor --file, or with
--file -.

options:
  --file FILE                     read the conversation from FILE ("-" for standard input)
  --tenant T                      explain for tenant T (default: the API key's; another tenant
                                  only on a gateway without keys)
  --model M                       switchyard/auto (default), switchyard/auto:<tier> or provider/model
  --quality-target Q              minimum predicted quality, 0 to 1
  --cost-weight W                 0 = quality only ... 1 = price only
  --max-tokens N                  the answer's max_tokens (the expected output size)
  --max-output-usd-per-mtok USD   highest output price to consider
  --api-key KEY                   default: $SWITCHYARD_API_KEY
  --url URL                       the gateway's gRPC/Connect port (default: $SWITCHYARD_URL, else ${DEFAULT_URL})
  --protocol connect|grpc         default connect
  --timeout-ms MS                 default 10000
  --json                          one JSON object (the RouteExplain response in Protobuf JSON)

Exit 0 with an explanation, 1 when the gateway refused or no model would answer, 2 for bad options.
`;

/** Where the command reads and writes; the process's own unless a test captures them. */
export interface RouteCommandIo {
  out: (text: string) => void;
  err: (text: string) => void;
  env: NodeJS.ProcessEnv;
  /** Standard input, or undefined when it is a terminal (nothing piped). */
  stdin: () => Promise<string> | undefined;
}

const processIo = (): RouteCommandIo => ({
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  env: process.env,
  stdin: () => (process.stdin.isTTY ? undefined : readStream(process.stdin)),
});

/** A mistake in the command line or its input: exit 2 with this message. */
class UsageError extends Error {}

/**
 * `switchyard route`: asks the gateway's RouteExplain for a prompt and prints the explanation as a
 * table, or as one JSON object with --json. Resolves to the exit code.
 */
export async function routeCommand(argv: string[], io: RouteCommandIo = processIo()): Promise<number> {
  let options: RouteOptions;
  try {
    options = await parseOptions(argv, io);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.err(`switchyard route: ${err.message}\n\n${USAGE}`);
    return 2;
  }
  if (options.help) {
    io.out(USAGE);
    return 0;
  }
  let res: RouteExplainResponse;
  try {
    res = await explain(options, "2").catch((err: unknown) => {
      // Not an HTTP/2 server (the gateway's HTTP/1.1 port, a proxy): Connect works over HTTP/1.1 too.
      if (options.protocol === "connect" && notHttp2(err)) return explain(options, "1.1");
      throw err;
    });
  } catch (err) {
    io.err(`switchyard route: ${describeError(err, options)}\n`);
    return 1;
  }
  if (options.json) io.out(JSON.stringify(toJson(RouteExplainResponseSchema, res, { alwaysEmitImplicit: true })) + "\n");
  else io.out(renderExplanation(res, options.url));
  return res.model ? 0 : 1;
}

function explain(options: RouteOptions, httpVersion: "1.1" | "2"): Promise<RouteExplainResponse> {
  const client = createSwitchyardClient({
    baseUrl: options.url,
    protocol: options.protocol,
    ...(options.protocol === "connect" ? { httpVersion } : {}),
    timeoutMs: options.timeoutMs,
    ...(options.apiKey ? { apiKey: options.apiKey } : {}),
  });
  return client.routeExplain({ request: options.request, tenant: options.tenant });
}

/** Whether a call failed because the server does not speak HTTP/2 (Node reports a protocol error). */
function notHttp2(err: unknown): boolean {
  return err instanceof ConnectError && /protocol error|ERR_HTTP2_ERROR|ERR_HTTP2_SESSION_ERROR/i.test(err.rawMessage);
}

interface RouteOptions {
  help: boolean;
  json: boolean;
  url: string;
  protocol: "connect" | "grpc";
  apiKey: string;
  tenant: string;
  timeoutMs: number;
  request: ReturnType<typeof create<typeof CompleteRequestSchema>>;
}

async function parseOptions(argv: string[], io: RouteCommandIo): Promise<RouteOptions> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        file: { type: "string" },
        tenant: { type: "string" },
        model: { type: "string" },
        "quality-target": { type: "string" },
        "cost-weight": { type: "string" },
        "max-tokens": { type: "string" },
        "max-output-usd-per-mtok": { type: "string" },
        "api-key": { type: "string" },
        url: { type: "string" },
        protocol: { type: "string" },
        "timeout-ms": { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    // parseArgs names the option; its advice about "--" is noise here.
    throw new UsageError((err as Error).message.split(". To specify")[0]!);
  }
  const v = parsed.values;
  const defaults = { json: false, url: DEFAULT_URL, protocol: "connect" as const, apiKey: "", tenant: "", timeoutMs: 10_000, request: create(CompleteRequestSchema) };
  if (v.help) return { help: true, ...defaults };

  const number = (name: string, raw: string | undefined, min: number, max: number, integer = false): number | undefined => {
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
      throw new UsageError(`--${name} must be ${integer ? "a whole number" : "a number"} from ${min} to ${max}, not "${raw}"`);
    }
    return n;
  };
  const qualityTarget = number("quality-target", v["quality-target"], 0, 1);
  const costWeight = number("cost-weight", v["cost-weight"], 0, 1);
  const maxTokens = number("max-tokens", v["max-tokens"], 1, 2 ** 31 - 1, true);
  const maxOutputUsd = number("max-output-usd-per-mtok", v["max-output-usd-per-mtok"], 0, 10_000);
  const timeoutMs = number("timeout-ms", v["timeout-ms"], 1, 600_000, true) ?? 10_000;
  const protocol = v.protocol ?? "connect";
  if (protocol !== "connect" && protocol !== "grpc") throw new UsageError(`--protocol must be connect or grpc, not "${protocol}"`);
  const url = v.url ?? io.env.SWITCHYARD_URL ?? DEFAULT_URL;
  if (!/^https?:\/\/[^/\s]+/.test(url)) throw new UsageError(`--url must be an http:// or https:// address such as ${DEFAULT_URL}, not "${url}"`);

  const messages = await conversation(parsed.positionals.join(" "), v.file, io);
  return {
    help: false,
    json: v.json ?? false,
    url,
    protocol,
    apiKey: v["api-key"] ?? io.env.SWITCHYARD_API_KEY ?? "",
    tenant: v.tenant ?? "",
    timeoutMs,
    request: create(CompleteRequestSchema, {
      messages,
      model: v.model ?? "",
      ...(maxTokens === undefined ? {} : { maxTokens }),
      routing: {
        ...(qualityTarget === undefined ? {} : { qualityTarget }),
        ...(costWeight === undefined ? {} : { costWeight }),
        maxOutputMicroUsdPerMtok: maxOutputUsd === undefined ? 0n : BigInt(Math.round(maxOutputUsd * 1_000_000)),
      },
    }),
  };
}

/** The messages to explain: from --file or standard input, then the prompt as the last user turn. */
async function conversation(prompt: string, file: string | undefined, io: RouteCommandIo): Promise<Pick<Message, "role" | "content">[]> {
  let text: string | undefined;
  let source = "standard input";
  if (file !== undefined && file !== "-") {
    source = file;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      throw new UsageError(`cannot read ${file}`);
    }
  } else if (file === "-" || prompt === "") {
    text = await io.stdin();
    if (text === undefined && file === "-") throw new UsageError("--file - reads standard input, but it is a terminal");
  }
  const messages = text === undefined ? [] : parseConversation(text, source);
  if (prompt !== "") messages.push({ role: "user", content: prompt });
  if (messages.length === 0) throw new UsageError("give a prompt, --file FILE, or the conversation on standard input");
  return messages;
}

/**
 * A conversation as a file or a pipe holds it: a JSON array of {role, content}, an object with
 * `messages` (an OpenAI request body), or anything else as one user message.
 */
export function parseConversation(text: string, source: string): Pick<Message, "role" | "content">[] {
  const trimmed = text.trim();
  if (trimmed === "") return [];
  if (!trimmed.startsWith("[") && !trimmed.startsWith("{")) return [{ role: "user", content: trimmed }];
  let doc: unknown;
  try {
    doc = JSON.parse(trimmed);
  } catch (err) {
    throw new UsageError(`${source}: not valid JSON (${(err as Error).message})`);
  }
  const list = Array.isArray(doc) ? doc : (doc as { messages?: unknown } | null)?.messages;
  if (!Array.isArray(list)) throw new UsageError(`${source}: expected a JSON array of {"role", "content"} or an object with "messages"`);
  return list.map((m: unknown, i: number) => {
    const { role, content } = (m ?? {}) as { role?: unknown; content?: unknown };
    if (typeof role !== "string" || role === "") throw new UsageError(`${source}: messages[${i}].role must be a string such as "user"`);
    if (typeof content !== "string") throw new UsageError(`${source}: messages[${i}].content must be a string`);
    return { role, content };
  });
}

/** A gateway's refusal or an unreachable gateway, in a sentence (never a stack). */
function describeError(err: unknown, options: RouteOptions): string {
  if (!(err instanceof ConnectError)) return (err as Error).message;
  const raw = err.rawMessage;
  if (notHttp2(err)) return `the server at ${options.url} does not speak gRPC over HTTP/2 (${raw}): use the gateway's port 8081, or --protocol connect`;
  switch (err.code) {
    case Code.Unavailable:
      if (/ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ECONNRESET|EAI_AGAIN|protocol error|ERR_HTTP2/i.test(raw)) {
        return `cannot reach the gateway at ${options.url} (${raw}): is it running (switchyard start), and is --url its gRPC/Connect port (8081 by default)?`;
      }
      return raw;
    case Code.Unauthenticated:
      return `${raw} (pass --api-key KEY or set SWITCHYARD_API_KEY)`;
    case Code.DeadlineExceeded:
      return `the gateway at ${options.url} did not answer within ${options.timeoutMs} ms`;
    case Code.Unimplemented:
      return `the gateway at ${options.url} does not offer RouteExplain (${raw})`;
    case Code.InvalidArgument:
    case Code.NotFound:
    case Code.PermissionDenied:
      return raw;
    default:
      return `${Code[err.code]}: ${raw}`;
  }
}

const VERDICT_LABEL: Record<CandidateVerdict, string> = {
  [CandidateVerdict.UNSPECIFIED]: "?",
  [CandidateVerdict.CHOSEN]: "chosen",
  [CandidateVerdict.BELOW_QUALITY_TARGET]: "below target",
  [CandidateVerdict.COSTLIER]: "costlier",
  [CandidateVerdict.LOWER_SCORE]: "lower score",
  [CandidateVerdict.CIRCUIT_OPEN]: "circuit open",
  [CandidateVerdict.OVER_PRICE_CAP]: "over price cap",
  [CandidateVerdict.TOO_SLOW]: "too slow",
  [CandidateVerdict.NOT_IN_TIER]: "not in tier",
};

/** The explanation as a reader wants it: what the prompt is, the candidates as a table, the choice and why. */
export function renderExplanation(res: RouteExplainResponse, url: string): string {
  const lines: string[] = [];
  const row = (label: string, text: string) => lines.push(`${label.padEnd(12)}${text}`);
  row("tenant", `${res.tenant} (gateway ${url})`);
  const f = res.features;
  if (f) {
    const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
    row("prompt", `${plural(f.chars, "char")}, ${plural(f.words, "word")}, ${plural(f.lines, "line")}, ${plural(f.turns, "turn")}${f.hasSystemPrompt ? " (system prompt)" : ""}, language ${f.language}, task ${res.taskType}`);
    const signals = (
      [
        ["hard cues", f.hardCues],
        ["reasoning cues", f.reasoningCues],
        ["question words", f.questionWords],
        ["code markers", f.codeMarkers],
        ["math operators", f.mathOperators],
        ["digits", f.digits],
        ["multiple-choice options", f.multipleChoiceOptions],
      ] as const
    ).filter(([, n]) => n > 0);
    row("", signals.length > 0 ? signals.map(([name, n]) => `${name} ${n}`).join(", ") : "no difficulty signals (cues, code, math, options)");
  }
  const tierNote = res.tier !== res.classifiedTier && res.classifiedTier ? `${res.classifiedTier}, routed in ${res.tier} (top-tier cap)` : res.tier;
  if (res.tierSource === "classifier") row("difficulty", `${res.difficulty.toFixed(2)} -> tier ${tierNote} (router ${res.routerVersion})`);
  else if (res.tierSource === "classifier unavailable") row("tier", `${tierNote} (the classifier is unavailable: the middle tier)`);
  else row("tier", `${tierNote} (${res.tierSource === "model" ? "asked for by --model" : "the pinned model's"})`);
  if (res.tierSource !== "pinned") row("rule", res.costWeight !== undefined ? `best quality/cost score at cost weight ${res.costWeight.toFixed(2)}` : `cheapest model with predicted quality >= ${res.qualityTarget.toFixed(2)}`);
  row("tokens", `${res.estimatedInputTokens} input (estimated), ${res.expectedOutputTokens} output (expected)`);
  if (res.tablesStale) row("warning", "the policy's price and health tables are stale (NATS unreachable): numbers may be out of date");
  lines.push("");

  const observed = res.candidates.some((c) => c.ttftMs > 0);
  const weighed = res.costWeight !== undefined;
  const header = ["#", "model", "quality", "$/Mtok in / out", "expected cost", "circuit", ...(observed ? ["ttft"] : []), ...(weighed ? ["score"] : []), "verdict", "why"];
  const table = res.candidates.map((c) => [
    c.planPosition > 0 ? String(c.planPosition) : "-",
    c.model,
    c.qualitySource ? `${c.predictedQuality.toFixed(2)} ${c.qualitySource}` : "n/a",
    `${perMtok(c.inputMicroUsdPerMtok)} / ${perMtok(c.outputMicroUsdPerMtok)}`,
    usd(c.expectedCostMicroUsd),
    c.circuit,
    ...(observed ? [c.ttftMs > 0 ? `${Math.round(c.ttftMs)} ms` : "-"] : []),
    ...(weighed ? [c.utility === undefined ? "-" : c.utility.toFixed(3)] : []),
    VERDICT_LABEL[c.verdict],
    c.explanation,
  ]);
  lines.push(...formatTable(header, table));
  lines.push("");
  if (res.model) {
    row("choice", res.model);
    const fallbacks = res.candidates.filter((c: RouteCandidate) => c.planPosition > 1).map((c) => c.model);
    if (fallbacks.length > 0) row("fallbacks", fallbacks.join(", "));
    row("why", res.reason);
  } else {
    row("choice", "none: a completion would fail");
    row("why", res.reason);
  }
  lines.push("", "expected cost = estimated input tokens x input price + expected output tokens x output price");
  return lines.join("\n") + "\n";
}

/** Left-aligned columns, two spaces apart; the last column is not padded. */
function formatTable(header: string[], rows: string[][]): string[] {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all.map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd(),
  );
}

/** Integer micro-dollars as dollars to the micro-dollar. */
function usd(micro: bigint): string {
  return `$${(Number(micro) / 1e6).toFixed(6)}`;
}

/** A price per million tokens in dollars: cents, or as many decimals as it has (up to 4). */
function perMtok(micro: bigint): string {
  const dollars = Number(micro) / 1e6;
  const cents = dollars.toFixed(2);
  return Number(cents) === dollars ? cents : String(Number(dollars.toFixed(4)));
}

function readStream(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => (text += chunk));
    stream.on("end", () => resolve(text));
    stream.on("error", reject);
  });
}
