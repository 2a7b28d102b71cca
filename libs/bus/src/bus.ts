import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Kvm, type KV } from "@nats-io/kv";
import { readFileSync } from "node:fs";
import { connect, credsAuthenticator, headers as natsHeaders, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import { context, SpanKind, trace } from "@opentelemetry/api";
import { events } from "@switchyard/proto";
import { extractContext, tracer, type Logger } from "@switchyard/telemetry";
import { parsePriceKey, priceKey } from "./keys.js";

export interface BusOptions {
  url: string;
  /** Connection name shown by the NATS server (the service name). */
  name: string;
  priceBucket: string;
  healthSubject: string;
  logger: Logger;
  /** Credentials and TLS (see `natsAuth`). */
  auth?: Partial<ConnectionOptions>;
  /** false: this service never reads or writes prices, so it does not open the price bucket (its NATS user may lack the rights). */
  prices?: boolean;
}

/** The NATS settings of the configuration that say who this service is to the server. */
export interface NatsAuthConfig {
  creds_file: string;
  user: string;
  password_env?: string | undefined;
  token_env?: string | undefined;
  tls: { ca_file: string; cert_file: string; key_file: string };
}

/**
 * Connection options for the configured credentials: a .creds file (JWT and NKey seed), a user
 * and the password in the named environment variable, or a token in one; TLS with the server's
 * CA and, for mutual TLS, a client certificate. Secrets are read here and go nowhere else.
 */
export function natsAuth(c: NatsAuthConfig, env: NodeJS.ProcessEnv = process.env): Partial<ConnectionOptions> {
  const out: Partial<ConnectionOptions> = {};
  if (c.creds_file) out.authenticator = credsAuthenticator(readFileSync(c.creds_file));
  else if (c.user) {
    out.user = c.user;
    if (c.password_env) out.pass = env[c.password_env] ?? "";
  } else if (c.token_env) out.token = env[c.token_env] ?? "";
  if (c.tls.ca_file || c.tls.cert_file) {
    out.tls = {
      ...(c.tls.ca_file ? { caFile: c.tls.ca_file } : {}),
      ...(c.tls.cert_file && c.tls.key_file ? { certFile: c.tls.cert_file, keyFile: c.tls.key_file } : {}),
    };
  }
  return out;
}

export type BusState = "connecting" | "connected" | "reconnecting" | "closed";

/** A price entry seen in the KV bucket (undefined update = deleted). */
export type PriceHandler = (provider: string, model: string, update: events.PriceUpdate | undefined) => void;
export type HealthHandler = (update: events.HealthUpdate, traceparent: string) => void;
/** Called for every message that could not be decoded, with why. */
export type InvalidHandler = (what: "price" | "health", reason: string) => void;

/**
 * The NATS side of a service: prices in a JetStream KV bucket (a late starter sees the whole table
 * at once), health on subjects. It never blocks start-up and never throws at callers: while NATS
 * is away, publishes are dropped (and counted by the caller via the return value), the service
 * keeps its last-known tables, the client reconnects forever, and watches resync on reconnect.
 */
export class Bus {
  private nc: NatsConnection | undefined;
  private kv: KV | undefined;
  private currentState: BusState = "connecting";
  private lastChange = Date.now();
  private readonly priceHandlers: PriceHandler[] = [];
  private readonly healthHandlers: HealthHandler[] = [];
  private invalid: InvalidHandler = () => {};
  private readonly connectHandlers: ((nc: NatsConnection) => void | Promise<void>)[] = [];
  private stopWatch: (() => void) | undefined;
  private closed = false;

  private constructor(private readonly options: BusOptions) {}

  /** Starts connecting in the background and returns at once. */
  static start(options: BusOptions): Bus {
    const bus = new Bus(options);
    void bus.run();
    return bus;
  }

  get state(): BusState {
    return this.currentState;
  }

  /** Milliseconds since the state last changed (how long NATS has been away, when it is). */
  sinceStateChangeMs(now = Date.now()): number {
    return now - this.lastChange;
  }

  /** The NATS connection once made (JetStream publishers and consumers build on it); undefined before. */
  get connection(): NatsConnection | undefined {
    return this.closed ? undefined : this.nc;
  }

  /** Calls `handler` after every connect and reconnect (at once too when connected now). */
  onConnect(handler: (nc: NatsConnection) => void | Promise<void>): void {
    this.connectHandlers.push(handler);
    if (this.nc && this.currentState === "connected") void handler(this.nc);
  }

  onInvalid(handler: InvalidHandler): void {
    this.invalid = handler;
  }

  /** Receives every price now in the bucket, then every change; again in full after a reconnect. */
  watchPrices(handler: PriceHandler): void {
    this.priceHandlers.push(handler);
    if (this.kv && this.priceHandlers.length === 1) void this.restartWatch();
  }

  subscribeHealth(handler: HealthHandler): void {
    this.healthHandlers.push(handler);
    if (this.nc && this.healthHandlers.length === 1) this.subscribeHealthSubject(this.nc);
  }

  /**
   * Publishes a health update; false when NATS is not connected (the update is dropped). When a
   * traced operation caused it (a failed request), the publish is a PRODUCER span whose context
   * travels in the message headers; periodic heartbeats are not traced.
   */
  publishHealth(update: events.HealthUpdate): boolean {
    if (!this.nc || this.currentState !== "connected") return false;
    const subject = `${this.options.healthSubject}.${subjectToken(update.provider)}`;
    const h = natsHeaders();
    const parent = trace.getActiveSpan();
    const span = parent?.isRecording()
      ? tracer().startSpan(`${this.options.healthSubject} publish`, {
          kind: SpanKind.PRODUCER,
          attributes: { "messaging.system": "nats", "messaging.destination.name": subject, "messaging.operation.type": "send" },
        })
      : undefined;
    if (span) {
      const c = span.spanContext();
      h.set("traceparent", `00-${c.traceId}-${c.spanId}-0${c.traceFlags & 1}`);
    }
    this.nc.publish(subject, toBinary(events.HealthUpdateSchema, update), { headers: h });
    span?.end();
    return true;
  }

  /** Writes prices to the KV bucket. Throws when NATS is not connected. */
  async putPrices(updates: events.PriceUpdate[]): Promise<void> {
    const kv = this.kv ?? (await this.waitForKv(5_000));
    const span = tracer().startSpan(`${this.options.priceBucket} publish`, {
      kind: SpanKind.PRODUCER,
      attributes: { "messaging.system": "nats", "messaging.destination.name": this.options.priceBucket, "messaging.batch.message_count": updates.length },
    });
    // KV values cannot carry headers: the trace context rides in the payload.
    const c = span.spanContext();
    const traceparent = `00-${c.traceId}-${c.spanId}-0${c.traceFlags & 1}`;
    try {
      for (const u of updates) await kv.put(priceKey(u.provider, u.model), toBinary(events.PriceUpdateSchema, { ...u, traceparent }));
    } finally {
      span.end();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopWatch?.();
    this.currentState = "closed";
    if (this.nc) await this.nc.drain().catch(() => this.nc?.close());
  }

  private async run(): Promise<void> {
    const { logger } = this.options;
    try {
      this.nc = await connect({
        servers: this.options.url.split(","),
        name: this.options.name,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        waitOnFirstConnect: true,
        pingInterval: 5_000,
        maxPingOut: 2,
        ...this.options.auth,
      });
    } catch (err) {
      if (!this.closed) logger.warn("NATS connection failed; serving on last-known values", { err });
      return;
    }
    if (this.closed) {
      await this.nc.close();
      return;
    }
    await this.onConnected();
    for await (const status of this.nc.status()) {
      if (status.type === "disconnect") {
        this.setState("reconnecting");
        logger.warn("NATS connection lost; serving on last-known values");
      } else if (status.type === "reconnect") {
        logger.info("NATS reconnected; resyncing");
        await this.onConnected();
      }
    }
  }

  private async onConnected(): Promise<void> {
    const nc = this.nc!;
    if (this.options.prices !== false) {
      try {
        this.kv = await new Kvm(nc).create(this.options.priceBucket, { history: 5 });
      } catch (err) {
        this.options.logger.warn("JetStream KV unavailable; prices come from the config only", { err });
      }
    }
    this.setState("connected");
    this.options.logger.info("NATS connected", { server: nc.getServer() });
    if (this.healthHandlers.length > 0 && !this.healthSubscribed) this.subscribeHealthSubject(nc);
    if (this.priceHandlers.length > 0) await this.restartWatch();
    for (const handler of this.connectHandlers) {
      try {
        await handler(nc);
      } catch (err) {
        this.options.logger.warn("a NATS connect handler failed", { err });
      }
    }
  }

  private healthSubscribed = false;

  private subscribeHealthSubject(nc: NatsConnection): void {
    this.healthSubscribed = true;
    // Core NATS subscriptions survive reconnects by themselves.
    nc.subscribe(`${this.options.healthSubject}.>`, {
      callback: (err, msg) => {
        if (err) return;
        let update: events.HealthUpdate;
        try {
          update = fromBinary(events.HealthUpdateSchema, msg.data);
        } catch {
          this.invalid("health", "payload is not a HealthUpdate");
          return;
        }
        // MsgHdrs.get returns "" for a missing key.
        const traceparent = msg.headers?.get("traceparent") ?? "";
        consume(`${this.options.healthSubject} receive`, msg.subject, traceparent, () => {
          for (const h of this.healthHandlers) h(update, traceparent);
        });
      },
    });
  }

  private async restartWatch(): Promise<void> {
    this.stopWatch?.();
    const kv = this.kv;
    if (!kv) return;
    try {
      const watch = await kv.watch({ key: ">" });
      this.stopWatch = () => watch.stop();
      void (async () => {
        for await (const entry of watch) {
          const id = parsePriceKey(entry.key);
          if (!id) {
            this.invalid("price", `key "${entry.key}" is not <provider>.<model>`);
            continue;
          }
          if (entry.operation !== "PUT") {
            for (const h of this.priceHandlers) h(id.provider, id.model, undefined);
            continue;
          }
          let update: events.PriceUpdate;
          try {
            update = fromBinary(events.PriceUpdateSchema, entry.value);
          } catch {
            this.invalid("price", `value of "${entry.key}" is not a PriceUpdate`);
            continue;
          }
          consume(`${this.options.priceBucket} receive`, entry.key, update.traceparent, () => {
            for (const h of this.priceHandlers) h(id.provider, id.model, update);
          });
        }
      })();
    } catch (err) {
      this.options.logger.warn("price watch failed; keeping last-known prices", { err });
    }
  }

  private async waitForKv(timeoutMs: number): Promise<KV> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.kv && this.currentState === "connected") return this.kv;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`NATS at ${this.options.url} is not reachable`);
  }

  private setState(state: BusState): void {
    if (state !== this.currentState) this.lastChange = Date.now();
    this.currentState = state;
  }
}

