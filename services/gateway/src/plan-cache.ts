import type { policy as policyPb } from "@switchyard/proto";

/**
 * The policy's reusable plans, kept by the gateway so that most requests skip the policy hop.
 * A plan answers one tenant, tier, set of preferences, expected size and, for the models it
 * weighed, their predicted quality (to 0.01: well inside the router's own error); the policy says
 * which predicted-quality keys it read and whether the plan may be reused at all (not for a
 * tenant with a top-tier cap, whose every request must be counted). Plans are dropped when a
 * price or health update arrives (the policy's tables changed) and after `ttlMs` in any case.
 */
export class PlanCache {
  private readonly inputs = new Map<string, string[]>();
  private readonly plans = new Map<string, { plan: policyPb.RoutePlan; expiresAt: number }>();
  private readonly flights = new Map<string, Promise<policyPb.RoutePlan>>();

  constructor(
    private readonly ttlMs = 1_000,
    private readonly maxEntries = 10_000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The plan for a request, if a fresh one is known. */
  get(base: string, predicted: Record<string, number>): policyPb.RoutePlan | undefined {
    if (this.ttlMs <= 0) return undefined;
    const inputs = this.inputs.get(base);
    if (!inputs) return undefined;
    const key = fullKey(base, inputs, predicted);
    const found = this.plans.get(key);
    if (!found) return undefined;
    if (found.expiresAt < this.now()) {
      this.plans.delete(key);
      return undefined;
    }
    return found.plan;
  }

  /** Keeps a plan the policy marked reusable. */
  put(base: string, predicted: Record<string, number>, plan: policyPb.RoutePlan): void {
    if (this.ttlMs <= 0 || !plan.reusable) return;
    this.inputs.set(base, plan.qualityInputs);
    if (this.plans.size >= this.maxEntries) this.plans.delete(this.plans.keys().next().value!);
    this.plans.set(fullKey(base, plan.qualityInputs, predicted), { plan, expiresAt: this.now() + this.ttlMs });
  }

  /** The policy call under way for requests alike, if any (see `fly`). */
  inFlight(base: string, predicted: Record<string, number>): Promise<policyPb.RoutePlan> | undefined {
    return this.flights.get(this.flightKey(base, predicted));
  }

  /** Registers a policy call for requests alike until it settles, so they can share it. */
  fly(base: string, predicted: Record<string, number>, call: Promise<policyPb.RoutePlan>): void {
    const key = this.flightKey(base, predicted);
    this.flights.set(key, call);
    const land = () => {
      if (this.flights.get(key) === call) this.flights.delete(key);
    };
    call.then(land, land);
  }

  /** Before the policy said which predictions a plan reads, requests alike must agree on all of them. */
  private flightKey(base: string, predicted: Record<string, number>): string {
    const inputs = this.inputs.get(base);
    return inputs ? fullKey(base, inputs, predicted) : fullKey(base, Object.keys(predicted).sort(), predicted);
  }

  /** The policy's tables changed: forget every plan. */
  invalidate(): void {
    this.plans.clear();
  }

  get size(): number {
    return this.plans.size;
  }
}

function fullKey(base: string, inputs: string[], predicted: Record<string, number>): string {
  let key = base;
  for (const name of inputs) {
    const q = predicted[name];
    key += q === undefined ? "|-" : `|${Math.round(q * 100)}`;
  }
  return key;
}
