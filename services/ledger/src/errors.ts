import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "@switchyard/telemetry";
import { DatabaseQueryError, DatabaseUnavailableError } from "./database.js";

/** A request the ledger refuses: InvalidArgument naming the field. */
export function invalidArgument(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

/** The books cannot be read or written yet: the schema is still being applied at start. */
export class LedgerNotReadyError extends Error {
  override readonly name = "LedgerNotReadyError";
  constructor() {
    super("the ledger is starting: its database schema is not applied yet");
  }
}

/**
 * Maps any failure of an RPC to the one error its caller sees, once, at the edge: our own
 * ConnectErrors as they are, an unreachable database as Unavailable (the caller may retry), a
 * refused statement or a bug as Internal. The message never carries a stack, an address or SQL.
 */
export function toConnectError(err: unknown, method: string, logger: Logger): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof LedgerNotReadyError) return new ConnectError(err.message, Code.Unavailable);
  if (err instanceof DatabaseUnavailableError) {
    return new ConnectError(`the ledger's database (${err.kind}) is unreachable; try again later`, Code.Unavailable);
  }
  if (err instanceof DatabaseQueryError) {
    logger.error("the database refused a ledger statement", { method, sqlstate: err.sqlstate, problem: err.message });
    return new ConnectError(`the ledger's database refused the request (SQLSTATE ${err.sqlstate})`, Code.Internal);
  }
  logger.error("ledger RPC failed", { method, err });
  return new ConnectError("internal ledger error", Code.Internal);
}
