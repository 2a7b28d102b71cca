/**
 * The `switchyard train | score | eval` commands. Each takes its argv (without the command name),
 * prints results to stdout, names any problem on stderr (never a stack trace) and returns an exit code:
 * 0 success, 1 bad input or failure, 2 bad usage.
 */
import { writeFile } from "node:fs/promises";
import { applyAliases, parseAliases, readPrices, readRows, RouterInputError, scoreOf, type PriceTable, type RoutingRow } from "./data.js";
import { fitStage2, type FallbackGate, type Stage1Row } from "./stage2.js";
import { loadRouter, tierFor } from "./model.js";
import { trainRouter, type TrainOptions } from "./train.js";
import { crossValidate, predictRows, type FoldScheme } from "./cv.js";
import { calibrationReport, defaultPair, modelAverages, multiReport, pairKey, pairReport, PAIR_HEAD_RANKINGS, PAIR_RANKINGS, type RowPredictions } from "./report.js";
import { pairSvg, qualityCostSvg } from "./svg.js";
import type { PairMetrics } from "./evaluate.js";

class UsageError extends Error {}

interface FlagSpec {
  /** Flags taking one value. */
  single: string[];
  /** Flags taking one or more values. */
  multiple?: string[];
  /** Flags taking no value (present or not). */
  boolean?: string[];
}

function parseFlags(command: string, argv: readonly string[], spec: FlagSpec): Map<string, string[]> {
  const flags = new Map<string, string[]>();
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i] as string;
    const eq = arg.indexOf("=");
    const name = arg.startsWith("--") && eq > 0 ? arg.slice(2, eq) : arg.startsWith("--") ? arg.slice(2) : undefined;
    if (name === undefined) throw new UsageError(`${command}: unexpected argument "${arg}" (flags start with --)`);
    if (spec.boolean?.includes(name)) {
      if (eq > 0) throw new UsageError(`${command}: --${name} takes no value`);
      flags.set(name, ["true"]);
      i++;
      continue;
    }
    const isMultiple = spec.multiple?.includes(name) ?? false;
    if (!isMultiple && !spec.single.includes(name)) throw new UsageError(`${command}: unknown flag --${name}`);
    const values: string[] = eq > 0 ? [arg.slice(eq + 1)] : [];
    i++;
    if (eq < 0) {
      while (i < argv.length && !(argv[i] as string).startsWith("--")) {
        values.push(argv[i] as string);
        i++;
        if (!isMultiple) break;
      }
    }
    if (values.length === 0) throw new UsageError(`${command}: --${name} needs a value`);
    if (!isMultiple && flags.has(name)) throw new UsageError(`${command}: --${name} given twice`);
    flags.set(name, [...(flags.get(name) ?? []), ...values]);
  }
  return flags;
}

function one(flags: Map<string, string[]>, name: string): string | undefined {
  return flags.get(name)?.[0];
}

function required(command: string, flags: Map<string, string[]>, name: string, what: string): string {
  const value = one(flags, name);
  if (value === undefined) throw new UsageError(`${command}: missing --${name} ${what}`);
  return value;
}

function numberFlag(command: string, flags: Map<string, string[]>, name: string, integer = false): number | undefined {
  const value = one(flags, name);
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new UsageError(`${command}: --${name} must be ${integer ? "an integer" : "a number"}, got "${value}"`);
  return n;
}

/** Set once stdout's reader has gone away (`score ... | head`): later output is dropped, not an error. */
let stdoutClosed = false;
let stdoutGuarded = false;

/**
 * Makes a closed stdout harmless: an EPIPE (the reader closed the pipe, as `head` does) marks stdout
 * closed instead of crashing the process with an unhandled 'error' event. Installed once per process.
 */
function guardStdout(): void {
  if (stdoutGuarded) return;
  stdoutGuarded = true;
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE" || error.code === "ERR_STREAM_DESTROYED") {
      stdoutClosed = true;
      return;
    }
    process.stderr.write(`switchyard: cannot write to stdout: ${error.message}\n`);
    process.exitCode = 1;
  });
}

