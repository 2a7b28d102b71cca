import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { provider as pb } from "@switchyard/proto";
import { ErrorKind, isRetryable, ProviderFailure } from "./adapters/types.js";

const CODE_FOR_KIND: Record<ErrorKind, Code> = {
  [ErrorKind.UNSPECIFIED]: Code.Unknown,
  [ErrorKind.BAD_REQUEST]: Code.InvalidArgument,
  [ErrorKind.AUTH]: Code.Unauthenticated,
  [ErrorKind.RATE_LIMITED]: Code.ResourceExhausted,
  [ErrorKind.OVERLOADED]: Code.Unavailable,
  [ErrorKind.TIMEOUT]: Code.DeadlineExceeded,
  [ErrorKind.CONNECTION]: Code.Unavailable,
  [ErrorKind.STREAM_BROKEN]: Code.Aborted,
  [ErrorKind.MALFORMED]: Code.DataLoss,
  [ErrorKind.UNKNOWN_MODEL]: Code.NotFound,
  [ErrorKind.CAPACITY]: Code.ResourceExhausted,
};

/** A typed failure as a ConnectError carrying a ProviderError detail the gateway can act on. */
export function toConnectError(failure: ProviderFailure): ConnectError {
  return new ConnectError(failure.message, CODE_FOR_KIND[failure.kind], undefined, [
    {
      desc: pb.ProviderErrorSchema,
      value: create(pb.ProviderErrorSchema, {
        kind: failure.kind,
        upstreamStatus: failure.upstreamStatus,
        retryAfterMs: BigInt(failure.retryAfterMs),
        retryable: isRetryable(failure.kind),
      }),
    },
  ]);
}

/** Anything thrown that is not a ProviderFailure is our bug: say so without details. */
export function asFailure(err: unknown, label: string): ProviderFailure {
  if (err instanceof ProviderFailure) return err;
  return new ProviderFailure(ErrorKind.UNSPECIFIED, `${label}: internal error in the provider adapter`);
}
