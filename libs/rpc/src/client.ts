import type { DescService } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

/** A typed client plus the HTTP/2 session it rides on, opened ahead of the first call. */
export interface ServiceClient<T extends DescService> {
  client: Client<T>;
  /** Opens the HTTP/2 connection now so the first request pays no handshake. */
  warm(): Promise<void>;
  close(): void;
}

export interface ServiceClientOptions {
  interceptors?: Interceptor[];
  /** Keep the connection verified with HTTP/2 PINGs (default 15 s). */
  pingIntervalMs?: number;
}

/**
 * Creates a gRPC client over one long-lived HTTP/2 session. Requests are multiplexed on it; it is
 * pinged while idle so it stays warm, and re-established transparently after a failure.
 */
export function createServiceClient<T extends DescService>(
  service: T,
  baseUrl: string,
  options: ServiceClientOptions = {},
): ServiceClient<T> {
  const sessionManager = new Http2SessionManager(baseUrl, {
    pingIntervalMs: options.pingIntervalMs ?? 15_000,
    pingIdleConnection: true,
    idleConnectionTimeoutMs: 24 * 60 * 60 * 1000,
  });
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager,
    interceptors: options.interceptors ?? [],
  });
  return {
    client: createClient(service, transport),
    warm: async () => {
      await sessionManager.connect();
    },
    close: () => sessionManager.abort(),
  };
}
