import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { stringify as toYaml } from "yaml";
import { applyEnvOverrides, ConfigError, configSourceFor, exposureProblems, loadConfigFile, parseConfig, redactConfig } from "@switchyard/config";

const USAGE = `usage: switchyard config check [FILE]   validate as \`switchyard start\` would, without starting
       switchyard config print [FILE]   the effective configuration (FILE merged onto the embedded
                                        defaults, environment overrides applied), secrets redacted
FILE defaults to SWITCHYARD_CONFIG, else ./switchyard.yaml, else the embedded defaults.
`;

/** Where a command writes; the real streams unless a test captures them. */
export interface ConfigCommandIo {
  out: (text: string) => void;
  err: (text: string) => void;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

const processIo = (): ConfigCommandIo => ({
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  env: process.env,
  cwd: process.cwd(),
});

/**
 * `switchyard config check [FILE]`: exit 0 and `ok: FILE`, or exit 2 listing every problem by key.
 * `switchyard config print [FILE]`: the effective configuration as YAML, secrets redacted (exit 2
 * when it does not validate). Exit 2 on a usage error too.
 */
export async function configCommand(argv: string[], io: ConfigCommandIo = processIo()): Promise<number> {
  const [action, file, ...extra] = argv;
  if (action === "help" || action === "--help" || action === "-h") {
    io.out(USAGE);
    return 0;
  }
  if ((action !== "check" && action !== "print") || extra.length > 0) {
    io.err(`switchyard config: ${action ? `unexpected "${argv.join(" ")}"` : "say check or print"}\n${USAGE}`);
    return 2;
  }
  let source: string;
  try {
    source = file ? resolve(io.cwd, file) : configSourceFor(io.env, io.cwd);
  } catch (err) {
    return reportProblems(err, io);
  }
  if (action === "check") {
    try {
      loadConfigFile(source, io.env);
    } catch (err) {
      return reportProblems(err, io);
    }
    io.out(`ok: ${file ?? source}\n`);
    return 0;
  }
  try {
    let text: string;
    try {
      text = readFileSync(source, "utf8");
    } catch {
      throw new ConfigError(source, ["cannot read the file"]);
    }
    const config = applyEnvOverrides(parseConfig(text, source), io.env);
    io.out(`# effective configuration: ${source} over the embedded defaults, environment overrides applied, secrets redacted\n`);
    io.out(toYaml(redactConfig(config), { lineWidth: 0 }));
    // Printing is for looking; the exposure rule is still worth saying, as start would refuse.
    for (const problem of exposureProblems(config, io.env)) io.err(`switchyard config: warning: switchyard start would refuse this: ${problem}\n`);
    return 0;
  } catch (err) {
    return reportProblems(err, io);
  }
}

function reportProblems(err: unknown, io: ConfigCommandIo): number {
  if (!(err instanceof ConfigError)) throw err;
  io.err(`switchyard config: ${err.message}\n`);
  return 2;
}