/** Writes to stdout unless its reader has gone away; says whether the output can still be read. */
function print(text: string): boolean {
  if (stdoutClosed) return false;
  try {
    process.stdout.write(text);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EPIPE") stdoutClosed = true;
    else throw error;
  }
  return !stdoutClosed;
}

async function run(command: string, body: () => Promise<void>): Promise<number> {
  guardStdout();
  stdoutClosed = false;
  try {
    await body();
    return 0;
  } catch (error) {
    if (stdoutClosed && (error as NodeJS.ErrnoException).code === "EPIPE") return 0;
    if (error instanceof UsageError) {
      process.stderr.write(`switchyard ${error.message}\n`);
      return 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`switchyard ${command}: ${message}\n`);
    return 1;
  }
}

function trainOptionsFrom(command: string, flags: Map<string, string[]>, prices: PriceTable | undefined): TrainOptions {
  const options: TrainOptions = {};
  const epochs = numberFlag(command, flags, "epochs", true);
  const seed = numberFlag(command, flags, "seed", true);
  const l1 = numberFlag(command, flags, "l1");
  const l2 = numberFlag(command, flags, "l2");
  if (epochs !== undefined) {
    if (epochs < 1) throw new UsageError(`${command}: --epochs must be at least 1`);
    options.epochs = epochs;
  }
  if (seed !== undefined) options.seed = seed;
  if (l1 !== undefined) options.l1 = l1;
  if (l2 !== undefined) options.l2 = l2;
  if (prices) options.prices = prices;
  const aliases = flags.get("alias");
  if (aliases) options.aliases = parseAliases(aliases);
  return options;
}

async function readAll(files: readonly string[]): Promise<RoutingRow[]> {
  const rows: RoutingRow[] = [];
  for (const file of files) rows.push(...(await readRows(file)));
  return rows;
}

/**
 * `train --data FILE... --out ROUTER.json [--prices prices.json] [--epochs N] [--seed N] [--l1 X] [--l2 X] [--alias FROM=TO...]`
 * (`--alias`: the same model under two names; FROM's outcomes are trained as TO's.)
 */
export async function trainCommand(argv: string[]): Promise<number> {
  return run("train", async () => {
    const flags = parseFlags("train", argv, { single: ["out", "prices", "epochs", "seed", "l1", "l2"], multiple: ["data", "alias"], boolean: ["calibrate"] });
    const files = flags.get("data");
    if (!files) throw new UsageError("train: missing --data FILE... (routing-outcome JSONL)");
    const out = required("train", flags, "out", "ROUTER.json");
    const pricesPath = one(flags, "prices");
    const prices = pricesPath ? await readPrices(pricesPath) : undefined;
    const options = trainOptionsFrom("train", flags, prices);
    const rows = await readAll(files);
    if (rows.length === 0) throw new RouterInputError(`no rows in ${files.join(", ")}`);
    const started = performance.now();
    const router = flags.has("calibrate") ? trainCalibrated(rows, options) : trainRouter(rows, options);
    await writeFile(out, JSON.stringify(router) + "\n").catch((error: Error) => {
      throw new RouterInputError(`cannot write ${out}: ${error.message}`);
    });
    print(
      `trained router ${router.version} on ${rows.length} rows, ${router.models.length} models (${router.models.join(", ")}) in ${((performance.now() - started) / 1000).toFixed(1)}s → ${out}\n`,
    );
  });
}

/**
 * The gate of the shipped router's difficulty fallback (chosen under cross-validation over four
 * sources by scripts/train-default.ts; see models/CV.md): its share of a prediction is
 * weight · evidence / (evidence + the neighbours' weight + the kind's rows / 1000).
 */
const DEFAULT_GATE: FallbackGate = { weight: 1, evidence: 0.3, kinds: true };

