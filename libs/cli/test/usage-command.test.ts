import { describe, expect, it } from "vitest";
import { parseTime } from "../src/commands/usage.js";

describe("switchyard usage time flags", () => {
  const now = Date.UTC(2026, 10, 30, 12, 0);
  it("reads durations back from now", () => {
    expect(parseTime("30m", now, "--since")).toBe(now - 30 * 60_000);
    expect(parseTime("7d", now, "--since")).toBe(now - 7 * 86_400_000);
    expect(parseTime("4w", now, "--since")).toBe(now - 28 * 86_400_000);
  });
  it("reads dates and times as UTC unless they name a zone", () => {
    expect(parseTime("2026-11-01", now, "--since")).toBe(Date.UTC(2026, 10, 1));
    expect(parseTime("2026-11-01T12:00", now, "--since")).toBe(Date.UTC(2026, 10, 1, 12));
    expect(parseTime("2026-11-01T12:00+02:00", now, "--since")).toBe(Date.UTC(2026, 10, 1, 10));
  });
  it("names the flag and the forms it takes when it cannot read one", () => {
    expect(() => parseTime("yesterday", now, "--until")).toThrow(/--until "yesterday" is neither a duration/);
    expect(() => parseTime("2026-13-45", now, "--since")).toThrow(/--since/);
  });
});
