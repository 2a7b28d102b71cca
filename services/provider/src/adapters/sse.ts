/** One Server-Sent Event. */
export interface SseEvent {
  event: string;
  data: string;
}

/**
 * Parses a byte stream as Server-Sent Events (WHATWG rules): UTF-8 decoded in streaming mode so a
 * character split across TCP writes survives, lines ending in LF, CRLF or CR, `data:` lines joined
 * with LF, comments ignored. Yields one event per blank line; returns `clean`: whether the stream
 * closed on an event boundary.
 */
export async function* parseSse(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseEvent, { clean: boolean }> {
  const decoder = new TextDecoder("utf-8", { fatal: false });
  let buffer = "";
  let event = "";
  let data: string[] = [];
  let pendingCR = false;
  const takeLine = function* (line: string): Generator<SseEvent> {
    if (line === "") {
      if (data.length > 0) yield { event: event || "message", data: data.join("\n") };
      event = "";
      data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
    else if (field === "event") event = value;
  };
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let start = 0;
    for (let i = 0; i < buffer.length; i++) {
      const c = buffer.charCodeAt(i);
      if (pendingCR) {
        pendingCR = false;
        if (c === 10) {
          start = i + 1;
          continue;
        }
      }
      if (c === 10 || c === 13) {
        yield* takeLine(buffer.slice(start, i));
        start = i + 1;
        pendingCR = c === 13;
      }
    }
    buffer = buffer.slice(start);
  }
  buffer += decoder.decode();
  if (buffer.length > 0) {
    // A final line without its terminator: the stream was cut mid-event.
    return { clean: false };
  }
  return { clean: data.length === 0 };
}
