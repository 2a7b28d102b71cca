import type { KubeObject } from "./kube.js";
import { deployedServices } from "./security.js";

type Json = Record<string, any>;

/**
 * Where a render keeps the ledger's books, and whether that holds together:
 *   "pglite":   no database URL in the ledger's environment; PGlite's folder (config
 *               ledger.data_dir) below the mount point of a PersistentVolumeClaim the render
 *               creates; exactly one pod, replaced with Recreate (PGlite has a single writer), no
 *               autoscaler.
 *   "postgres": the variable config ledger.database_url_env names comes from a Secret key (never
 *               a literal value), and no PersistentVolumeClaim is made or mounted; not Recreate.
 * In both, only the ledger gets the database URL.
 */
export function checkLedgerDatabase(objects: KubeObject[], expected: "pglite" | "postgres"): string[] {
  const problems: string[] = [];
  const { services } = deployedServices(objects);
  const ledger = services.find((s) => s.name === "ledger");
  if (!ledger) return ["the render has no ledger (Deployment ledger with its config)"];
  const deployment = ledger.workload;
  const spec = deployment.spec.template.spec as Json;
  const variable = ledger.config.ledger.database_url_env;
  const url = (ledger.container.env ?? []).find((e: Json) => e.name === variable);
  const claims = ((spec.volumes ?? []) as Json[]).filter((v) => v.persistentVolumeClaim);
  const pvcs = objects.filter((o) => o.kind === "PersistentVolumeClaim");
  for (const s of services.filter((x) => x.name !== "ledger")) {
    if ((s.container.env ?? []).some((e: Json) => e.name === variable)) problems.push(`${s.name}: has ${variable}: only the ledger may get the database URL`);
  }
  if (expected === "postgres") {
    if (!url) problems.push(`ledger: no ${variable} in its environment (config ledger.database_url_env): it would fall back to PGlite`);
    else if (url.value !== undefined || !url.valueFrom?.secretKeyRef?.name || !url.valueFrom?.secretKeyRef?.key) {
      problems.push(`ledger: ${variable} must come from a Secret key (valueFrom.secretKeyRef), never a literal value`);
    }
    if (claims.length > 0) problems.push(`ledger: mounts the PersistentVolumeClaim ${claims.map((c) => c.persistentVolumeClaim.claimName).join(", ")}, which Postgres does not need`);
    if (pvcs.some((p) => p.metadata.name === "ledger-data")) problems.push("PersistentVolumeClaim/ledger-data is made though the ledger is on Postgres");
    if (deployment.spec.strategy?.type === "Recreate") problems.push("ledger: Recreate on Postgres takes the books offline at every rollout");
    return problems;
  }
  if (url) problems.push(`ledger: has ${variable}, so it would use that Postgres, not PGlite`);
  if (deployment.spec.replicas !== 1) problems.push(`ledger: PGlite has a single writer: replicas must be 1 (found ${deployment.spec.replicas ?? "an autoscaler's"})`);
  if (deployment.spec.strategy?.type !== "Recreate") problems.push("ledger: PGlite has a single writer: the strategy must be Recreate (a rolling update runs two pods on one folder)");
  if (objects.some((o) => o.kind === "HorizontalPodAutoscaler" && o.spec.scaleTargetRef?.name === "ledger")) problems.push("ledger: PGlite has a single writer: no HorizontalPodAutoscaler");
  const dataDir: string = ledger.config.ledger.data_dir;
  const mount = ((ledger.container.volumeMounts ?? []) as Json[]).find((m) => dataDir.startsWith(`${String(m.mountPath).replace(/\/$/, "")}/`));
  const volume = mount && claims.find((v) => v.name === mount.name);
  if (!mount || !volume) problems.push(`ledger: PGlite's folder ${dataDir} (config ledger.data_dir) is not on a PersistentVolumeClaim mount (the root filesystem is read-only)`);
  else if (!pvcs.some((p) => p.metadata.name === volume.persistentVolumeClaim.claimName)) problems.push(`ledger: mounts PersistentVolumeClaim ${volume.persistentVolumeClaim.claimName}, which the render does not create`);
  return problems;
}
