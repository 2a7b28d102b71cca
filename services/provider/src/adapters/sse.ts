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
  // The previous chunk ended in CR: a LF opening this one belongs to that line end.
  let pendingCR = false;
  for await (const chunk of body) {
    let text = decoder.decode(chunk, { stream: true });
    if (pendingCR && text.length > 0) {
      if (text.charCodeAt(0) === 10) text = text.slice(1);
      pendingCR = false;
    }
    buffer = buffer.length === 0 ? text : buffer + text;
    let start = 0;
    // Line ends found with indexOf (native, fast) rather than a loop over every character.
    let lf = buffer.indexOf("\n");
    let cr = buffer.indexOf("\r");
    for (;;) {
      if (lf !== -1 && lf < start) lf = buffer.indexOf("\n", start);
      if (cr !== -1 && cr < start) cr = buffer.indexOf("\r", start);
      const end = lf === -1 ? cr : cr === -1 ? lf : Math.min(lf, cr);
      if (end === -1) break;
      const line = buffer.slice(start, end);
      start = end + 1;
      if (end === cr) {
        if (buffer.charCodeAt(start) === 10) start++;
        else if (start === buffer.length) pendingCR = true;
      }
      if (line === "") {
        if (data.length > 0) yield { event: event || "message", data: data.length === 1 ? data[0]! : data.join("\n") };
        event = "";
        data = [];
        continue;
      }
      if (line.charCodeAt(0) === 58) continue; // ":" comment
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") event = value;
    }
    buffer = start === 0 ? buffer : buffer.slice(start);
  }
  buffer += decoder.decode();
  if (buffer.length > 0) {
    // A final line without its terminator: the stream was cut mid-event.
    return { clean: false };
  }
  return { clean: data.length === 0 };
}
