import * as http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

/** One request the fake upstream received. */
export interface RecordedRequest {
  method: string;
  /** Path and query, as sent. */
  url: string;
  headers: http.IncomingHttpHeaders;
  /** The body parsed as JSON (undefined when empty or not JSON). */
  json: Record<string, unknown> | undefined;
}

export type Reply = (res: http.ServerResponse, req: RecordedRequest) => void | Promise<void>;

/** A local HTTP server standing in for a provider API; each test sets how it replies. */
export interface FakeUpstream {
  url: string;
  port: number;
  requests: RecordedRequest[];
  /** GET requests (warm-ups), apart. */
  warmups: RecordedRequest[];
  /** TCP connections accepted so far. */
  connections: number;
  /** Connections open now. */
  readonly openSockets: Set<Socket>;
  reply: Reply;
  close(): Promise<void>;
}

/** Starts a fake upstream on 127.0.0.1 and a free port. GET requests (warm-ups) get a small 404 like real APIs send. */
export async function startFakeUpstream(reply: Reply = (res) => void res.end()): Promise<FakeUpstream> {
  const openSockets = new Set<Socket>();
  const fake: FakeUpstream = {
    url: "",
    port: 0,
    requests: [],
    warmups: [],
    connections: 0,
    openSockets,
    reply,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of openSockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server = http.createServer({ keepAlive: true }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      let json: Record<string, unknown> | undefined;
      try {
        json = text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
      } catch {
        json = undefined;
      }
      const recorded = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, json };
      if (req.method === "GET") {
        fake.warmups.push(recorded);
        res.writeHead(404, { "content-type": "application/json" }).end('{"error":{"message":"Not found","type":"invalid_request_error"}}');
        return;
      }
      fake.requests.push(recorded);
      Promise.resolve(fake.reply(res, recorded)).catch(() => res.destroy());
    });
  });
  server.on("connection", (socket: Socket) => {
    fake.connections++;
    socket.setNoDelay(true);
    openSockets.add(socket);
    socket.once("close", () => openSockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  fake.port = (server.address() as AddressInfo).port;
  fake.url = `http://127.0.0.1:${fake.port}`;
  return fake;
}

/** Replies with an event stream written in one piece. */
export function sseReply(body: string, status = 200, headers: http.OutgoingHttpHeaders = {}): Reply {
  return (res) => {
    res.writeHead(status, { "content-type": "text/event-stream", "cache-control": "no-cache", ...headers });
    res.end(body);
  };
}

/**
 * Replies with an event stream written `pieceSize` bytes at a time with a pause between writes, so
 * events, lines and multi-byte UTF-8 characters arrive split across TCP segments.
 */
export function trickleReply(body: string, pieceSize = 1, pauseMs = 1): Reply {
  return async (res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.flushHeaders();
    const bytes = Buffer.from(body, "utf8");
    for (let i = 0; i < bytes.length; i += pieceSize) {
      if (res.destroyed) return;
      res.write(bytes.subarray(i, i + pieceSize));
      await sleep(pauseMs);
    }
    res.end();
  };
}

/** Replies with any status, content type and body. */
export function bodyReply(status: number, contentType: string, body: string, headers: http.OutgoingHttpHeaders = {}): Reply {
  return (res) => {
    res.writeHead(status, { "content-type": contentType, ...headers });
    res.end(body);
  };
}

/** Writes `body` as the start of an event stream, then cuts the connection without ending the response. */
export function cutReply(body: string): Reply {
  return async (res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(body);
    await sleep(20);
    res.socket?.destroy();
  };
}

/** Sends headers of an event stream, then nothing for `ms`. */
export function silentReply(ms: number, body = ""): Reply {
  return async (res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.flushHeaders();
    if (body) res.write(body);
    await sleep(ms);
    if (!res.destroyed) res.end();
  };
}

/** Writes a whole event stream, then holds the response open `ms` before ending it (a slow final chunk). */
export function lingerReply(body: string, ms: number): Reply {
  return async (res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(body);
    await sleep(ms);
    if (!res.destroyed) res.end();
  };
}
