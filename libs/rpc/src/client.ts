import type { DescService } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { createLeanClient, H2Channel, type ClientTls } from "./lean/client.js";

/** A typed client plus the HTTP/2 connection it rides on, opened ahead of the first call. */
export interface ServiceClient<T extends DescService> {
  client: Client<T>;
  /** Opens the HTTP/2 connection now so the first request pays no handshake. */
  warm(): Promise<void>;
  close(): void;
}

export interface ServiceClientOptions {
  /** Mutual TLS: this caller's certificate and the CA that signed the service's. */
  tls?: ClientTls;
  /** What to call the service in errors ("the provider service"). */
  label?: string;
}

/**
 * Creates a client of an internal service: the Connect protocol with binary Protobuf over one
 * long-lived HTTP/2 connection, requests multiplexed on it, re-established after the peer goes
 * away. The same wire protocol as Connect-ES's transport, at a fraction of its CPU per call.
 */
export function createServiceClient<T extends DescService>(service: T, baseUrl: string, options: ServiceClientOptions = {}): ServiceClient<T> {
  const channel = new H2Channel(baseUrl, options);
  return {
    client: createLeanClient(service, channel),
    warm: () => channel.warm(),
    close: () => channel.close(),
  };
}
