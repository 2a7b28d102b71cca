import { parseArgs } from "node:util";
import { ledger } from "@switchyard/proto";
import { runAdminCall, type AdminConnection } from "./admin-client.js";

const KEYS_HELP = `usage: switchyard keys create --tenant T [--name NAME] [--budget-usd 50 [--period day|week|month]] [--rpm 600] [--tpm 200000] [--url URL]
       switchyard keys list [--tenant T] [--all] [--json] [--url URL]
       switchyard keys revoke KEY_ID [--url URL]

API keys managed at run time, kept in the ledger (only their SHA-256). "create" prints the new key
once, alone on its last line; it is stored nowhere. A revoked key is refused by every gateway
replica within about a second. The admin key, when the gateway needs one, is read from SWITCHYARD_ADMIN_KEY.
`;

const PERIODS: Record<string, ledger.BudgetPeriod> = { day: ledger.BudgetPeriod.DAY, week: ledger.BudgetPeriod.WEEK, month: ledger.BudgetPeriod.MONTH };

/** `switchyard keys create|list|revoke`. */
export async function keysCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === "--help" || sub === "-h" || sub === "help") {
    process.stdout.write(KEYS_HELP);
    return sub ? 0 : 2;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      options: {
        tenant: { type: "string" },
        name: { type: "string" },
        "budget-usd": { type: "string" },
        period: { type: "string" },
        rpm: { type: "string" },
        tpm: { type: "string" },
        all: { type: "boolean" },
        json: { type: "boolean" },
        url: { type: "string" },
      },
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    process.stderr.write(`switchyard keys: ${(err as Error).message}\n\n${KEYS_HELP}`);
    return 2;
  }
  const { values, positionals } = parsed;
  let call: (admin: AdminConnection) => Promise<string>;
  try {
    if (sub === "create") {
      if (positionals.length > 0) throw new Error(`unexpected argument "${positionals[0]}"`);
      if (!values.tenant) throw new Error("--tenant is required");
      const limits = {
        budgetMicroUsd: values["budget-usd"] === undefined ? 0n : budgetMicro(values["budget-usd"]),
        period: PERIODS[values.period ?? "month"] ?? invalid(`--period must be day, week or month`),
        requestsPerMinute: values.rpm === undefined ? 0 : integer(values.rpm, "--rpm"),
        tokensPerMinute: values.tpm === undefined ? 0 : integer(values.tpm, "--tpm"),
      };
      if (values.period !== undefined && values["budget-usd"] === undefined) throw new Error("--period goes with --budget-usd");
      call = async (admin) => {
        const res = await admin.client.createKey({ tenant: values.tenant!, name: values.name ?? "", limits }, admin.callOptions);
        const k = res.key!;
        // The key alone on the last line, so `| tail -1` captures it.
        return `created key ${k.keyId} for tenant ${k.tenant}${k.name ? ` (${k.name})` : ""}; limits: ${limitsText(k.limits)}\nstore it now: it is not shown again\n${res.secret}\n`;
      };
    } else if (sub === "list") {
      if (positionals.length > 0) throw new Error(`unexpected argument "${positionals[0]}"`);
      call = async (admin) => {
        const res = await admin.client.listKeys({ tenant: values.tenant ?? "", includeRevoked: values.all ?? false }, admin.callOptions);
        if (values.json) {
          return `${JSON.stringify(
            res.keys.map((k) => ({
              key_id: k.keyId,
              tenant: k.tenant,
              name: k.name,
              created_at: new Date(Number(k.createdAtUnixMs)).toISOString(),
              revoked_at: k.revokedAtUnixMs > 0n ? new Date(Number(k.revokedAtUnixMs)).toISOString() : null,
              budget_usd: k.limits && k.limits.budgetMicroUsd > 0n ? Number(k.limits.budgetMicroUsd) / 1e6 : null,
              period: k.limits && k.limits.budgetMicroUsd > 0n ? periodName(k.limits.period) : null,
              rpm: k.limits?.requestsPerMinute || null,
              tpm: k.limits?.tokensPerMinute || null,
            })),
          )}\n`;
        }
        if (res.keys.length === 0) return "no keys\n";
        const rows = [["key id", "tenant", "name", "created", "state", "limits"], ...res.keys.map((k) => [k.keyId, k.tenant, k.name || "-", iso(k.createdAtUnixMs), k.revokedAtUnixMs > 0n ? `revoked ${iso(k.revokedAtUnixMs)}` : "valid", limitsText(k.limits)])];
        const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
        return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n") + "\n";
      };
    } else if (sub === "revoke") {
      const [keyId, ...extra] = positionals;
      if (!keyId) throw new Error("revoke needs the key id (see `switchyard keys list`)");
      if (extra.length > 0) throw new Error(`unexpected argument "${extra[0]}"`);
      if (!/^[0-9a-f]{12}$/.test(keyId)) throw new Error(`"${keyId}" is not a key id (12 hex digits, as \`switchyard keys list\` shows)`);
      call = async (admin) => {
        const res = await admin.client.revokeKey({ keyId }, admin.callOptions);
        return `revoked key ${res.key?.keyId ?? keyId} of tenant ${res.key?.tenant ?? "?"}\n`;
      };
    } else {
      throw new Error(`unknown subcommand "${sub}"`);
    }
  } catch (err) {
    process.stderr.write(`switchyard keys: ${(err as Error).message}\n\n${KEYS_HELP}`);
    return 2;
  }
  return runAdminCall(`keys ${sub}`, values.url, call);
}

/** `--budget-usd` in micro-dollars; an amount that rounds to nothing would silently mean "no budget". */
function budgetMicro(text: string): bigint {
  const micro = Math.round(positive(text, "--budget-usd") * 1e6);
  if (micro < 1) throw new Error("--budget-usd is below a micro-dollar ($0.000001): that is no budget at all");
  return BigInt(micro);
}

function positive(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag} needs a positive number`);
  return n;
}

function integer(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0 || n > 2_147_483_647) throw new Error(`${flag} needs a positive whole number`);
  return n;
}

function invalid(message: string): never {
  throw new Error(message);
}

function periodName(p: ledger.BudgetPeriod): string {
  return p === ledger.BudgetPeriod.DAY ? "day" : p === ledger.BudgetPeriod.WEEK ? "week" : "month";
}

function iso(ms: bigint): string {
  return new Date(Number(ms)).toISOString().slice(0, 16) + "Z";
}

function limitsText(l: ledger.KeyLimits | undefined): string {
  if (!l) return "none";
  const parts: string[] = [];
  if (l.budgetMicroUsd > 0n) parts.push(`$${(Number(l.budgetMicroUsd) / 1e6).toFixed(2)} per ${periodName(l.period)}`);
  if (l.requestsPerMinute > 0) parts.push(`${l.requestsPerMinute} requests/min`);
  if (l.tokensPerMinute > 0) parts.push(`${l.tokensPerMinute} tokens/min`);
  return parts.length > 0 ? parts.join(", ") : "none";
}
