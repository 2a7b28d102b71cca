/** Development entry point: `node dist/scripts/cli.js train|score|eval <flags>` (the real CLI is `switchyard`). */
import { evalCommand, scoreCommand, trainCommand } from "../src/commands.js";

// `score ... | head` closing stdout early is handled inside the commands themselves.
const commands: Record<string, (argv: string[]) => Promise<number>> = { train: trainCommand, score: scoreCommand, eval: evalCommand };
const name = process.argv[2];
const command = name ? commands[name] : undefined;
if (!command) {
  process.stderr.write(`usage: cli.js train|score|eval <flags>${name ? ` (unknown command "${name}")` : ""}\n`);
  process.exitCode = 2;
} else {
  process.exitCode = await command(process.argv.slice(3));
}
