import type { Config } from "@switchyard/config";

/**
 * Caps each tenant's share of requests routed to the top (most expensive) tier over a sliding
 * window of its recent routed requests. A prompt crafted to look hard (the "rerouting LLM routers"
 * attack prepends such text) can push every request to the top tier; the cap bounds what that
 * costs: once the share is reached, further top-tier requests go one tier down until it falls.
 * Each policy replica enforces the cap on the traffic it sees; behind a load balancer the shares
 * match.
 */
export class TopTierCap {
  private readonly windows = new Map<string, { top: boolean[]; next: number; count: number; topCount: number }>();
  private readonly topTier: string;
  private readonly fallbackTier: string | undefined;

  constructor(
    private readonly config: Config,
    private readonly windowSize = 200,
  ) {
    const tiers = config.tiers.map((t) => t.name);
    this.topTier = tiers[tiers.length - 1]!;
    this.fallbackTier = tiers.length > 1 ? tiers[tiers.length - 2] : undefined;
  }

  /**
   * The tier to route in, and why it changed (undefined when it did not). Call `commit` once the
   * request was actually routed: a request that fails to plan does not use up the tenant's share.
   */
  admit(tenant: string, tier: string): { tier: string; note?: string; commit: () => void; capped: boolean } {
    const cap = this.config.tenants.find((t) => t.name === tenant)?.max_top_tier_share ?? 1;
    const w = this.window(tenant);
    let admitted = tier;
    let note: string | undefined;
    if (tier === this.topTier && cap < 1 && this.fallbackTier !== undefined) {
      // Admitting this request must keep the top-tier share of the window (this request included,
      // the oldest one leaving) within the cap; a window not yet full counts its empty slots as
      // lower-tier, so a new tenant may start with top-tier requests up to the cap.
      const leaving = w.count === this.windowSize && w.top[w.next] ? 1 : 0;
      const share = (w.topCount - leaving + 1) / this.windowSize;
      if (share > cap) {
        admitted = this.fallbackTier;
        note = `tenant ${tenant} is at its top-tier cap (${(cap * 100).toFixed(0)}% of recent requests): routed in ${admitted}`;
      }
    }
    const commit = () => this.record(w, admitted === this.topTier);
    // With a cap, every routed request of the tenant counts, so none may bypass the policy.
    const capped = cap < 1;
    return note ? { tier: admitted, note, commit, capped } : { tier: admitted, commit, capped };
  }

  private window(tenant: string) {
    let w = this.windows.get(tenant);
    if (!w) {
      w = { top: new Array<boolean>(this.windowSize).fill(false), next: 0, count: 0, topCount: 0 };
      this.windows.set(tenant, w);
    }
    return w;
  }

  private record(w: { top: boolean[]; next: number; count: number; topCount: number }, top: boolean): void {
    if (w.count === this.windowSize && w.top[w.next]) w.topCount--;
    w.top[w.next] = top;
    if (top) w.topCount++;
    w.next = (w.next + 1) % this.windowSize;
    w.count = Math.min(this.windowSize, w.count + 1);
  }
}