/**
 * Handles a received message in a CONSUMER span of its own trace, linked (not parented) to the
 * publisher's span: a broadcast is not part of the publishing request.
 */
function consume(name: string, destination: string, traceparent: string, handle: () => void): void {
  if (!traceparent) {
    handle();
    return;
  }
  const remote = trace.getSpanContext(extractContext((k) => (k === "traceparent" ? traceparent : undefined)));
  const span = tracer().startSpan(
    name,
    {
      kind: SpanKind.CONSUMER,
      root: true,
      links: remote ? [{ context: remote }] : [],
      attributes: { "messaging.system": "nats", "messaging.destination.name": destination, "messaging.operation.type": "receive" },
    },
  );
  try {
    context.with(trace.setSpan(context.active(), span), handle);
  } finally {
    span.end();
  }
}

function subjectToken(name: string): string {
  return name.replace(/[.*>\s]/g, "_");
}

/** The bus a service connects with, as its configuration says; undefined when NATS is disabled. */
export function startBus(
  config: { nats: { enabled: boolean; url: string; price_bucket: string; health_subject: string } & NatsAuthConfig },
  name: string,
  logger: Logger,
  options: { prices?: boolean } = {},
): Bus | undefined {
  if (!config.nats.enabled) return undefined;
  return Bus.start({ url: config.nats.url, name, priceBucket: config.nats.price_bucket, healthSubject: config.nats.health_subject, logger, auth: natsAuth(config.nats), ...options });
}
