/** Development entry point: `node dist/scripts/cli.js train|score|eval <flags>` (the real CLI is `switchyard`). */
import { evalCommand, scoreCommand, trainCommand } from "../src/commands.js";

// `score ... | head` closes stdout early: that is the reader's choice, not an error.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(0);
  throw error;
});

const commands: Record<string, (argv: string[]) => Promise<number>> = { train: trainCommand, score: scoreCommand, eval: evalCommand };
const name = process.argv[2];
const command = name ? commands[name] : undefined;
if (!command) {
  process.stderr.write(`usage: cli.js train|score|eval <flags>${name ? ` (unknown command "${name}")` : ""}\n`);
  process.exitCode = 2;
} else {
  process.exitCode = await command(process.argv.slice(3));
}
