import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { stringify as toYaml } from "yaml";
import { Bus } from "@switchyard/bus";
import { events, policy } from "@switchyard/proto";
import { createServiceClient, type ServiceClient } from "@switchyard/rpc";
import { createLogger } from "@switchyard/telemetry";
import { serviceEntry } from "./mesh.js";
import { freePort } from "./ports.js";

/** Milliseconds from publishing a price to each replica routing by it. */
export interface PropagationSample {
  replica: number;
  ms: number;
}

/**
 * Starts `replicas` policy processes on one NATS, then flips prices `flips` times so the cheaper
 * of two models changes, timing from the KV put to the moment each replica's Route answer changes
 * (polled every `pollMs`).
 */
export async function measurePropagation(options: { natsUrl: string; replicas?: number; flips: number; pollMs?: number }): Promise<PropagationSample[]> {
  const replicas = options.replicas ?? 2;
  const pollMs = options.pollMs ?? 2;
  const dir = mkdtempSync(join(tmpdir(), "switchyard-propagation-"));
  const bucket = `prop-${Date.now().toString(36)}-${process.pid}`;
  const configPath = join(dir, "switchyard.yaml");
  writeFileSync(
    configPath,
    toYaml({
      tiers: [{ name: "any", max_difficulty: 1 }],
      providers: [
        {
          name: "p",
          kind: "simulator",
          enabled: true,
          models: [
            { name: "a", input_usd_per_mtok: 1, output_usd_per_mtok: 1, tiers: ["any"] },
            { name: "b", input_usd_per_mtok: 2, output_usd_per_mtok: 2, tiers: ["any"] },
          ],
        },
      ],
      nats: { url: options.natsUrl, price_bucket: bucket },
      telemetry: { log_level: "warn" },
    }),
  );
  const children: ChildProcess[] = [];
  const clients: ServiceClient<typeof policy.PolicyService>[] = [];
  const logger = createLogger({ service: "bench", level: "error" });
  const bus = Bus.start({ url: options.natsUrl, name: "bench", priceBucket: bucket, healthSubject: `${bucket}.health`, logger });
  try {
    for (let i = 0; i < replicas; i++) {
      const port = await freePort();
      const httpPort = await freePort();
      children.push(
        spawn(process.execPath, [serviceEntry("policy")], {
          env: { ...process.env, SWITCHYARD_CONFIG: configPath, SWITCHYARD_POLICY_PORT: String(port), SWITCHYARD_POLICY_HTTP_PORT: String(httpPort), NATS_URL: options.natsUrl, SWITCHYARD_NATS_ENABLED: "true" },
          stdio: ["ignore", "ignore", "inherit", "ipc"],
        }),
      );
      clients.push(createServiceClient(policy.PolicyService, `http://127.0.0.1:${port}`));
    }
    const primary = async (c: ServiceClient<typeof policy.PolicyService>) => {
      const res = await c.client.route({ tier: "any", tenant: "default", expectedInputTokens: 100n, expectedOutputTokens: 100n });
      return res.plan?.routes[0]?.model ?? "";
    };
    // Wait until every replica answers and has seen the bucket (a first price is applied).
    await bus.putPrices([price("a", 1_000_000n), price("b", 2_000_000n)]);
    const deadline = Date.now() + 20_000;
    for (const c of clients) {
      for (;;) {
        try {
          if ((await primary(c)) === "a") break;
        } catch {
          // not listening yet
        }
        if (Date.now() > deadline) throw new Error("policy replicas did not start");
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    await new Promise((r) => setTimeout(r, 300)); // let the watches settle
    const samples: PropagationSample[] = [];
    let cheap = "a";
    for (let flip = 0; flip < options.flips; flip++) {
      const next = cheap === "a" ? "b" : "a";
      const started = performance.now();
      await bus.putPrices([price(next, 1_000_000n), price(cheap, 3_000_000n)]);
      await Promise.all(
        clients.map(async (c, replica) => {
          while ((await primary(c)) !== next) {
            if (performance.now() - started > 10_000) throw new Error(`replica ${replica} never routed to ${next}`);
            await new Promise((r) => setTimeout(r, pollMs));
          }
          samples.push({ replica, ms: performance.now() - started });
        }),
      );
      cheap = next;
    }
    return samples;
  } finally {
    for (const c of clients) c.close();
    for (const child of children) child.kill("SIGTERM");
    await bus.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function price(model: string, micro: bigint): events.PriceUpdate {
  return create(events.PriceUpdateSchema, { provider: "p", model, inputMicroUsdPerMtok: micro, outputMicroUsdPerMtok: micro, effectiveAtUnixMs: BigInt(Date.now()), source: "bench" });
}
