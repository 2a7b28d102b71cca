import { vi } from "vitest";
import { seededRandom } from "../src/hash.js";
import type { RoutingRow } from "../src/data.js";

const TOPICS = ["cooking", "gardening", "football", "travel", "music", "weather", "movies", "shopping"];
const HARD = ["quantum", "topology", "cryptography"];

/**
 * A synthetic routing set with a learnable signal: prompts about a "hard" topic are answered by the
 * strong model only; everything else by both (with a little noise). A third model is missing on every
 * third row.
 */
export function syntheticRows(n: number, seed = 1): RoutingRow[] {
  const random = seededRandom(seed);
  const rows: RoutingRow[] = [];
  for (let i = 0; i < n; i++) {
    const hard = random() < 0.3;
    const topic = hard ? HARD[Math.floor(random() * HARD.length)] : TOPICS[Math.floor(random() * TOPICS.length)];
    const filler = TOPICS[Math.floor(random() * TOPICS.length)];
    const content = `Question ${i}: tell me something interesting about ${topic} and how it relates to ${filler}.`;
    const noise = random() < 0.05;
    const row: RoutingRow = {
      id: `syn/${i}`,
      task: "synthetic",
      messages: [{ role: "user", content }],
      outcomes: {
        strong: { score: noise ? 0 : 1, cost_usd: 0.01 },
        weak: { score: hard || noise ? 0 : 1, cost_usd: 0.0001 },
      },
    };
    if (i % 3 !== 0) row.outcomes["middle"] = { score: hard ? (random() < 0.5 ? 1 : 0) : 1, cost_usd: 0.001 };
    rows.push(row);
  }
  return rows;
}

export function toJsonl(rows: readonly RoutingRow[]): string {
  return rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
}

/** Runs a command function with stdout and stderr captured; returns its exit code and output. */
export async function capture(run: () => Promise<number>): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const out = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    const code = await run();
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}
