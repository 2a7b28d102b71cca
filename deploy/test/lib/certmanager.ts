import { Ajv, type ValidateFunction } from "ajv";
import type { KubeObject } from "./kube.js";

/**
 * cert-manager's Issuer and Certificate (cert-manager.io/v1), as its CRDs define them, for the
 * fields any Switchyard manifest may use: kubernetes-models has no cert-manager types, and a
 * misspelled `dnsName` or `usages: [server-auth]` would be dropped or refused only by a live API
 * server. Every object level lists its fields (additionalProperties: false), so an unknown key fails.
 */
const duration = { type: "string", pattern: "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$" };
const keyUsage = {
  enum: [
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement", "data encipherment", "cert sign", "crl sign",
    "encipher only", "decipher only", "any", "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
    "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc",
  ],
};
const strings = { type: "array", items: { type: "string", minLength: 1 } };
const metadata = {
  type: "object",
  required: ["name"],
  properties: { name: { type: "string", pattern: "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$" }, namespace: { type: "string" }, labels: { type: "object" }, annotations: { type: "object" } },
  additionalProperties: false,
};
const issuerRef = {
  type: "object",
  required: ["name"],
  properties: { name: { type: "string", minLength: 1 }, kind: { type: "string" }, group: { type: "string" } },
  additionalProperties: false,
};

const certificate = {
  type: "object",
  required: ["apiVersion", "kind", "metadata", "spec"],
  properties: {
    apiVersion: { const: "cert-manager.io/v1" },
    kind: { const: "Certificate" },
    metadata,
    spec: {
      type: "object",
      required: ["secretName", "issuerRef"],
      additionalProperties: false,
      properties: {
        secretName: { type: "string", minLength: 1 },
        issuerRef,
        commonName: { type: "string", maxLength: 64 },
        dnsNames: strings,
        uris: { type: "array", items: { type: "string", pattern: "^[a-z][a-z0-9+.-]*:" } },
        ipAddresses: strings,
        emailAddresses: strings,
        otherNames: { type: "array" },
        duration,
        renewBefore: duration,
        renewBeforePercentage: { type: "integer" },
        isCA: { type: "boolean" },
        usages: { type: "array", items: keyUsage },
        privateKey: {
          type: "object",
          additionalProperties: false,
          properties: {
            algorithm: { enum: ["RSA", "ECDSA", "Ed25519"] },
            size: { type: "integer" },
            encoding: { enum: ["PKCS1", "PKCS8"] },
            rotationPolicy: { enum: ["Never", "Always"] },
          },
        },
        subject: { type: "object" },
        literalSubject: { type: "string" },
        secretTemplate: { type: "object", additionalProperties: false, properties: { annotations: { type: "object" }, labels: { type: "object" } } },
        keystores: { type: "object" },
        signatureAlgorithm: { type: "string" },
        encodeUsagesInRequest: { type: "boolean" },
        revisionHistoryLimit: { type: "integer" },
        additionalOutputFormats: { type: "array" },
        nameConstraints: { type: "object" },
      },
    },
  },
  additionalProperties: false,
};

const issuer = {
  type: "object",
  required: ["apiVersion", "kind", "metadata", "spec"],
  properties: {
    apiVersion: { const: "cert-manager.io/v1" },
    kind: { enum: ["Issuer", "ClusterIssuer"] },
    metadata,
    spec: {
      type: "object",
      additionalProperties: false,
      minProperties: 1,
      maxProperties: 1,
      properties: {
        selfSigned: { type: "object", additionalProperties: false, properties: { crlDistributionPoints: strings } },
        ca: {
          type: "object",
          required: ["secretName"],
          additionalProperties: false,
          properties: { secretName: { type: "string", minLength: 1 }, crlDistributionPoints: strings, ocspServers: strings, issuingCertificateURL: strings },
        },
        acme: { type: "object" },
        vault: { type: "object" },
        venafi: { type: "object" },
      },
    },
  },
  additionalProperties: false,
};

let validators: Record<string, ValidateFunction> | undefined;

/** Whether an object is one of cert-manager's. */
export function isCertManager(obj: KubeObject): boolean {
  return obj.apiVersion === "cert-manager.io/v1";
}

/** Problems of one cert-manager object, each naming the object and the path. */
export function validateCertManager(obj: KubeObject): string[] {
  validators ??= (() => {
    const ajv = new Ajv({ strict: true, allErrors: true, allowUnionTypes: true });
    return { Certificate: ajv.compile(certificate), Issuer: ajv.compile(issuer), ClusterIssuer: ajv.compile(issuer) };
  })();
  const id = `${obj.kind}/${obj.metadata?.name}`;
  const validate = validators[obj.kind];
  if (!validate) return [`${id}: not a cert-manager kind this check knows (Certificate, Issuer, ClusterIssuer)`];
  if (validate(obj)) return [];
  return (validate.errors ?? []).map((e) =>
    e.keyword === "additionalProperties"
      ? `${id}: ${e.instancePath || "/"}: unknown field "${(e.params as { additionalProperty: string }).additionalProperty}"`
      : `${id}: ${e.instancePath || "/"} ${e.message}${e.keyword === "enum" ? ` (${(e.params as { allowedValues: unknown[] }).allowedValues.join(", ")})` : ""}`,
  );
}
