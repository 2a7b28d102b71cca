import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, reachable } from "./ports.js";

/** How the mesh gets its NATS. */
export type NatsPlan =
  | { mode: "external"; url: string }
  | { mode: "embedded"; url: string; stop: () => Promise<void>; stopNow: () => void }
  | { mode: "none"; why: string };

/**
 * Finds NATS for the mesh: the configured server when it answers; else a `nats-server` of our own
 * (JetStream on, a free port, data in a temporary folder) when the binary is installed; else none,
 * and the services run without broadcast.
 */
export async function planNats(url: string, findBinary: () => string | undefined = whichNatsServer): Promise<NatsPlan> {
  const first = url.split(",")[0]!;
  const parsed = new URL(first.includes("://") ? first : `nats://${first}`);
  if (await reachable(parsed.hostname, Number(parsed.port || 4222))) return { mode: "external", url };
  const binary = findBinary();
  if (!binary) return { mode: "none", why: `no NATS at ${first} and no nats-server binary on the PATH` };
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "switchyard-nats-"));
  const child = spawn(binary, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], { stdio: "ignore" });
  const deadline = Date.now() + 10_000;
  while (!(await reachable("127.0.0.1", port, 200))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
      return { mode: "none", why: `nats-server did not start (exit code ${child.exitCode ?? "none"})` };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    mode: "embedded",
    url: `nats://127.0.0.1:${port}`,
    stop: () => stopChild(child, dir),
    // For a process that is exiting and cannot await: kill and clean up synchronously.
    stopNow: () => {
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function stopChild(child: ChildProcess, dir: string): Promise<void> {
  if (child.exitCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 3_000))]);
    if (child.exitCode === null) child.kill("SIGKILL");
  }
  rmSync(dir, { recursive: true, force: true });
}

/** `nats-server` on the PATH, or in the sbin folders where Debian's package puts it. */
function whichNatsServer(): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/usr/local/sbin"];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, "nats-server");
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this folder
    }
  }
  return undefined;
}
