import { spawnSync } from "node:child_process";

/**
 * Whether a command-line tool the deploy checks run is installed. CI installs every one of them
 * (.ci/run) and must fail, not skip, when one is missing: `skip` is true only outside CI.
 */
export function tool(name: string, versionArgs: string[] = ["version"]): { available: boolean; skip: boolean } {
  const available = spawnSync(name, versionArgs, { encoding: "utf8" }).status === 0;
  const skip = !available && !process.env.CI;
  if (skip) console.warn(`deploy/test: ${name} is not installed, its checks are skipped here (CI installs it with .ci/run and fails without it)`);
  return { available, skip };
}
