import type * as http from "node:http";
import type { Config } from "@switchyard/config";
import type { ApiName } from "../accounting/account.js";
import type { GatewayError } from "../errors.js";
import type { CompletionEvent, CompletionRequest, RouteTaken } from "../orchestrator.js";
import type { RequestIdentity } from "../request-context.js";
import type { DoneEvent } from "./io.js";

/** A request body read into the one internal request, plus how the client wants the answer. */
export interface ParsedCompletion {
  completion: Omit<CompletionRequest, "requestId" | "tenant" | "receivedAt">;
  stream: boolean;
}

/** What a format reads of the request besides its body. */
export interface RequestView {
  config: Config;
  header(name: string): string | undefined;
}

/** Where a format writes one answer. */
export interface AnswerSink {
  res: http.ServerResponse;
  identity: RequestIdentity;
  /** Call once, when the first token goes out (the time-to-first-token metric). */
  firstToken(model: string): void;
}

/** How an answer ended, for the span, the metrics and the audit line. */
export interface AnswerOutcome {
  route: RouteTaken;
  done?: DoneEvent;
}

/** Writes one answer from the completion's events, in the format's terms. */
export interface AnswerWriter {
  /**
   * Writes the answer (JSON, or an event stream) and returns how it ended.
   * @throws StreamInterrupted when the answer broke after its first byte went out
   */
  write(events: AsyncGenerator<CompletionEvent>): Promise<AnswerOutcome>;
  /**
   * What ends a stream that broke after it started: the error as this API streams one, and never
   * the API's own end-of-stream marker, so no client takes the half answer for a whole one.
   */
  interrupted(error: GatewayError): string;
}

/**
 * One public API's wire format for completions: everything that differs between
 * `/v1/chat/completions`, `/v1/messages` and `/v1/responses`. The rest (identity, admission,
 * routing, caching, accounting, tracing, metrics, the audit line, timeouts and cancellation) is
 * written once, in `serveCompletion`.
 */
export interface CompletionFormat<P extends ParsedCompletion = ParsedCompletion> {
  /** The API as the books, metrics and audit lines name it. */
  readonly api: Exclude<ApiName, "grpc">;
  /** The route, as the span and the audit line name it. */
  readonly path: string;
  /** `gen_ai.operation.name` of the span. */
  readonly operation: string;
  /**
   * Validates a body and maps it onto the internal request.
   * @throws GatewayError 4xx naming what is wrong, in terms of this API's fields
   */
  parse(body: unknown, request: RequestView): P;
  /** The writer of one answer to a parsed request. */
  answer(parsed: P, sink: AnswerSink): AnswerWriter;
  /** An error response body in this API's own format. */
  errorBody(error: GatewayError): unknown;
}
