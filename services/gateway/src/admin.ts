import { Code, ConnectError, type Client, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { admin as adminPb, ledger as ledgerPb } from "@switchyard/proto";
import type { Logger } from "@switchyard/telemetry";
import type { GatewayError } from "./errors.js";
import { rpcCredentials, type TenantResolver } from "./tenants.js";

/**
 * `switchyard.gateway.v1.AdminService`: the operator's view of the books and the keys, for the CLI
 * (`switchyard usage`, `switchyard keys`) and the dashboard. Every call needs an admin key once the
 * gateway authenticates (see `TenantResolver.authorizeAdmin`), then goes to the ledger, which
 * answers only the gateway. Errors from the ledger keep their code; a ledger that is away is
 * `unavailable` with a message that says so.
 */
export class AdminHandler implements ServiceImpl<typeof adminPb.AdminService> {
  constructor(
    private readonly ledger: Client<typeof ledgerPb.LedgerService> | undefined,
    private readonly tenants: TenantResolver,
    private readonly logger: Logger,
  ) {}

  usage(req: ledgerPb.UsageRequest, ctx: HandlerContext): Promise<ledgerPb.UsageResponse> {
    return this.forward(ctx, "Usage", (l) => l.usage(req, { timeoutMs: 10_000 }));
  }

  recentRequests(req: ledgerPb.RecentRequestsRequest, ctx: HandlerContext): Promise<ledgerPb.RecentRequestsResponse> {
    return this.forward(ctx, "RecentRequests", (l) => l.recentRequests(req, { timeoutMs: 10_000 }));
  }

  createKey(req: ledgerPb.CreateKeyRequest, ctx: HandlerContext): Promise<ledgerPb.CreateKeyResponse> {
    return this.forward(ctx, "CreateKey", (l) => l.createKey(req, { timeoutMs: 5_000 }));
  }

  listKeys(req: ledgerPb.ListKeysRequest, ctx: HandlerContext): Promise<ledgerPb.ListKeysResponse> {
    return this.forward(ctx, "ListKeys", (l) => l.listKeys(req, { timeoutMs: 5_000 }));
  }

  revokeKey(req: ledgerPb.RevokeKeyRequest, ctx: HandlerContext): Promise<ledgerPb.RevokeKeyResponse> {
    return this.forward(ctx, "RevokeKey", (l) => l.revokeKey(req, { timeoutMs: 5_000 }));
  }

  private async forward<T>(ctx: HandlerContext, method: string, call: (ledger: Client<typeof ledgerPb.LedgerService>) => Promise<T>): Promise<T> {
    try {
      this.tenants.authorizeAdmin(rpcCredentials(ctx.requestHeader));
    } catch (err) {
      this.logger.info("admin call refused", { method, reason: (err as GatewayError).code });
      throw (err as GatewayError).toConnectError();
    }
    if (!this.ledger) throw new ConnectError("the ledger is not part of this gateway's mesh", Code.Unimplemented);
    try {
      const result = await call(this.ledger);
      // Key management is an audit event: who did what, never the secret.
      if (method === "CreateKey" || method === "RevokeKey") this.logger.info("admin call", { method, key_id: keyIdOf(result) });
      return result;
    } catch (err) {
      const ce = ConnectError.from(err);
      if (ce.code === Code.Unavailable || ce.code === Code.DeadlineExceeded) {
        this.logger.warn("admin call failed: the ledger did not answer", { method, error: ce.rawMessage });
        throw new ConnectError(`the ledger is unavailable (${ce.rawMessage})`, Code.Unavailable);
      }
      if (ce.code === Code.Unknown || ce.code === Code.Internal) {
        this.logger.error("admin call failed in the ledger", { method, error: ce.rawMessage });
        throw new ConnectError(`the ledger failed to answer ${method} (${ce.rawMessage})`, Code.Internal);
      }
      throw new ConnectError(ce.rawMessage, ce.code);
    }
  }
}

function keyIdOf(result: unknown): string {
  const key = (result as { key?: ledgerPb.ApiKey }).key;
  return key?.keyId ?? "";
}
