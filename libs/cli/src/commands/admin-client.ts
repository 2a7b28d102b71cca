import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { loadConfig } from "@switchyard/config";
import { admin } from "@switchyard/proto";
import { createServiceClient } from "@switchyard/rpc";

/** The gateway's admin API as the CLI calls it, and how to close it. */
export interface AdminConnection {
  client: Client<typeof admin.AdminService>;
  /** Call options: the admin key (from SWITCHYARD_ADMIN_KEY) and a timeout. */
  callOptions: { headers: Record<string, string>; timeoutMs: number };
  url: string;
  close(): void;
}

/**
 * Connects to a gateway's admin API: `--url`, else SWITCHYARD_URL, else the gRPC port of the
 * configuration in SWITCHYARD_CONFIG or ./switchyard.yaml (8081 by default). The admin key, when
 * the gateway needs one, comes from SWITCHYARD_ADMIN_KEY (never a flag: it would land in shell history).
 */
export function connectAdmin(url: string | undefined, env: NodeJS.ProcessEnv = process.env): AdminConnection {
  const target = url ?? env.SWITCHYARD_URL ?? defaultUrl(env);
  const parsed = URL.canParse(target) ? new URL(target) : undefined;
  if (!parsed || !/^https?:$/.test(parsed.protocol)) throw new Error(`--url "${target}" is not an http(s) URL`);
  const connection = createServiceClient(admin.AdminService, target, { label: `the gateway at ${parsed.host}` });
  const key = env.SWITCHYARD_ADMIN_KEY;
  return {
    client: connection.client,
    callOptions: { headers: key ? { authorization: `Bearer ${key}` } : {}, timeoutMs: 15_000 },
    url: target,
    close: () => connection.close(),
  };
}

function defaultUrl(env: NodeJS.ProcessEnv): string {
  try {
    const { config } = loadConfig(env);
    const host = config.listen_host === "0.0.0.0" || config.listen_host === "::" ? "127.0.0.1" : config.listen_host;
    return `http://${host.includes(":") ? `[${host}]` : host}:${config.ports.gateway_grpc}`;
  } catch {
    return "http://127.0.0.1:8081";
  }
}

/** What a failed admin call means to the person at the terminal. */
export function adminErrorMessage(err: unknown, url: string): string {
  const ce = ConnectError.from(err);
  switch (ce.code) {
    case Code.Unauthenticated:
      return `${ce.rawMessage} (set SWITCHYARD_ADMIN_KEY)`;
    case Code.PermissionDenied:
      return ce.rawMessage;
    case Code.Unavailable:
      return /ledger/.test(ce.rawMessage) ? ce.rawMessage : `cannot reach the gateway at ${url}: is it running? (${ce.rawMessage})`;
    default:
      return ce.rawMessage;
  }
}

/**
 * Runs one admin call for a CLI command and prints what it returns: exit 0; a bad `--url` is a
 * usage error (exit 2); a call that fails prints why (exit 1). The connection is closed either way.
 */
export async function runAdminCall(command: string, url: string | undefined, call: (admin: AdminConnection) => Promise<string>): Promise<number> {
  let admin: AdminConnection;
  try {
    admin = connectAdmin(url);
  } catch (err) {
    process.stderr.write(`switchyard ${command}: ${(err as Error).message}\n`);
    return 2;
  }
  try {
    process.stdout.write(await call(admin));
    return 0;
  } catch (err) {
    process.stderr.write(`switchyard ${command}: ${adminErrorMessage(err, admin.url)}\n`);
    return 1;
  } finally {
    admin.close();
  }
}
