import { describe, expect, it } from "vitest";
import { parseSse, type SseEvent } from "../src/adapters/sse.js";

async function parse(pieces: (string | Uint8Array)[]): Promise<{ events: SseEvent[]; clean: boolean }> {
  async function* body() {
    for (const p of pieces) yield typeof p === "string" ? new TextEncoder().encode(p) : p;
  }
  const events: SseEvent[] = [];
  const it = parseSse(body());
  for (;;) {
    const next = await it.next();
    if (next.done) return { events, clean: next.value.clean };
    events.push(next.value);
  }
}

describe("parseSse", () => {
  it("reads LF, CRLF and lone-CR line endings, even with the CRLF pair split across chunks", async () => {
    const { events, clean } = await parse(["data: a\n\n", "data: b\r\n\r", "\n", "data: c\r\r"]);
    expect(events.map((e) => e.data)).toEqual(["a", "b", "c"]);
    expect(clean).toBe(true);
  });

  it("joins multi-line data with LF, keeps event names, skips comments, strips one leading space", async () => {
    const { events } = await parse([": keep-alive\n", "event: message_delta\ndata:  two spaces\ndata:x\n\n"]);
    expect(events).toEqual([{ event: "message_delta", data: " two spaces\nx" }]);
  });

  it("decodes a 4-byte character split over four chunks", async () => {
    const bytes = new TextEncoder().encode("data: 👋\n\n");
    const { events } = await parse([...bytes].map((b) => Uint8Array.of(b)));
    expect(events).toEqual([{ event: "message", data: "👋" }]);
  });

  it("says the stream was not clean when it stops inside an event", async () => {
    expect((await parse(["data: a\n\ndata: b\n"])).clean).toBe(false);
    expect((await parse(["data: a\n\ndata: b"])).clean).toBe(false);
  });
});
