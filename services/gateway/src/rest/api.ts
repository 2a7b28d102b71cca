import type * as http from "node:http";
import type { Client } from "@connectrpc/connect";
import type { policy as policyPb } from "@switchyard/proto";
import { anthropicMessagesFormat } from "../anthropic/messages.js";
import { GatewayError } from "../errors.js";
import { chatCompletionsFormat } from "../openai/chat.js";
import { EdgePolicy } from "../openai/edge.js";
import { listModels } from "../openai/models.js";
import { responsesFormat } from "../responses/responses.js";
import { serveCompletion, type CompletionDeps } from "./completion.js";
import type { CompletionFormat, ParsedCompletion } from "./format.js";
import { loggedPath, logRequest, toGatewayError } from "./io.js";

export interface RestApiDeps extends CompletionDeps {
  policy: Client<typeof policyPb.PolicyService>;
  /** The operator's page under `/dashboard` (services/gateway/src/dashboard): it answers its own paths. */
  dashboard?: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<boolean>;
}

/** One path of the REST API. */
interface RestRoute {
  method: "GET" | "POST";
  /** The API it belongs to, as audit lines name it. */
  api: string;
  /** Answers the request, its errors included. */
  serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void>;
  /** An error answered before `serve` runs (edge refusal, wrong method) in the path's own format. */
  errorBody(error: GatewayError): unknown;
}

/** Probes answered by the server beneath, for anyone: they carry nothing worth taking. */
const PROBES = new Set(["/healthz", "/readyz"]);

/**
 * The REST API on the gateway's HTTP port, one route table for every path:
 * - `POST /v1/chat/completions`: OpenAI's Chat Completions (with OpenRouter's `models` and `provider`);
 * - `POST /v1/messages`: Anthropic's Messages;
 * - `POST /v1/responses`: OpenAI's Responses (stateless);
 * - `GET /v1/models`: the routable models and their prices;
 * - `GET /dashboard` and its assets and data: the operator's page (its own module).
 * Every request passes the edge first (`EdgePolicy`: Host and Origin), except the probes; then
 * CORS headers for an allowed origin and `OPTIONS` preflights. Returns false for any other path
 * (the server answers it: /metrics, or 404).
 */
export function restApi(deps: RestApiDeps): (req: http.IncomingMessage, res: http.ServerResponse) => Promise<boolean> {
  const edge = new EdgePolicy(deps.config, deps.tenants.authenticates);
  const routes = new Map<string, RestRoute>([
    completionRoute(deps, chatCompletionsFormat),
    completionRoute(deps, anthropicMessagesFormat),
    completionRoute(deps, responsesFormat),
    ["/v1/models", { method: "GET", api: "openai", serve: (req, res) => listModels(deps, req, res), errorBody: (e) => e.toEnvelope() }],
  ]);
  return async (req, res) => {
    const path = (req.url ?? "").split("?")[0] ?? "";
    if (PROBES.has(path)) return false;
    const route = routes.get(path);
    const errorBody = route?.errorBody ?? ((e: GatewayError) => e.toEnvelope());
    try {
      const refusal = edge.refusal(req);
      if (refusal) {
        sendError(res, refusal, errorBody);
        logRequest(deps.logger, route?.api ?? "openai", { method: req.method ?? "", path: loggedPath(path), status: refusal.status, error: refusal.code });
        return true;
      }
      edge.applyCors(req, res);
      if (deps.dashboard && (path === "/dashboard" || path.startsWith("/dashboard/"))) return await deps.dashboard(req, res);
      if (!route) return false;
      if (req.method === "OPTIONS") {
        edge.preflight(req, res, route.method);
        return true;
      }
      if (req.method !== route.method) {
        res.setHeader("allow", `${route.method}, OPTIONS`);
        sendError(res, new GatewayError(405, "invalid_request_error", "method_not_allowed", `use ${route.method} for this path`), errorBody);
        return true;
      }
      await route.serve(req, res);
      return true;
    } catch (err) {
      // Nothing below should throw (each handler answers its own errors); if something does, the
      // client still gets an error body and the process does not see an unhandled rejection.
      const error = toGatewayError(err, deps.logger);
      if (!res.headersSent) sendError(res, error, errorBody);
      else if (!res.writableEnded) res.end();
      return true;
    }
  };
}

function completionRoute<P extends ParsedCompletion>(deps: CompletionDeps, format: CompletionFormat<P>): [string, RestRoute] {
  return [format.path, { method: "POST", api: format.api, serve: (req, res) => serveCompletion(deps, format, req, res), errorBody: (e) => format.errorBody(e) }];
}

/** An error answered outside a request's span (edge refusals, wrong methods, the last-resort catch). */
function sendError(res: http.ServerResponse, error: GatewayError, body: (e: GatewayError) => unknown): void {
  const text = JSON.stringify(body(error));
  res.writeHead(error.status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