/**
 * `train --calibrate`: stage 1 as `train`, then stage 2 fitted on its out-of-fold predictions
 * (grouped 5-fold): the difficulty fallback where the heads have little evidence, and a per-model
 * calibration so that a predicted 0.8 means about 0.8. Costs five more trainings.
 */
function trainCalibrated(rows: readonly RoutingRow[], options: TrainOptions): ReturnType<typeof trainRouter> {
  const models = options.models ?? [...new Set(rows.flatMap((row) => Object.keys(row.outcomes).filter((m) => scoreOf(row, m) !== undefined)))];
  const cv = crossValidate(rows, 5, { ...options, models, scheme: "grouped" });
  const stage1: Stage1Row[] = rows.map((row, i) => ({
    source: row.source ?? "data",
    fold: cv.folds[i] as number,
    raw: cv.raw![i]!,
    difficulty: cv.difficulty[i] as number,
    evidence: cv.evidence![i] as number,
    taskType: cv.taskTypes?.[i],
    scores: models.map((m) => scoreOf(row, m)),
  }));
  const stage2 = fitStage2(stage1, models, { gate: DEFAULT_GATE, calibration: "platt" });
  return trainRouter(rows, { ...options, models, stage2 });
}

/** `score --router ROUTER.json --data FILE`: one JSON line per input row, same order: `{"id", "tier", "predicted"}`. */
export async function scoreCommand(argv: string[]): Promise<number> {
  return run("score", async () => {
    const flags = parseFlags("score", argv, { single: ["router", "data"] });
    const routerPath = required("score", flags, "router", "ROUTER.json");
    const dataPath = required("score", flags, "data", "FILE");
    const router = await loadRouter(routerPath);
    const rows = await readRows(dataPath);
    const lines: string[] = [];
    for (const row of rows) {
      const prediction = router.predict(row.messages);
      const predicted: Record<string, number> = {};
      for (const model of router.models) predicted[model] = Number((prediction.predicted[model] as number).toFixed(6));
      lines.push(JSON.stringify({ id: row.id, tier: tierFor(prediction.difficulty, router.tiers), predicted }));
      if (lines.length >= 1000) {
        if (!print(lines.join("\n") + "\n")) return;
        lines.length = 0;
        // Let a pending EPIPE from a reader that has gone away arrive before scoring more rows.
        await new Promise((resolve) => setImmediate(resolve));
        if (stdoutClosed) return;
      }
    }
    if (lines.length > 0) print(lines.join("\n") + "\n");
  });
}

function pct(x: number | undefined): string {
  return x === undefined ? "n/a" : `${(100 * x).toFixed(1)}%`;
}

function usd(x: number | undefined): string {
  return x === undefined ? "n/a" : `$${x.toExponential(3)}`;
}

function pairLine(name: string, m: PairMetrics): string {
  return `${name.padEnd(12)} APGR ${m.apgr.toFixed(4)}   CPT(50%) ${pct(m.cpt50).padStart(6)}   CPT(80%) ${pct(m.cpt80).padStart(6)}   strong share @95% ${pct(m.strongShareAt95).padStart(6)}   cost saving @95% ${pct(m.costSavingAt95).padStart(6)}`;
}

/**
 * `eval --router ROUTER.json --data FILE [--strong M --weak M] [--prices prices.json] [--svg OUT.svg]`
 * or `eval --data FILE --kfold K [--fold-scheme plain|grouped] ...`: two-model metrics for a strong/weak
 * pair and, with more than two models, the quality/cost curve against every single model and their hull.
 */
