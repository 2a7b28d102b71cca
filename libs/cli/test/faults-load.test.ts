import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { FaultLoad, Outcome } from "../src/faults/load.js";
import { burstsOf } from "../src/faults/suite.js";

/**
 * The fault suite is only as good as its judge: each way a gateway can end a streamed answer,
 * served by a local server, must be judged as a client would judge it.
 */
const EXPECT = "tok0 tok1 tok2 ";
const chunk = (text: string) => `data: {"choices":[{"index":0,"delta":{"content":${JSON.stringify(text)}}}]}\n\n`;
const ERROR_EVENT = 'data: {"error":{"message":"the provider stream broke","type":"upstream_error","param":null,"code":"upstream_stream_broken"}}\n\n';

const answers: Record<string, (res: http.ServerResponse) => void> = {
  whole: (res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.end(chunk("tok0 ") + chunk("tok1 ") + chunk("tok2 ") + "data: [DONE]\n\n");
  },
  halfThenDone: (res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.end(chunk("tok0 ") + "data: [DONE]\n\n");
  },
  errorThenDone: (res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.end(chunk("tok0 ") + ERROR_EVENT + "data: [DONE]\n\n");
  },
  errorEvent: (res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(chunk("tok0 "));
    setTimeout(() => res.end(ERROR_EVENT), 120);
  },
  cutWithoutError: (res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.end(chunk("tok0 "));
  },
  envelope503: (res) => {
    res.writeHead(503, { "content-type": "application/json" });
    res.end('{"error":{"message":"the provider service is unavailable","type":"api_error","param":null,"code":"provider_service_unavailable"}}');
  },
  plain502: (res) => {
    res.writeHead(502, { "content-type": "text/plain" });
    res.end("Bad Gateway");
  },
  silent: (res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(chunk("tok0 "));
  },
  reset: (res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(chunk("tok0 "));
    setTimeout(() => res.socket?.destroy(), 20);
  },
};

let server: http.Server;
let url = "";

beforeAll(async () => {
  server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => answers[req.url!.split("/")[1]!]!(res));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

/** Runs one worker against one kind of answer for a moment; the outcomes and failure kinds it saw. */
async function judge(kind: string, deadlineMs = 2_000): Promise<{ outcomes: Set<Outcome>; kinds: string[]; stall: number[] }> {
  const load = new FaultLoad();
  load.start({ url: `${url}/${kind}/v1`, model: "m", concurrency: 1, deadlineMs, expectText: EXPECT }, "a");
  await new Promise((r) => setTimeout(r, 150));
  load.setPhase("b");
  const a = await load.collect("a");
  await load.stop();
  return { outcomes: new Set(a.records.map((r) => r[2])), kinds: Object.keys(a.kinds), stall: a.records.map((r) => r[3]) };
}

describe("the fault suite's judge of a streamed answer", () => {
  it("served: the whole answer, then [DONE]", async () => {
    expect((await judge("whole")).outcomes).toEqual(new Set([Outcome.served]));
  });

  it("a half answer followed by [DONE], or an error event followed by [DONE]: the failure that must never happen", async () => {
    expect((await judge("halfThenDone")).outcomes).toEqual(new Set([Outcome.halfAnswerDone]));
    expect((await judge("errorThenDone")).outcomes).toEqual(new Set([Outcome.halfAnswerDone]));
  });

  it("clean: an SSE error event with no [DONE] (with the silence before it), or an error status with the OpenAI envelope", async () => {
    const stream = await judge("errorEvent");
    expect(stream.outcomes).toEqual(new Set([Outcome.streamError]));
    expect(stream.kinds).toEqual(["stream error upstream_stream_broken"]);
    expect(Math.min(...stream.stall)).toBeGreaterThanOrEqual(100);
    const status = await judge("envelope503");
    expect(status.outcomes).toEqual(new Set([Outcome.httpError]));
    expect(status.kinds).toEqual(["HTTP 503 provider_service_unavailable"]);
  });

  it("unclean: a stream cut with neither [DONE] nor an error event, a reset connection, an error without the envelope", async () => {
    for (const kind of ["cutWithoutError", "reset", "plain502"]) expect((await judge(kind)).outcomes, kind).toEqual(new Set([Outcome.unclean]));
  });

  it("hung: nothing more before the deadline (and the request is cut, so the worker goes on)", async () => {
    const silent = await judge("silent", 100);
    expect(silent.outcomes).toEqual(new Set([Outcome.hung]));
  });
});

describe("bursts of requests that reached a rate-limited upstream", () => {
  it("are split by gaps, so the gap between bursts shows whether retry-after was honoured", () => {
    expect(burstsOf([5_000, 100, 120, 11_300, 5_010, 11_302], 1_000)).toEqual([
      { start: 100, end: 120, count: 2 },
      { start: 5_000, end: 5_010, count: 2 },
      { start: 11_300, end: 11_302, count: 2 },
    ]);
  });
});
