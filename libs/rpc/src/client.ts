import * as net from "node:net";
import type { DescService } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { clientTracing } from "./tracing.js";

/** A typed client plus the HTTP/2 session it rides on, opened ahead of the first call. */
export interface ServiceClient<T extends DescService> {
  client: Client<T>;
  /** Opens the HTTP/2 connection now so the first request pays no handshake. */
  warm(): Promise<void>;
  close(): void;
}

export interface ServiceClientOptions {
  interceptors?: Interceptor[];
}

/**
 * Creates a client over one long-lived HTTP/2 session. Requests are multiplexed on it, it is
 * never closed for idleness, and it is re-established transparently after the peer goes away.
 * No keep-alive PINGs: connect-node 2.1 can fire a PING on a session it already destroyed, which
 * throws outside any handler and kills the process (seen when a peer restarts).
 */
export function createServiceClient<T extends DescService>(
  service: T,
  baseUrl: string,
  options: ServiceClientOptions = {},
): ServiceClient<T> {
  const target = new URL(baseUrl);
  const sessionManager = new Http2SessionManager(
    baseUrl,
    { idleConnectionTimeoutMs: 24 * 60 * 60 * 1000 },
    // Small RPC frames must leave at once: Nagle's algorithm would hold them back for an ACK.
    // TCP keep-alive probes let a peer that vanished without a reset (a dead node) be noticed
    // instead of stalling calls on a half-open connection.
    {
      createConnection: () =>
        net.connect({ host: target.hostname.replace(/^\[|\]$/g, ""), port: Number(target.port || 80), noDelay: true, keepAlive: true, keepAliveInitialDelay: 10_000 }),
    },
  );
  // The Connect protocol with binary Protobuf over HTTP/2: measured about a third cheaper per call
  // than gRPC framing in connect-node (no trailers to parse, fewer allocations).
  const transport = createConnectTransport({
    baseUrl,
    httpVersion: "2",
    useBinaryFormat: true,
    sessionManager,
    interceptors: [clientTracing(), ...(options.interceptors ?? [])],
  });
  return {
    client: createClient(service, transport),
    warm: async () => {
      await sessionManager.connect();
    },
    close: () => sessionManager.abort(),
  };
}
