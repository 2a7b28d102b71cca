import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { health } from "@switchyard/proto";

const { Health, HealthCheckResponseSchema } = health;

/** grpc.health.v1 serving status. */
export const ServingStatus = health.HealthCheckResponse_ServingStatus;
export type ServingStatus = health.HealthCheckResponse_ServingStatus;

/**
 * Serving status per service name, as `grpc.health.v1.Health` reports it. The empty name is the
 * whole server. Kubernetes' `grpc:` probe and `switchyard start` both read it.
 */
export class HealthStatus {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Set<() => void>();

  constructor(services: string[]) {
    this.statuses.set("", ServingStatus.NOT_SERVING);
    for (const s of services) this.statuses.set(s, ServingStatus.NOT_SERVING);
  }

  /** Sets one service's status (or, with no name, all of them). */
  set(status: ServingStatus, service?: string): void {
    if (service === undefined) for (const key of this.statuses.keys()) this.statuses.set(key, status);
    else this.statuses.set(service, status);
    for (const w of this.watchers) w();
  }

  get(service = ""): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /** Registers `grpc.health.v1.Health` on a Connect router. */
  register(router: ConnectRouter): void {
    router.service(Health, {
      check: (req) => {
        const status = this.statuses.get(req.service);
        if (status === undefined) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
        return create(HealthCheckResponseSchema, { status });
      },
      watch: (req, ctx) => this.watch(req.service, ctx),
    });
  }

  private async *watch(service: string, ctx: HandlerContext) {
    let last: ServingStatus | undefined;
    let wake: (() => void) | undefined;
    const notify = () => wake?.();
    this.watchers.add(notify);
    const onAbort = () => wake?.();
    ctx.signal.addEventListener("abort", onAbort);
    try {
      while (!ctx.signal.aborted) {
        const status = this.statuses.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
        if (status !== last) {
          last = status;
          yield create(HealthCheckResponseSchema, { status });
        }
        await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      this.watchers.delete(notify);
      ctx.signal.removeEventListener("abort", onAbort);
    }
  }
}
