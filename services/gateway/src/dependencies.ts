import { endpointFor, type Config } from "@switchyard/config";
import { health } from "@switchyard/proto";
import { createServiceClient, ServingStatus, type MeshIdentity, type Readiness } from "@switchyard/rpc";

const NEEDED = ["policy", "provider"] as const;
const DEGRADABLE = ["classifier", "cache", "ledger"] as const;
type Dependency = (typeof NEEDED)[number] | (typeof DEGRADABLE)[number];

/**
 * Watches the health of the services the gateway calls (grpc.health.v1 Check every `intervalMs`).
 * The gateway is ready when the policy and the provider service are serving; a classifier or cache
 * that is down makes it "degraded", not unready, since requests still get answers without them.
 */
export class DependencyHealth {
  private readonly status = new Map<Dependency, string>();
  private readonly timer: NodeJS.Timeout;
  private readonly clients;

  constructor(config: Config, identity?: MeshIdentity, intervalMs = 2_000) {
    this.clients = [...NEEDED, ...DEGRADABLE].map((name) => ({ name, c: createServiceClient(health.Health, endpointFor(config, name), identity ? { tls: identity } : {}) }));
    for (const { name } of this.clients) this.status.set(name, "unknown");
    void this.probe();
    this.timer = setInterval(() => void this.probe(), intervalMs);
    this.timer.unref();
  }

  readiness(): Readiness {
    const checks: Record<string, string> = {};
    for (const [name, s] of this.status) checks[name] = DEGRADABLE.includes(name as never) && s !== "serving" ? `${s} (degraded: requests still served)` : s;
    return { ready: NEEDED.every((n) => this.status.get(n) === "serving"), checks };
  }

  close(): void {
    clearInterval(this.timer);
    for (const { c } of this.clients) c.close();
  }

  private async probe(): Promise<void> {
    await Promise.all(
      this.clients.map(async ({ name, c }) => {
        try {
          const res = await c.client.check({ service: "" }, { timeoutMs: 1_000 });
          this.status.set(name, res.status === ServingStatus.SERVING ? "serving" : "not serving");
        } catch {
          this.status.set(name, "unreachable");
        }
      }),
    );
  }
}