export async function evalCommand(argv: string[]): Promise<number> {
  return run("eval", async () => {
    const flags = parseFlags("eval", argv, {
      single: ["router", "strong", "weak", "prices", "svg", "kfold", "fold-scheme", "epochs", "seed", "l1", "l2"],
      multiple: ["data", "alias"],
    });
    const files = flags.get("data");
    if (!files) throw new UsageError("eval: missing --data FILE (routing-outcome JSONL)");
    const kfold = numberFlag("eval", flags, "kfold", true);
    const routerPath = one(flags, "router");
    if (kfold === undefined && routerPath === undefined) throw new UsageError("eval: give --router ROUTER.json, or --kfold K to cross-validate");
    if (kfold !== undefined && routerPath !== undefined) throw new UsageError("eval: --kfold trains its own routers; drop --router");
    if (kfold !== undefined && kfold < 2) throw new UsageError("eval: --kfold must be at least 2");
    const scheme = one(flags, "fold-scheme") ?? "plain";
    if (scheme !== "plain" && scheme !== "grouped") throw new UsageError(`eval: --fold-scheme must be plain or grouped, got "${scheme}"`);
    const pricesPath = one(flags, "prices");
    const prices = pricesPath ? await readPrices(pricesPath) : undefined;
    let rows = await readAll(files);
    if (rows.length === 0) throw new RouterInputError(`no rows in ${files.join(", ")}`);

    let predictions: RowPredictions;
    if (kfold !== undefined) {
      if (kfold > rows.length) throw new UsageError(`eval: --kfold ${kfold} is more than the ${rows.length} rows`);
      const options = trainOptionsFrom("eval", flags, prices);
      // Evaluate the aliased rows (each outcome keeps its own row's cost), as the routers are trained on them.
      rows = applyAliases(rows, options.aliases);
      predictions = crossValidate(rows, kfold, { ...options, scheme: scheme as FoldScheme });
      print(`${kfold}-fold cross-validation (${scheme} folds) on ${rows.length} rows\n`);
    } else {
      const router = await loadRouter(routerPath as string);
      const aliases = flags.get("alias");
      rows = applyAliases(rows, aliases ? parseAliases(aliases) : router.aliases);
      predictions = predictRows(router, rows);
      print(`router ${router.version} on ${rows.length} rows\n`);
    }
    const models = predictions.models.filter((m) => rows.some((row) => row.outcomes[m] !== undefined));
    if (models.length === 0) throw new RouterInputError("no outcomes in the data for any model the router knows");

    print("\nmodel                                     quality   mean cost   rows\n");
    for (const a of modelAverages(rows, models, prices, predictions.rates)) {
      print(`${a.model.padEnd(40)}  ${a.quality.toFixed(4)}  ${usd(a.cost).padStart(11)}  ${a.n}\n`);
    }

    const calibration = calibrationReport(rows, predictions, models);
    print(`\ncalibration: predicted vs observed score over ${calibration.overall.n} (row, model) predictions\n   predicted bin      n   mean predicted   mean observed\n`);
    for (const bin of calibration.overall.bins) {
      if (bin.n === 0) continue;
      print(`   ${bin.lo.toFixed(1)}-${bin.hi.toFixed(1)}   ${String(bin.n).padStart(7)}   ${bin.predicted.toFixed(4).padStart(14)}   ${bin.observed.toFixed(4).padStart(13)}\n`);
    }
    print(`expected calibration error (ECE) ${calibration.overall.ece.toFixed(4)}; by model: ${calibration.perModel.filter((m) => m.n > 0).map((m) => `${m.model} ${m.ece.toFixed(3)}`).join(", ")}\n`);

    const fallback = defaultPair(rows, models, prices, predictions.rates);
    const strong = one(flags, "strong") ?? fallback?.strong;
    const weak = one(flags, "weak") ?? fallback?.weak;
    for (const [flag, model] of [["strong", strong], ["weak", weak]] as const) {
      if (model !== undefined && !models.includes(model)) throw new RouterInputError(`--${flag} ${model}: no outcomes for that model among the router's models (${models.join(", ")})`);
    }
    const pairs: { name: string; curve: PairMetrics["curve"] }[] = [];
    if (strong !== undefined && weak !== undefined && strong !== weak) {
      print(`\nstrong ${strong} vs weak ${weak}\n`);
      for (const ranking of PAIR_RANKINGS) {
        const metrics = pairReport(rows, predictions, strong, weak, ranking, prices);
        if (ranking === "gap") {
          print(`strong quality ${metrics.strongQuality.toFixed(4)}, weak quality ${metrics.weakQuality.toFixed(4)}, ${metrics.n} rows\n`);
        }
        print(pairLine(ranking === "gap" ? "router" : ranking, metrics) + "\n");
        if (ranking === "gap" || ranking === "length") pairs.push({ name: ranking === "gap" ? "router" : "prompt length", curve: metrics.curve });
      }
      if (predictions.pairScores?.[pairKey(strong, weak)] ?? predictions.pairScores?.[pairKey(weak, strong)]) {
        for (const ranking of PAIR_HEAD_RANKINGS) print(pairLine(ranking, pairReport(rows, predictions, strong, weak, ranking, prices)) + "\n");
      }
      print('("router" ranks by predicted strong minus predicted weak score; "weak-wrong" by 1 - predicted weak; "difficulty" by the router\'s difficulty)\n');
    }

    const svgPath = one(flags, "svg");
    if (models.length > 2) {
      const { metrics, skipped } = multiReport(rows, predictions, prices, models);
      if (!metrics) {
        print(`\nno row has a score and a known cost for every model (${skipped} skipped): no quality/cost curve\n`);
      } else {
        print(`\nquality/cost over ${metrics.n} rows${skipped > 0 ? ` (${skipped} rows without every model's score and cost skipped)` : ""}\n`);
        print("single models                              quality   mean cost   hull quality at that cost   router quality at that cost\n");
        for (const m of [...metrics.models].sort((a, b) => a.cost - b.cost)) {
          const router = Math.max(...metrics.curve.filter((p) => p.cost <= m.cost + 1e-15).map((p) => p.quality));
          const onHull = metrics.hull.some((h) => h.model === m.model);
          print(`${m.model.padEnd(40)}  ${m.quality.toFixed(4)}  ${usd(m.cost).padStart(11)}   ${onHull ? "on hull" : "below hull"}                    ${Number.isFinite(router) ? router.toFixed(4) : "n/a"}\n`);
        }
        print("\nrouter curve (λ = willingness to pay, quality per USD)\n        λ     mean cost   quality\n");
        let previous = "";
        for (const p of metrics.curve) {
          const line = `${usd(p.cost).padStart(11)}   ${p.quality.toFixed(4)}`;
          if (line !== previous) print(`${(p.lambda === Infinity ? "cheapest" : p.lambda.toExponential(2)).padStart(9)}  ${line}\n`);
          previous = line;
        }
        print(`\nhull (zero router): ${metrics.hull.map((h) => h.model).join(" → ")}\n`);
        print(`best single model: ${metrics.best.model}, quality ${metrics.best.quality.toFixed(4)} at ${usd(metrics.best.cost)}\n`);
        print(
          metrics.matchBest
            ? `router matches it at ${usd(metrics.matchBest.cost)} (${pct(metrics.matchBestCostRatio)} of its cost; quality ${metrics.matchBest.quality.toFixed(4)})\n`
            : `router does not reach its quality (best router quality at no more than its cost: ${metrics.qualityAtBestCost.toFixed(4)})\n`,
        );
        if (metrics.matchBestMixedCost !== undefined) print(`mixing two router settings at random, it is matched at ${usd(metrics.matchBestMixedCost)}\n`);
        if (svgPath) await writeSvg(svgPath, qualityCostSvg(metrics, `Router quality vs cost (${metrics.n} prompts)`));
      }
    } else if (svgPath && pairs.length > 0) {
      await writeSvg(svgPath, pairSvg(pairs, `${strong} vs ${weak}`));
    }
  });
}

async function writeSvg(path: string, svg: string): Promise<void> {
  try {
    await writeFile(path, svg);
  } catch (error) {
    throw new RouterInputError(`cannot write ${path}: ${(error as Error).message}`);
  }
  print(`wrote ${path}\n`);
}
