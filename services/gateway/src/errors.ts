import { Code, ConnectError } from "@connectrpc/connect";
import { provider as pb } from "@switchyard/proto";

/** OpenAI error `type` values we use. */
export type ErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "permission_error"
  | "not_found_error"
  | "rate_limit_error"
  | "api_error"
  | "upstream_error"
  | "timeout_error";

/**
 * An error as a client sees it: HTTP status and OpenAI envelope fields outside, a gRPC code
 * inside. Messages never hold a stack, an upstream URL or a key.
 */
export class GatewayError extends Error {
  constructor(
    readonly status: number,
    readonly type: ErrorType,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    /** When to try again (429): the `retry-after` header, in seconds. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = "GatewayError";
  }

  /** Headers that go with this error (`retry-after`). */
  headers(): Record<string, string> {
    return this.retryAfterSeconds === undefined ? {} : { "retry-after": String(this.retryAfterSeconds) };
  }

  /** The OpenAI error envelope. */
  toEnvelope(): { error: { message: string; type: string; param: string | null; code: string } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }

  /** The same error for a Connect/gRPC caller. */
  toConnectError(): ConnectError {
    const h = this.headers();
    return new ConnectError(this.message, codeForStatus(this.status), Object.keys(h).length > 0 ? h : undefined);
  }
}

/** A client mistake in the request: 400. */
export function invalidRequest(message: string, param: string | null = null, code = "invalid_request"): GatewayError {
  return new GatewayError(400, "invalid_request_error", code, message, param);
}

function codeForStatus(status: number): Code {
  switch (status) {
    case 400:
    case 413:
    case 415:
      return Code.InvalidArgument;
    case 401:
      return Code.Unauthenticated;
    case 403:
      return Code.PermissionDenied;
    case 404:
      return Code.NotFound;
    case 429:
      return Code.ResourceExhausted;
    case 504:
      return Code.DeadlineExceeded;
    case 503:
      return Code.Unavailable;
    default:
      return Code.Internal;
  }
}

const STATUS_FOR_KIND: Partial<Record<pb.ErrorKind, [number, ErrorType, string]>> = {
  [pb.ErrorKind.BAD_REQUEST]: [400, "invalid_request_error", "upstream_rejected_request"],
  [pb.ErrorKind.AUTH]: [502, "upstream_error", "upstream_auth_failed"],
  [pb.ErrorKind.RATE_LIMITED]: [429, "rate_limit_error", "upstream_rate_limited"],
  [pb.ErrorKind.OVERLOADED]: [503, "upstream_error", "upstream_overloaded"],
  [pb.ErrorKind.TIMEOUT]: [504, "timeout_error", "upstream_timeout"],
  [pb.ErrorKind.CONNECTION]: [502, "upstream_error", "upstream_unreachable"],
  [pb.ErrorKind.STREAM_BROKEN]: [502, "upstream_error", "upstream_stream_broken"],
  [pb.ErrorKind.MALFORMED]: [502, "upstream_error", "upstream_malformed"],
  [pb.ErrorKind.UNKNOWN_MODEL]: [404, "not_found_error", "model_not_found"],
  [pb.ErrorKind.CAPACITY]: [429, "rate_limit_error", "capacity_exceeded"],
};

/** The typed provider failure in a ConnectError from the provider service, if any. */
export function providerErrorOf(err: ConnectError): pb.ProviderError | undefined {
  return err.findDetails(pb.ProviderErrorSchema)[0];
}

/** Maps a failed provider call to what the client sees. */
export function fromProviderError(err: unknown): GatewayError {
  const ce = ConnectError.from(err);
  const detail = providerErrorOf(ce);
  const mapped = detail ? STATUS_FOR_KIND[detail.kind] : undefined;
  if (mapped) return new GatewayError(mapped[0], mapped[1], mapped[2], ce.rawMessage);
  if (ce.code === Code.DeadlineExceeded) return new GatewayError(504, "timeout_error", "timeout", "the request timed out");
  if (ce.code === Code.Canceled) return new GatewayError(499 as number, "api_error", "cancelled", "the request was cancelled");
  return new GatewayError(503, "api_error", "provider_service_unavailable", "the provider service is unavailable");
}
