import type * as http from "node:http";
import { context, SpanStatusCode, type Span } from "@opentelemetry/api";
import type { Client } from "@connectrpc/connect";
import type { Config } from "@switchyard/config";
import type { policy as policyPb } from "@switchyard/proto";
import type { Logger } from "@switchyard/telemetry";
import { anthropicError } from "../anthropic/messages.js";
import { GatewayError } from "../errors.js";
import { AUTO_MODEL } from "../model-name.js";
import { newRequestIdentity } from "../request-context.js";
import type { Caller, TenantResolver } from "../tenants.js";
import { credentials, logRequest, sendJson, startServerSpan } from "../rest/io.js";

export interface ModelListDeps {
  config: Config;
  policy: Client<typeof policyPb.PolicyService>;
  tenants: TenantResolver;
  logger: Logger;
}

/**
 * `GET /v1/models`: `switchyard/auto`, a tier alias per tier, and every routable model with its
 * current prices. In OpenAI's shape, or in Anthropic's (`{data: [{type: "model", id, display_name,
 * created_at}], has_more, first_id, last_id}`) for a client that sends `anthropic-version`, as
 * Anthropic's SDKs do.
 */
export async function listModels(deps: ModelListDeps, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const { span, ctx } = startServerSpan(deps.config, req, "GET /v1/models", { "http.request.method": "GET", "http.route": "/v1/models" });
  try {
    await context.with(ctx, () => listModelsInSpan(deps, req, res, span));
  } finally {
    span.end();
  }
}

async function listModelsInSpan(deps: ModelListDeps, req: http.IncomingMessage, res: http.ServerResponse, span: Span): Promise<void> {
  const receivedAt = performance.now();
  const identity = newRequestIdentity(span);
  let caller: Caller = { tenant: "", keyId: "" };
  let status = 200;
  let errorCode = "";
  const anthropic = req.headers["anthropic-version"] !== undefined;
  try {
    caller = await deps.tenants.identify(credentials(req));
    const { models } = await deps.policy.listModels({}, { timeoutMs: 2_000 });
    const data = [
      { id: AUTO_MODEL, object: "model", created: 0, owned_by: "switchyard", switchyard: { routed: true, tiers: deps.config.tiers.map((t) => t.name) } },
      ...deps.config.tiers.map((t) => ({ id: `${AUTO_MODEL}:${t.name}`, object: "model", created: 0, owned_by: "switchyard", switchyard: { routed: true, tiers: [t.name] } })),
      ...models.map((m) => ({
        id: `${m.provider}/${m.model}`,
        object: "model",
        created: 0,
        owned_by: m.provider,
        switchyard: {
          routed: false,
          tiers: m.tiers,
          circuit: m.circuit,
          price_source: m.priceSource,
          input_usd_per_mtok: Number(m.price?.inputMicroUsdPerMtok ?? 0n) / 1e6,
          output_usd_per_mtok: Number(m.price?.outputMicroUsdPerMtok ?? 0n) / 1e6,
          cached_input_usd_per_mtok: Number(m.price?.cachedInputMicroUsdPerMtok ?? 0n) / 1e6,
        },
      })),
    ];
    if (anthropic) {
      const epoch = new Date(0).toISOString();
      const listed = data.map((m) => ({ type: "model", id: m.id, display_name: m.id, created_at: epoch }));
      sendJson(res, 200, { data: listed, has_more: false, first_id: listed[0]?.id ?? null, last_id: listed[listed.length - 1]?.id ?? null }, identity);
    } else sendJson(res, 200, { object: "list", data }, identity);
  } catch (err) {
    const error = err instanceof GatewayError ? err : new GatewayError(503, "api_error", "policy_unavailable", "the model list is unavailable: the policy service did not answer");
    status = error.status;
    errorCode = error.code;
    span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
    sendJson(res, error.status, anthropic ? anthropicError(error) : error.toEnvelope(), identity);
  } finally {
    span.setAttribute("http.response.status_code", status);
    logRequest(deps.logger, "openai", {
      request_id: identity.requestId,
      trace_id: identity.traceId,
      method: "GET",
      path: "/v1/models",
      status,
      tenant: caller.tenant,
      key_id: caller.keyId,
      ...(errorCode ? { error: errorCode } : {}),
      duration_ms: Math.round((performance.now() - receivedAt) * 100) / 100,
    });
  }
}
