import type { KubeObject } from "./kube.js";

type Json = Record<string, any>;

/** Labels Helm adds that plain YAML does not carry (and kustomize's common part-of label). */
const RELEASE_LABELS = ["app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "app.kubernetes.io/part-of", "helm.sh/chart"];
/** Objects kustomize generates with a content hash in the name. */
export const GENERATED = ["switchyard-config", "envoy-config", "nats-config"];

/**
 * An object as both a Helm render and a kustomize build can be compared: release labels (in
 * metadata, pod templates and every selector), the checksum annotations Helm uses to roll pods, the
 * namespace and kustomize's name hashes removed.
 */
export function normalize(obj: KubeObject): KubeObject {
  const walk = (value: unknown, key: string): unknown => {
    if (Array.isArray(value)) return value.map((v) => walk(v, key));
    if (value && typeof value === "object") {
      const out: Json = {};
      for (const [k, v] of Object.entries(value)) {
        if ((key === "labels" || key === "matchLabels" || key === "selector") && RELEASE_LABELS.includes(k)) continue;
        if (key === "annotations" && k.startsWith("checksum/")) continue;
        const w = walk(v, k);
        if ((k === "labels" || k === "annotations" || k === "matchLabels") && w && typeof w === "object" && Object.keys(w).length === 0) continue;
        out[k] = w;
      }
      return out;
    }
    if (typeof value === "string") {
      for (const g of GENERATED) if (new RegExp(`^${g}-[a-z0-9]{10}$`).test(value)) return g;
    }
    return value;
  };
  const out = walk(obj, "") as KubeObject;
  delete out.metadata.namespace;
  return out;
}

/** Objects by `Kind/name`, normalized. */
export function byId(objects: KubeObject[]): Map<string, KubeObject> {
  return new Map(objects.map((o) => [`${o.kind}/${normalize(o).metadata.name}`, normalize(o)]));
}
