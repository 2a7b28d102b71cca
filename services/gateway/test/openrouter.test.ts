import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { policy } from "@switchyard/proto";
import { CHAT, envelope, JSON_HEADERS, startTestApi, type TestApi } from "./http-harness.js";

/** Two configured providers, so provider names can be checked. */
const PROVIDERS = [
  { name: "sim", kind: "simulator", enabled: true, models: [{ name: "a", input_usd_per_mtok: 1, output_usd_per_mtok: 2, tiers: ["simple", "standard", "complex"] }] },
  { name: "other", kind: "simulator", enabled: true, models: [{ name: "b", input_usd_per_mtok: 1, output_usd_per_mtok: 2, tiers: ["simple", "standard", "complex"] }] },
];

describe("OpenRouter's models and provider on /v1/chat/completions", () => {
  let api: TestApi;
  beforeAll(async () => (api = await startTestApi({ providers: PROVIDERS })));
  afterAll(() => api.close());

  const post = (body: Record<string, unknown>) => api.send({ headers: JSON_HEADERS, body: { ...CHAT, ...body } });

  it("hands the model list to the policy in order, a concrete 'model' first, with no tier", async () => {
    const res = await post({ model: "other/b", models: ["sim/a", "other/b"] });
    expect(res.status).toBe(200);
    expect(api.routeRequests.at(-1)).toMatchObject({ models: ["other/b", "sim/a"], tier: "", pinnedModel: "" });
    await post({ model: "switchyard/auto", models: ["sim/a"] });
    expect(api.routeRequests.at(-1)!.models).toEqual(["sim/a"]);
  });

  it("hands provider preferences to the policy, and of two caps on the output price the stricter", async () => {
    const res = await post({
      provider: { order: ["other"], only: ["other", "sim"], ignore: [], allow_fallbacks: false, sort: "throughput", max_price: { prompt: 3, completion: 8 } },
      switchyard: { max_output_usd_per_mtok: 5 },
    });
    expect(res.status).toBe(200);
    const prefs = api.routeRequests.at(-1)!.preferences!;
    expect(prefs.providers).toMatchObject({ order: ["other"], only: ["other", "sim"], ignore: [], allowFallbacks: false, sort: policy.ProviderSort.THROUGHPUT });
    expect(prefs.maxInputMicroUsdPerMtok).toBe(3_000_000n);
    expect(prefs.maxOutputMicroUsdPerMtok).toBe(5_000_000n);
    await post({ provider: { max_price: { completion: 1.5 } }, switchyard: { max_output_usd_per_mtok: 5 } });
    expect(api.routeRequests.at(-1)!.preferences!.maxOutputMicroUsdPerMtok).toBe(1_500_000n);
    await post({ provider: { data_collection: "allow", zdr: false, require_parameters: false } });
    expect(api.routeRequests.at(-1)!.preferences!.providers).toMatchObject({ only: [], allowFallbacks: true, sort: policy.ProviderSort.UNSPECIFIED });
  });

  it.each([
    ["an unknown provider", { provider: { only: ["nope"] } }, "provider.only", /"nope", which is not a configured provider \(providers: sim, other\)/],
    ["a provider both only and ignored", { provider: { only: ["sim"], ignore: ["sim"] } }, "provider.ignore", /both/],
    ["an unknown sort", { provider: { sort: "vibes" } }, "provider.sort", /price/],
    ["zero data retention", { provider: { zdr: true } }, "provider.zdr", /data retention/],
    ["data_collection deny", { provider: { data_collection: "deny" } }, "provider.data_collection", /data policies/],
    ["a per-request price", { provider: { max_price: { request: 0.01 } } }, "provider.max_price.request", /prompt and completion/],
    ["an unknown preference", { provider: { ordr: ["sim"] } }, "provider.ordr", /not a provider preference/],
    ["switchyard/auto in models", { models: ["switchyard/auto"] }, "models", /concrete/],
    ["a tier alias with models", { model: "switchyard/auto:standard", models: ["sim/a"] }, "models", /one or the other/],
    ["an empty list", { models: [] }, "models", /non-empty/],
  ])("%s: 400 naming the field, nothing routed", async (_name, body, param, message) => {
    const before = api.routeRequests.length;
    const res = await post(body);
    expect(res.status).toBe(400);
    const error = envelope(res);
    expect(error).toMatchObject({ type: "invalid_request_error", param });
    expect(error.message).toMatch(message);
    expect(api.routeRequests.length).toBe(before);
  });
});
